"""What only a GPU can tell: training speed, compile time and accuracy on a GPU.

    python -m benchmarks.gpu                     # about 5-10 minutes on one GPU
    python -m benchmarks.gpu --models=lrunet14 --steps=10

LruNet-14 is built as users get it, which on a GPU is the looped layout
(`keras_reuse.applications.lrunet.stage.default_reuse_loop`); `--models=lrunet14_unrolled`
times the unrolled one under XLA too (its compile may take minutes: the
measurement that decides the default).

For LruNet-14 and ShaResNet-164 (shared) at batch 128 it times plain
`model.fit` training on TensorFlow in float32 and mixed_float16 (Keras's
defaults: `jit_compile="auto"`, which is XLA on a GPU; loss scaling for
float16), the time from `fit` to the end of the first training step
(tracing and compilation included), and the same on the JAX backend when
jax is installed (in a child process: Keras fixes its backend at import).
Next to them the PyTorch reference networks (`torch_reference/`) in
float32 and with AMP (float16 autocast and a GradScaler). Then the published
Fashion-MNIST LruNet-10 checkpoint's test accuracy, computed on the GPU
(93.46% with the authors' code). The probes are `benchmarks.measure`'s.
Prints a markdown table in the format of `benchmarks/results/results.md`
(and writes `gpu.json` / `gpu.md` to `--output_dir` when given).

Without a GPU it prints one line saying so and exits with status 0.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from absl import app, flags

from benchmarks import measure, models

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = (
    ROOT.parent / "shared" / "pretrained" / "lrunet-pytorch" / "fashionmnist-lru10-ckpt-09346.t7"
)
PUBLISHED_ACCURACY = 93.46
PRECISIONS = ("float32", "mixed_float16")
NO_GPU_MESSAGE = (
    "benchmarks.gpu needs a GPU: TensorFlow sees none on this machine, nothing was measured "
    "(the CPU figures are benchmarks.run's)."
)

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lrunet14", "sharesnet164"], f"From {', '.join(models.MODELS)}.")
flags.DEFINE_integer("batch_size", 128, "Training batch size.")
flags.DEFINE_integer("steps", 20, "Timed training steps per measurement.")
flags.DEFINE_bool("jax", True, "Also time the JAX backend (if jax is installed).")
flags.DEFINE_bool("torch", True, "Also time the PyTorch reference (if torch has CUDA).")
flags.DEFINE_bool("accuracy", True, "Evaluate the published Fashion-MNIST LruNet-10 on the GPU.")
flags.DEFINE_string("checkpoint", str(CHECKPOINT), "The published LruNet-10 checkpoint.")
flags.DEFINE_string("output_dir", None, "Where gpu.json and gpu.md go (default: print only).")
flags.DEFINE_string("child", None, "Internal: measure in this process for backend jax.")


def keras_training(name: str, policy: str, batch_size: int, steps: int) -> dict[str, Any]:
    """Time to the first step's end and images/s of `fit` for one model and precision."""
    import keras

    keras.utils.set_random_seed(0)
    model = models.keras_model(name, policy)
    start = time.perf_counter()
    # KerasTrainer compiles and runs one `fit` step; mixed_float16 models
    # get Keras's LossScaleOptimizer from `compile`.
    trainer = measure.KerasTrainer(model, batch_size, warmup=1)
    first_step = time.perf_counter() - start
    return {
        "params": measure.trainable_params(model),
        "first_step_s": first_step,
        "images_per_s": trainer.run(steps),
        "loss_scaled": type(trainer.model.optimizer).__name__ == "LossScaleOptimizer",
    }


class CudaTorchTrainer(measure.TorchTrainer):
    """`measure.TorchTrainer` on the GPU; `amp` is float16 autocast with a GradScaler."""

    def __init__(self, net: Any, batch_size: int, input_shape: tuple, warmup: int, amp: bool):
        import torch

        self.amp = amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        net = net.cuda()
        super().__init__(net, batch_size, input_shape, warmup=0, bf16=False)
        self.images, self.labels = self.images.cuda(), self.labels.cuda()
        for _ in range(max(warmup, 1)):
            self._step()
        torch.cuda.synchronize()

    def _step(self) -> None:
        torch = self.torch
        if self.images.device.type != "cuda":
            return  # the parent's warm-up, before the batch is on the GPU
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            logits = self.net(self.images)
        loss = torch.nn.functional.cross_entropy(logits.float(), self.labels)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def run(self, steps: int) -> float:
        self.torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            self._step()
        self.torch.cuda.synchronize()
        return steps * self.batch_size / (time.perf_counter() - start)


def torch_training(name: str, amp: bool, batch_size: int, steps: int) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    net = models.torch_model(name)
    start = time.perf_counter()
    trainer = CudaTorchTrainer(net, batch_size, models.INPUT_SHAPE, warmup=1, amp=amp)
    first_step = time.perf_counter() - start
    return {
        "params": int(sum(p.numel() for p in net.parameters() if p.requires_grad)),
        "first_step_s": first_step,
        "images_per_s": trainer.run(steps),
    }


def published_accuracy(path: str) -> dict[str, Any]:
    """Test accuracy of the converted Fashion-MNIST LruNet-10, predicted on the GPU."""
    import numpy as np

    from keras_reuse import data
    from keras_reuse.applications.lrunet.checkpoint import load_lrunet_checkpoint

    model = load_lrunet_checkpoint(path)
    test = data.load("fashion_mnist", split="test", batch_size=500, augment=False, shuffle=False)
    correct = total = 0
    for images, labels in test:
        predicted = np.argmax(model.predict_on_batch(images), axis=1)
        correct += int(np.sum(predicted == labels.numpy()))
        total += len(predicted)
    return {"accuracy": 100.0 * correct / total, "images": total}


