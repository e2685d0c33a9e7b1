"""The GPU check's measurements, each run in a child process of `benchmarks.gpu`.

`python -m benchmarks.gpu.parts '{"kind": "keras", ...}'` runs the Keras
parts on the backend named by KERAS_BACKEND (speed rows, the published
Fashion-MNIST LruNet-10's accuracy, a short mixed-precision training run);
`{"kind": "torch_reference", ...}` times the PyTorch reference networks.
Each result is printed as one JSON line as soon as it is known, so a child
stopped by the time budget still hands back what it finished.

Speed rows feed `model.fit` NumPy arrays (no tf.data: the GPU machine has
no TensorFlow): one synthetic CIFAR-shaped batch, repeated. The time to the
first step runs from `compile` to the end of the first batch of the first
`fit` call (tracing and XLA compilation included); images/s is the steady
rate between the first and last batch ends of a second `fit` call. Each
batch end reads the loss back, so the clock waits for the device.

With `"toy": true` the same code runs at toy size on a CPU (small stand-ins
of each network, a few images), which is what CI runs.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from benchmarks import measure, models

KERAS_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
TORCH_PRECISIONS = ("float32", "amp_bfloat16", "amp_float16")
PUBLISHED_PRESET = "lrunet10_fashion_mnist"
# At toy size: the same code on LruNet-1 (a one-iteration loop compiles in seconds).
TOY_PRESET = "lrunet1_fashion_mnist"
TOY_LAYER_REUSE = 1
TRAIN_POLICY = "mixed_float16"
TRAIN_LEARNING_RATE = 0.05

# name -> (constructor keyword arguments) of the toy stand-ins: the same
# families, small enough to compile in seconds on a CPU.
_TOY_KERAS = {
    "lrunet": {"layer_reuse": TOY_LAYER_REUSE, "width_multiplier": 0.5, "reuse_loop": False},
    "sharesnet164": {"depth": 10, "width": 1},  # WideShaResNet: 6n+4 layers
}


def emit(part: str, **values: Any) -> None:
    """Prints one result as a JSON line, at once."""
    print(json.dumps({"part": part, **values}), flush=True)


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


# ------------------------------------------------------------------- Keras ---


def keras_model(name: str, policy: str, toy: bool) -> Any:
    """The network `name` of `benchmarks.models` (its toy stand-in with `toy`), logits out."""
    if not toy:
        return models.keras_model(name, policy)
    from keras_reuse.applications import LruNet, WideShaResNet
    from keras_reuse.training.precision import dtype_policy_scope

    _, constructor, _ = models.MODELS[name]
    with dtype_policy_scope(policy):
        if constructor == "lrunet":
            return LruNet(
                num_classes=10,
                input_shape=models.INPUT_SHAPE,
                classifier_activation=None,
                **_TOY_KERAS["lrunet"],
            )
        return WideShaResNet(
            num_classes=10,
            input_shape=models.INPUT_SHAPE,
            classifier_activation=None,
            **_TOY_KERAS["sharesnet164"],
        )


def looped_stages(model: Any) -> int:
    """How many layers of `model` are looped LruNet stages."""
    return sum(type(layer).__name__ == "LruStage" for layer in model.layers)


def synced_batch_ends(ends: list[float]) -> Any:
    """A callback appending the clock at each train batch end, after the device finished it."""
    import keras

    class SyncedBatchEnds(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                keras.ops.convert_to_numpy(logs["loss"])  # waits for the step
            ends.append(time.perf_counter())

    return SyncedBatchEnds()


def compile_model(model: Any, policy: str, learning_rate: float) -> Any:
    """The papers' compile recipe; Keras's loss scaling under mixed_float16."""
    from keras_reuse.training.optimizers import compile_for_training

    return compile_for_training(
        model,
        learning_rate=learning_rate,
        momentum=0.9,
        l2=measure.WEIGHT_DECAY,
        loss_scale=policy == "mixed_float16",
    )


def keras_speed(name: str, policy: str, batch_size: int, steps: int, toy: bool) -> dict:
    """Time to the first step's end and steady images/s of `fit` on arrays.

    Returns:
        params, first_step_s, images_per_s, loss_scaled, looped_stages and
        the last loss (finite when the precision trains).
    """
    import keras

    keras.utils.set_random_seed(0)
    model = keras_model(name, policy, toy)
    images, labels = measure.synthetic_batch(batch_size, models.INPUT_SHAPE)
    ends: list[float] = []
    callback = synced_batch_ends(ends)
    start = time.perf_counter()
    compile_model(model, policy, measure.LEARNING_RATE)
    # Two batches: the second catches a retrace (a state whose dtype the
    # first step settles) before the timed call.
    model.fit(
        np.concatenate([images] * 2),
        np.tile(labels, 2),
        batch_size=batch_size,
        shuffle=False,
        verbose=0,
        callbacks=[callback],
    )
    first_step = ends[0] - start
    ends.clear()
    repeated = np.concatenate([images] * (steps + 1))
    history = model.fit(
        repeated,
        np.tile(labels, steps + 1),
        batch_size=batch_size,
        shuffle=False,
        verbose=0,
        callbacks=[callback],
    )
    return {
        "params": measure.trainable_params(model),
        "first_step_s": first_step,
        "images_per_s": steps * batch_size / (ends[-1] - ends[0]),
        "loss_scaled": type(model.optimizer).__name__ == "LossScaleOptimizer",
        "looped_stages": looped_stages(model),
        "loss": float(history.history["loss"][-1]),
    }


def load_arrays(path: str, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (float32 in [0, 1], as `keras_reuse.data` scales them) and labels of `split`."""
    with np.load(path) as data:
        images, labels = data[f"{split}_images"][:limit], data[f"{split}_labels"][:limit]
    return images.astype("float32") / 255.0, labels.astype("int32")


