#!/usr/bin/env python3
"""Writes the CSV metric logs that Tests/CMLKitTests/CSVLogImporterTests.swift reads, with the real
PyTorch Lightning and Keras `CSVLogger`s (tested with lightning 2.6.6, keras 3.15.1, torch 2.15.0;
`pip install lightning keras torch`), on the CPU:

    python3 Tests/CMLKitTests/Fixtures/csvlogs/make_fixtures.py

lightning-metrics.csv: a tiny LightningModule logging `train_loss` every step and `val_loss` every
epoch, trained 3 epochs of 8 batches with log_every_n_steps=2 (Lightning's sparse rows: a row per
logged step, `val_loss` in rows of its own). keras-training.csv: a tiny model fit 3 epochs
(KERAS_BACKEND=torch) with keras.callbacks.CSVLogger. The values change from run to run in their last
digits; the tests read whatever the files say.
"""
import os
import shutil
import tempfile

os.environ["KERAS_BACKEND"] = "torch"

import keras
import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

here = os.path.dirname(os.path.abspath(__file__))
work = tempfile.mkdtemp(prefix="cml-csvlogs-")


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def lightning_fixture():
    L.seed_everything(0)
    x = torch.randn(64, 4)
    y = x.sum(dim=1, keepdim=True)
    train = DataLoader(TensorDataset(x, y), batch_size=8)
    val = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)
    logger = CSVLogger(work, name="lightning")
    trainer = L.Trainer(max_epochs=3, logger=logger, log_every_n_steps=2, accelerator="cpu",
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(Tiny(), train, val)
    shutil.copyfile(os.path.join(logger.log_dir, "metrics.csv"), os.path.join(here, "lightning-metrics.csv"))


def keras_fixture():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    log = os.path.join(work, "training.log")
    model.fit(x, y, epochs=3, batch_size=32, validation_split=0.25, verbose=0,
              callbacks=[keras.callbacks.CSVLogger(log)])
    shutil.copyfile(log, os.path.join(here, "keras-training.csv"))


lightning_fixture()
keras_fixture()
shutil.rmtree(work)