def _jax_child(names: list[str], batch_size: int, steps: int) -> dict[str, Any]:
    """The JAX rows, measured in a process with KERAS_BACKEND=jax."""
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    command = [
        sys.executable,
        "-m",
        "benchmarks.gpu",
        "--child=jax",
        f"--models={','.join(names)}",
        f"--batch_size={batch_size}",
        f"--steps={steps}",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"error": f"exit code {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def _measure_all(names: list[str], batch_size: int, steps: int) -> dict[str, Any]:
    """Every (model, precision) on the backend this process runs."""
    results: dict[str, Any] = {}
    for name in names:
        for policy in PRECISIONS:
            try:
                results[f"{name}/{policy}"] = keras_training(name, policy, batch_size, steps)
            except Exception as error:  # one failed row must not lose the others
                results[f"{name}/{policy}"] = {"error": f"{type(error).__name__}: {error}"}
    return results


def _cell(row: dict, key: str, digits: int = 1) -> str:
    value = row.get(key)
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(payload: dict) -> str:
    env = payload["environment"]
    lines = [
        f"Measured with `python -m benchmarks.gpu` on {env['gpu']}, TensorFlow "
        f"{env['tensorflow']}, Keras {env['keras']}, JAX {env['jax'] or '-'}, PyTorch "
        f"{env['torch'] or '-'}. Batch {payload['batch_size']}, {payload['steps']} timed steps "
        "after the first; time to first step includes tracing and compilation.",
        "",
        "| model | implementation | precision | params | time to first step s | train img/s |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in payload["rows"]:
        if "error" in row:
            cells = ["-", "-", f"error: {row['error'][:80]}"]
        else:
            cells = [f"{row['params']:,}", _cell(row, "first_step_s"), _cell(row, "images_per_s")]
        lines.append(
            f"| {models.label(row['model'])} | {row['implementation']} | {row['precision']} | "
            + " | ".join(cells)
            + " |"
        )
    accuracy = payload.get("published_accuracy")
    if accuracy:
        lines += [
            "",
            "| checkpoint | test accuracy on the GPU | authors' code |",
            "|---|---:|---:|",
            f"| fashionmnist-lru10-ckpt-09346.t7 | {accuracy.get('accuracy', float('nan')):.2f}%"
            f" | {PUBLISHED_ACCURACY:.2f}% |",
        ]
    return "\n".join(lines) + "\n"


def _rows(results: dict, implementation: str) -> list[dict]:
    if "error" in results:
        return [{"model": "-", "implementation": implementation, "precision": "-", **results}]
    rows = []
    for key, values in results.items():
        name, policy = key.split("/")
        rows.append({"model": name, "implementation": implementation, "precision": policy})
        rows[-1].update(values)
    return rows


def main(argv: list[str]) -> None:
    del argv
    unknown = [m for m in FLAGS.models if m not in models.MODELS]
    if unknown or FLAGS.batch_size < 1 or FLAGS.steps < 1:
        raise app.UsageError(
            f"--models from {', '.join(models.MODELS)}, --batch_size and --steps >= 1. "
            f"Received: models={FLAGS.models}, batch_size={FLAGS.batch_size}, "
            f"steps={FLAGS.steps}"
        )
    if FLAGS.child == "jax":
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")  # the GPU is JAX's; tf.data stays on CPU
        print(json.dumps(_measure_all(FLAGS.models, FLAGS.batch_size, FLAGS.steps)))
        return

    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print(NO_GPU_MESSAGE)
        return
    details = tf.config.experimental.get_device_details(gpus[0])
    try:
        import jax
    except ImportError:
        jax = None
    try:
        import torch

        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None
    payload: dict[str, Any] = {
        "environment": {
            "gpu": details.get("device_name", gpus[0].name),
            "gpus": len(gpus),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "jax": jax.__version__ if jax else None,
            "torch": torch.__version__ if torch else None,
        },
        "batch_size": FLAGS.batch_size,
        "steps": FLAGS.steps,
    }
    rows = _rows(_measure_all(FLAGS.models, FLAGS.batch_size, FLAGS.steps), "keras_reuse, TF")
    if FLAGS.jax and jax:
        rows += _rows(_jax_child(FLAGS.models, FLAGS.batch_size, FLAGS.steps), "keras_reuse, JAX")
    if FLAGS.torch and torch:
        for name in FLAGS.models:
            for amp in (False, True):
                precision = "AMP float16" if amp else "float32"
                try:
                    values = torch_training(name, amp, FLAGS.batch_size, FLAGS.steps)
                except Exception as error:
                    values = {"error": f"{type(error).__name__}: {error}"}
                rows.append(
                    {"model": name, "implementation": "PyTorch", "precision": precision, **values}
                )
    payload["rows"] = rows
    if FLAGS.accuracy:
        try:
            payload["published_accuracy"] = published_accuracy(FLAGS.checkpoint)
        except Exception as error:
            payload["published_accuracy"] = {"error": f"{type(error).__name__}: {error}"}
    table = markdown(payload)
    if FLAGS.output_dir:
        measure.write_results(FLAGS.output_dir, "gpu", payload, table)
    else:
        print(table)


if __name__ == "__main__":
    app.run(main)
