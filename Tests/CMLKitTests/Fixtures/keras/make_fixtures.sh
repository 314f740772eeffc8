#!/bin/sh
# Real Keras 3 output (keras 3.15.1 on jax 0.10.2, from PyPI) of model.fit(verbose=1) for the metric
# parser's tests: once piped, once under a terminal (`script` gives it a pseudo-terminal).
#   python3 -m pip install keras jax && sh make_fixtures.sh
set -e
cd "$(dirname "$0")"
cat > /tmp/cml-keras-fit.py <<'PY'
import os
os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np, keras
rng = np.random.default_rng(0)
x = rng.normal(size=(2000, 8)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=1)
PY
KERAS_BACKEND=jax python3 /tmp/cml-keras-fit.py > fit-piped.txt 2>&1
script -qec "KERAS_BACKEND=jax python3 /tmp/cml-keras-fit.py" /dev/null > fit-terminal.txt
