"""The installed wheel works as a user gets it: run outside the source tree.

Builds the published Fashion-MNIST LruNet-10 from the weights shipped in
the wheel (a file missing from the package data fails here), takes one
training step with the papers' recipe and exports it to a verified .tflite.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

import keras_reuse
from keras_reuse.applications import LruNet

here = Path(keras_reuse.__file__).resolve()
if "site-packages" not in here.parts:
    sys.exit(f"keras_reuse was imported from {here}, not from the installed wheel")

model = LruNet(weights="fashion_mnist", layer_reuse=10, classifier_activation=None)
rng = np.random.default_rng(0)
images = rng.uniform(0, 1, (32, 28, 28, 1)).astype("float32")
labels = rng.integers(0, 10, 32)
before = model.predict(images, verbose=0)
keras_reuse.compile_for_training(model, learning_rate=0.01)
history = model.fit(images, labels, batch_size=32, epochs=1, verbose=0)
assert np.isfinite(history.history["loss"][0])
assert not np.allclose(model.predict(images, verbose=0), before), "fit changed nothing"
with tempfile.TemporaryDirectory() as out:
    report = keras_reuse.to_tflite(model, Path(out) / "lrunet10.tflite")
    print(f"wheel smoke test: {here.parent}; fit loss {history.history['loss'][0]:.3f}; {report}")
