"""One Keras backend's side of tests/test_backends.py, run in a process of its own.

Keras fixes its backend when it is imported, so each backend needs a fresh
process: `KERAS_BACKEND=jax python tests/support/backend_runner.py check DIR` and so
on. Every step reads and writes files in DIR and prints one JSON line of
results; the test module decides what passes.

Steps:
    reference  (TensorFlow) builds every case with seeded, randomized weights
               (BatchNorm statistics too, so no output is trivially zero),
               saves `CASE.weights.h5` and `CASE.keras`, and records the
               inference outputs, two `fit` steps' losses, the outputs after
               them, the reuse summary and the published checkpoint's logits
               (with the PyTorch reference network's); trains a small unrolled
               LruNet-2 two steps (`default_layout_training`).
    check      (any backend) rebuilds every case from its constructor, loads
               the TensorFlow weights, and repeats all of it; loads the
               TensorFlow `.keras` files; saves its own trained models as
               `BACKEND-CASE.keras` with their outputs; trains the small LruNet-2
               in this backend's default layout (looped under JAX) from
               TensorFlow's weights, for its losses and trained weights.
    load       (TensorFlow) loads the other backends' trained `.keras` files
               and predicts with them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
from locations import SHARED as SHARED_PATH

import keras_reuse
from keras_reuse import applications
from keras_reuse.layers import ChannelShuffle, GroupedPointwiseConv

CHECKPOINT = SHARED_PATH / "pretrained" / "lrunet-pytorch" / "fashionmnist-lru1-ckpt-09117.t7"
BATCH = 4


def _layers_model() -> keras.Model:
    inputs = keras.Input((5, 5, 24))
    x = GroupedPointwiseConv(24, groups=4, use_bias=True, name="pw")(inputs)
    x = ChannelShuffle(2, swap_halves=True, name="shuffle_lru")(x)
    x = ChannelShuffle(3, name="shuffle3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="fc")(x), name="layers")


# case -> (constructor of logits models, whether it is trained a few steps)
CASES: dict[str, tuple[Callable[[], keras.Model], bool]] = {
    "lrunet1": (
        # The unrolled layout on every backend, to compare layer by layer;
        # the backend's default layout is checked by `_default_layout`.
        lambda: applications.LruNet(
            layer_reuse=1, dropout=0.0, classifier_activation=None, reuse_loop=False
        ),
        True,
    ),
    "lrunet2": (
        lambda: applications.LruNet(
            layer_reuse=2, input_shape=(28, 28, 1), classifier_activation=None, reuse_loop=False
        ),
        False,
    ),
    "wide_sharesnet10_1": (
        lambda: applications.WideShaResNet(
            depth=10, width=1, num_classes=10, classifier_activation=None
        ),
        True,
    ),
    "layers": (_layers_model, True),
}


def _inputs(model: keras.Model, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return _batch(tuple(model.input_shape[1:]), seed)


def _batch(shape: tuple, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.random((BATCH, *shape), dtype=np.float32)
    return images, np.arange(BATCH, dtype=np.int32) % 10


def _randomize_batchnorms(model: keras.Model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            (channels,) = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
            layer.beta.assign(rng.normal(0.0, 0.1, channels).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0.0, 0.1, channels).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))


def _compile(model: keras.Model) -> None:
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def _summary(model: keras.Model) -> dict[str, Any]:
    summary = keras_reuse.reuse_summary(model)
    return {"calls": summary.calls, "unique_params": summary.unique_params}


def _run_case(
    model: keras.Model, trained: bool, directory: Path, prefix: str, save_trained: bool
) -> dict:
    """Predicts, fits two steps on one batch, predicts again; returns the figures.

    Saves `prefix.keras`: the model before training, or after it with
    `save_trained` (a trained model's file also holds its optimizer state).
    """
    x, y = _inputs(model)
    np.save(directory / f"{prefix}.inputs.npy", x)
    result: dict[str, Any] = {"summary": _summary(model)}
    result["outputs"] = model.predict(x, batch_size=BATCH, verbose=0).tolist()
    if not (trained and save_trained):
        model.save(directory / f"{prefix}.keras")
    if trained:
        _compile(model)
        # One batch per epoch, two epochs: the second loss depends on the
        # first step's gradient, so equal losses mean equal gradients.
        history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
        result["losses"] = [float(v) for v in history.history["loss"]]
        result["trained_outputs"] = model.predict(x, batch_size=BATCH, verbose=0).tolist()
    if trained and save_trained:
        model.save(directory / f"{prefix}.keras")
    return result


def _small_lrunet(**kwargs: Any) -> keras.Model:
    """LruNet-2 with stages of 8 to 64 channels: seconds to compile under JAX."""
    return applications.LruNet(
        layer_reuse=2,
        width_multiplier=0.125,
        input_shape=(28, 28, 1),
        dropout=0.0,
        classifier_activation=None,
        **kwargs,
    )


def _fit_two_steps(model: keras.Model) -> dict[str, Any]:
    """Two `fit` steps on one batch; the losses and the trained weights (unrolled paths)."""
    from keras_reuse.applications.lrunet.model import convert_reuse_weights
    from keras_reuse.applications.lrunet.stage import LruStage

    x, y = _inputs(model)
    _compile(model)
    history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    looped = any(isinstance(layer, LruStage) for layer in model.layers)
    unrolled = convert_reuse_weights(model, _small_lrunet(reuse_loop=False)) if looped else model
    return {
        "looped": looped,
        "losses": [float(v) for v in history.history["loss"]],
        "weights": {v.path: keras.ops.convert_to_numpy(v).tolist() for v in unrolled.weights},
    }


def _default_layout_training_reference(directory: Path) -> dict[str, Any]:
    keras.utils.set_random_seed(0)
    model = _small_lrunet(reuse_loop=False)
    _randomize_batchnorms(model)
    model.save_weights(directory / "lrunet2_small.weights.h5")
    return _fit_two_steps(model)


def _default_layout_training(directory: Path) -> dict[str, Any]:
    model = _small_lrunet(weights=str(directory / "lrunet2_small.weights.h5"))
    return _fit_two_steps(model)


def _checkpoint_logits() -> dict[str, Any]:
    from keras_reuse.applications.lrunet.checkpoint import load_lrunet_checkpoint

    model = load_lrunet_checkpoint(CHECKPOINT)
    x, _ = _inputs(model, seed=1)
    return {"logits": model.predict(x, batch_size=BATCH, verbose=0).tolist()}


def reference(directory: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for case, (build, trained) in CASES.items():
        keras.utils.set_random_seed(0)
        model = build()
        _randomize_batchnorms(model)
        model.save_weights(directory / f"{case}.weights.h5")
        results[case] = _run_case(model, trained, directory, case, save_trained=False)
    results["checkpoint"] = _checkpoint_logits()
    results["default_layout_training"] = _default_layout_training_reference(directory)
    import torch

    from torch_reference.lrunet import TorchLruNet

    net = TorchLruNet.from_checkpoint(str(CHECKPOINT)).eval()
    x, _ = _batch((28, 28, 1), seed=1)
    with torch.no_grad():
        torch_logits = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    results["checkpoint"]["torch_logits"] = torch_logits.tolist()
    return results


def check(directory: Path) -> dict[str, Any]:
    backend = keras.backend.backend()
    results: dict[str, Any] = {}
    for case, (build, trained) in CASES.items():
        model = build()
        model.load_weights(directory / f"{case}.weights.h5")
        initial = [keras.ops.convert_to_numpy(w) for w in model.weights]
        loaded = keras.models.load_model(directory / f"{case}.keras")
        same_weights = len(initial) == len(loaded.weights) and all(
            np.array_equal(a, keras.ops.convert_to_numpy(b))
            for a, b in zip(initial, loaded.weights, strict=False)
        )
        result = _run_case(model, trained, directory, f"{backend}-{case}", save_trained=True)
        result["loaded_tf_keras"] = {
            "same_weights": bool(same_weights),
            "summary": _summary(loaded),
            "layer_classes": [type(layer).__name__ for layer in loaded.layers]
            == [type(layer).__name__ for layer in model.layers],
        }
        results[case] = result
    results["checkpoint"] = _checkpoint_logits()
    results["default_layout"] = _default_layout(directory)
    results["default_layout_training"] = _default_layout_training(directory)
    return results


def _default_layout(directory: Path) -> dict[str, Any]:
    """LruNet-2 in this backend's default layout, from TensorFlow's (unrolled) weights file."""
    from keras_reuse.applications.lrunet.stage import LruStage

    model = applications.LruNet(
        layer_reuse=2,
        input_shape=(28, 28, 1),
        classifier_activation=None,
        weights=str(directory / "lrunet2.weights.h5"),
    )
    x = np.load(directory / "lrunet2.inputs.npy")
    return {
        "looped": any(isinstance(layer, LruStage) for layer in model.layers),
        "summary": _summary(model),
        "outputs": model.predict(x, batch_size=BATCH, verbose=0).tolist(),
    }


def load(directory: Path, backends: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for backend in backends:
        results[backend] = {}
        for case in CASES:
            model = keras.models.load_model(directory / f"{backend}-{case}.keras")
            x = np.load(directory / f"{backend}-{case}.inputs.npy")
            outputs = model.predict(x, batch_size=BATCH, verbose=0).tolist()
            results[backend][case] = {"outputs": outputs}
    return results


def main(argv: list[str]) -> None:
    step, directory = argv[1], Path(argv[2])
    if step == "reference":
        results = reference(directory)
    elif step == "check":
        results = check(directory)
    elif step == "load":
        results = load(directory, argv[3:])
    else:
        raise ValueError(f"step must be reference, check or load. Received: step={step!r}")
    results["backend"] = keras.backend.backend()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main(sys.argv)
