"""PyTorch Lightning fit of a tiny model: 4 epochs of 8 steps, $BAR (tqdm or rich) progress bar, $LOGGER
(none, csv or tb). Writes, per epoch, trainer.progress_bar_metrics and callback_metrics (Lightning's own view)
to $TRUTH; $STEP_SLEEP slows each step.
Run by bench/frameworks.py, which makes the fixtures beside this file."""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
from torch import nn
import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar, RichProgressBar, Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
L.seed_everything(0, verbose=False)
g = torch.Generator().manual_seed(0)
x = torch.randn(256, 8, generator=g); y = (x[:, 0] > 0).long()
train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:192], y[:192]), batch_size=24)
val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[192:], y[192:]), batch_size=32)
SLEEP = float(os.environ.get("STEP_SLEEP", "0"))
class Model(L.LightningModule):
    def __init__(self):
        super().__init__(); self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    def training_step(self, batch, i):
        time.sleep(SLEEP)
        xb, yb = batch; loss = nn.functional.cross_entropy(self.net(xb), yb)
        self.log("train_loss", loss, prog_bar=True)
        return loss
    def validation_step(self, batch, i):
        xb, yb = batch; logits = self.net(xb)
        self.log("val_loss", nn.functional.cross_entropy(logits, yb), prog_bar=True)
        self.log("val_acc", (logits.argmax(1) == yb).float().mean(), prog_bar=True)
    def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.1)
class Truth(Callback):
    def __init__(self): self.epochs = []
    def on_train_epoch_end(self, trainer, module):
        self.epochs.append({"epoch": trainer.current_epoch, "global_step": trainer.global_step,
                            "progress_bar": {k: float(v) for k, v in trainer.progress_bar_metrics.items()},
                            "callback": {k: float(v) for k, v in trainer.callback_metrics.items()}})
truth = Truth()
bar = os.environ.get("BAR", "tqdm")
logger = {"none": False, "csv": CSVLogger("logs"), "tb": TensorBoardLogger("logs")}[os.environ.get("LOGGER", "none")]
trainer = L.Trainer(max_epochs=int(os.environ.get("EPOCHS", "4")), logger=logger, enable_checkpointing=False,
                    enable_model_summary=False, log_every_n_steps=2,
                    callbacks=[truth, RichProgressBar() if bar == "rich" else TQDMProgressBar()])
trainer.fit(Model(), train, val)
json.dump(truth.epochs, open(os.environ["TRUTH"], "w"))
