"""Hugging Face Trainer on a tiny model: logs every 5 steps, evaluates every 10, 3 epochs of 10 steps.
Writes trainer.state.log_history (the trainer's own log) to $TRUTH; $STEP_SLEEP slows each step.
Run by bench/frameworks.py, which makes the fixtures beside this file."""
import json, os, sys, time
import torch
from torch import nn
from transformers import Trainer, TrainingArguments, TrainerCallback

torch.manual_seed(0)
class Data(torch.utils.data.Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(n)
        self.x = torch.randn(n, 8, generator=g); self.y = (self.x[:, 0] > 0).long()
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return {"x": self.x[i], "labels": self.y[i]}
class Model(nn.Module):
    def __init__(self):
        super().__init__(); self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    def forward(self, x, labels=None):
        logits = self.net(x)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}
class Slow(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        time.sleep(float(os.environ.get("STEP_SLEEP", "0")))
args = TrainingArguments(output_dir=os.environ.get("OUTPUT_DIR", "hf-out"), num_train_epochs=3, per_device_train_batch_size=8,
                         logging_steps=5, eval_strategy="steps", eval_steps=10, save_strategy="no",
                         report_to=[], learning_rate=1e-3, use_cpu=True, seed=0)
t = Trainer(model=Model(), args=args, train_dataset=Data(80), eval_dataset=Data(32), callbacks=[Slow()])
t.train()
json.dump(t.state.log_history, open(os.environ["TRUTH"], "w"))