def published_accuracy(path: str, limit: int | None, preset_name: str = PUBLISHED_PRESET) -> dict:
    """The shipped Fashion-MNIST preset's test accuracy (LruNet-10's by default), predicted here."""
    from keras_reuse.applications import LruNet
    from keras_reuse.applications.lrunet.presets import PRESETS

    preset = PRESETS[preset_name]
    images, labels = load_arrays(path, "test", limit)
    model = LruNet(
        weights=preset.dataset,
        layer_reuse=preset.layer_reuse,
        input_shape=preset.input_shape,
        classifier_activation=None,
    )
    logits = model.predict(images, batch_size=500, verbose=0)
    return {
        "preset": preset.name,
        "accuracy": 100.0 * float(np.mean(np.argmax(logits, axis=1) == labels)),
        "images": len(labels),
        "preset_accuracy": preset.accuracy,
        "looped_stages": looped_stages(model),
    }


def training_run(
    path: str, epochs: int, batch_size: int, train_limit: int | None, toy: bool
) -> dict:
    """A fresh LruNet-10 trained in mixed_float16 on the Fashion-MNIST arrays.

    Returns:
        Per-epoch loss and test accuracy, the loss scale at the end, the
        looped stages and how far their shared weights moved (the norm of
        the change over the norm of the weights): what shows that loss
        scaling and the looped stage learn.
    """
    import keras

    from keras_reuse.applications import LruNet
    from keras_reuse.training.precision import dtype_policy_scope

    keras.utils.set_random_seed(0)
    x, y = load_arrays(path, "train", train_limit)
    x_test, y_test = load_arrays(path, "test", 256 if toy else None)
    with dtype_policy_scope(TRAIN_POLICY):
        model = LruNet(
            num_classes=10,
            layer_reuse=TOY_LAYER_REUSE if toy else 10,
            input_shape=(28, 28, 1),
            classifier_activation=None,
        )
    compile_model(model, TRAIN_POLICY, TRAIN_LEARNING_RATE)
    stages = [layer for layer in model.layers if type(layer).__name__ == "LruStage"]
    # The looped stages' weights (the whole network's where none is looped).
    tracked = [w for layer in (stages or model.layers) for w in layer.trainable_weights]
    before = np.concatenate([np.ravel(np.array(w)) for w in tracked])
    start = time.perf_counter()
    history = model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(x_test, y_test),
        verbose=0,
    )
    seconds = time.perf_counter() - start
    after = np.concatenate([np.ravel(np.array(w)) for w in tracked])
    optimizer = model.optimizer
    scale = getattr(optimizer, "dynamic_scale", None)
    return {
        "model": f"LruNet-{TOY_LAYER_REUSE if toy else 10}",
        "policy": TRAIN_POLICY,
        "epochs": epochs,
        "train_images": len(y),
        "test_images": len(y_test),
        "seconds": seconds,
        "loss": [float(v) for v in history.history["loss"]],
        "test_accuracy": [100.0 * float(v) for v in history.history["val_accuracy"]],
        "loss_scale_optimizer": type(optimizer).__name__ == "LossScaleOptimizer",
        "final_loss_scale": None if scale is None else float(np.array(scale)),
        "looped_stages": len(stages),
        "stage_weight_change": float(np.linalg.norm(after - before) / np.linalg.norm(before)),
    }


