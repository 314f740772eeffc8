"""Keras 3 (on torch) fit of a tiny model: 3 epochs of 10 batches, verbose=$VERBOSE (1 or 2).
Writes History.history (Keras's own log) to $TRUTH; $CSV adds a CSVLogger; $STEP_SLEEP slows each batch.
Run by bench/frameworks.py, which makes the fixtures beside this file."""
import json, os, sys, time
os.environ.setdefault("KERAS_BACKEND", "torch")
import numpy as np, keras
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(400, 8)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
class Slow(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(float(os.environ.get("STEP_SLEEP", "0")))
    def on_test_batch_end(self, batch, logs=None):
        time.sleep(float(os.environ.get("STEP_SLEEP", "0")))
callbacks = [Slow()]
if os.environ.get("CSV"): callbacks.append(keras.callbacks.CSVLogger(os.environ["CSV"]))
h = model.fit(x, y, epochs=int(os.environ.get("EPOCHS", "3")), batch_size=32, validation_split=0.2,
              verbose=int(os.environ.get("VERBOSE", "1")), callbacks=callbacks)
json.dump(h.history, open(os.environ["TRUTH"], "w"))