def keras_child(spec: dict) -> None:
    """Every Keras part of `spec`, on this process's backend."""
    import keras

    backend = keras.backend.backend()
    emit("environment", backend=backend, keras=keras.__version__, **backend_versions(backend))
    if spec.get("accuracy"):
        try:
            if spec["toy"]:
                result = published_accuracy(spec["data"], 64, TOY_PRESET)
            else:
                result = published_accuracy(spec["data"], None)
            emit("accuracy", **result)
        except Exception as error:  # one failed part must not lose the others
            emit("accuracy", error=error_text(error))
    if spec.get("train"):
        try:
            result = training_run(
                spec["data"],
                spec["train_epochs"],
                spec["batch_size"],
                128 if spec["toy"] else None,
                spec["toy"],
            )
            emit("training", **result)
        except Exception as error:
            emit("training", error=error_text(error))
    for name in spec["models"]:
        for policy in spec["precisions"]:
            try:
                values = keras_speed(name, policy, spec["batch_size"], spec["steps"], spec["toy"])
            except Exception as error:
                values = {"error": error_text(error)}
            emit("speed", model=name, precision=policy, **values)


def backend_versions(backend: str) -> dict:
    """The backend's version and the device it computes on."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return {"jax": jax.__version__, "device": f"{device.platform}: {device.device_kind}"}
    if backend == "torch":
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        return {"torch": torch.__version__, "device": name}
    return {}


# ----------------------------------------------------------------- PyTorch ---


class TorchReference:
    """A PyTorch reference net's training step on a device, in float32 or with AMP.

    "amp_bfloat16" and "amp_float16" run the forward pass under autocast;
    float16 scales the loss with a GradScaler.
    """

    def __init__(self, net: Any, batch_size: int, device: str, precision: str):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = {"amp_bfloat16": torch.bfloat16, "amp_float16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "amp_float16")
        self.net = net.to(self.device).train()
        self.batch_size = batch_size
        images, labels = measure.synthetic_batch(batch_size, models.INPUT_SHAPE)
        self.images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(self.device)
        self.labels = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        self.optimizer = torch.optim.SGD(
            net.parameters(),
            lr=measure.LEARNING_RATE,
            momentum=0.9,
            weight_decay=measure.WEIGHT_DECAY,
        )

    def step(self) -> float:
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.net(self.images)
        loss = torch.nn.functional.cross_entropy(logits.float(), self.labels)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())  # waits for the step

    def run(self, steps: int) -> tuple[float, float]:
        """Images/s over `steps` steps, and the last loss."""
        start = time.perf_counter()
        for _ in range(steps):
            loss = self.step()
        return steps * self.batch_size / (time.perf_counter() - start), loss


def torch_speed(name: str, precision: str, batch_size: int, steps: int, toy: bool) -> dict:
    import torch

    from torch_reference.lrunet import TorchLruNet

    torch.manual_seed(0)
    _, constructor, _ = models.MODELS[name]
    if toy and constructor == "lrunet":
        net = TorchLruNet(num_classes=10, layer_reuse=_TOY_KERAS["lrunet"]["layer_reuse"])
    else:
        net = models.torch_model(name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    trainer = TorchReference(net, batch_size, device, precision)
    trainer.step()
    first_step = time.perf_counter() - start
    rate, loss = trainer.run(steps)
    return {
        "params": int(sum(p.numel() for p in net.parameters() if p.requires_grad)),
        "first_step_s": first_step,
        "images_per_s": rate,
        "loss_scaled": trainer.scaler.is_enabled(),
        "loss": loss,
    }


def torch_child(spec: dict) -> None:
    import torch

    if spec["toy"]:
        torch.set_num_threads(1)  # toy size: threads only contend
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    emit("environment", backend="pytorch", torch=torch.__version__, device=device)
    for name in spec["models"]:
        for precision in TORCH_PRECISIONS:
            try:
                values = torch_speed(
                    name, precision, spec["batch_size"], spec["steps"], spec["toy"]
                )
            except Exception as error:
                values = {"error": error_text(error)}
            emit("speed", model=name, precision=precision, **values)


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    if spec["kind"] == "torch_reference":
        torch_child(spec)
    else:
        keras_child(spec)
    # The GPU machine has no TensorFlow: nothing measured may have needed it.
    emit("modules", tensorflow="tensorflow" in sys.modules)


if __name__ == "__main__":
    main(sys.argv)
