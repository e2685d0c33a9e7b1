"""`python -m benchmarks.gpu`: the GPU check, on a machine with JAX and PyTorch and no TensorFlow.

    python -m benchmarks.gpu --output_dir=$OUT      # on one GPU, under 8 minutes
    python -m benchmarks.gpu --toy --output_dir=/tmp/gpu   # the same code on a CPU, toy size

Keras on the JAX backend (and on the PyTorch backend) trains LruNet-14 (the
looped layout, JAX's default) and ShaResNet-164 at batch 128 in float32,
mixed_bfloat16 and mixed_float16 (Keras's loss scaling) on synthetic
CIFAR-shaped arrays: the time to the end of the first `fit` step and
images/s. Next to them the PyTorch references (`torch_reference/`) in
float32 and with AMP (bfloat16, and float16 with a GradScaler). The
published Fashion-MNIST LruNet-10, built from the shipped preset, is
evaluated on the 10,000 test images; a fresh LruNet-10 trains for a few
epochs in mixed_float16. The arrays and the Keras wheels come from
`python -m benchmarks.gpu.bundle`, run beforehand on a CPU machine.

Writes gpu.json and gpu.md to --output_dir (default: $OUT when set), after
each part, so a run stopped by the time budget keeps what it measured.

Without a GPU (and without --toy) it prints one line saying so and exits
with status 0; an unknown model, backend or precision exits with status 2
naming it; a missing bundle exits with status 1 naming the command that
makes it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

from absl import app, flags

from benchmarks import models
from benchmarks.gpu import BUNDLE_COMMAND, DATA_FILE, ROOT, install_command, missing_message, parts
from benchmarks.gpu.report import markdown

BACKENDS = ("jax", "torch")
NO_GPU_MESSAGE = (
    "benchmarks.gpu needs a GPU: neither JAX nor PyTorch sees one on this machine, nothing "
    "was measured (--toy runs the same code at toy size on a CPU)."
)
TOY = {"batch_size": 4, "steps": 2, "train_epochs": 1}
# The most of --budget_s one child may take, so one slow part leaves time to
# the next: the first Keras backend (accuracy, training run, speed rows),
# then the PyTorch references; a later backend gets what is left.
SHARES = {"first": 0.65, "PyTorch reference": 0.15}
# A part is not started with less time than this left.
MIN_PART_S = 10.0

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lrunet14", "sharesnet164"], f"From {', '.join(models.MODELS)}.")
flags.DEFINE_list("backends", list(BACKENDS), "Keras backends to time, from jax, torch.")
flags.DEFINE_list("precisions", list(parts.KERAS_PRECISIONS), "Keras dtype policies to time.")
flags.DEFINE_integer("batch_size", 128, "Training batch size.")
flags.DEFINE_integer("steps", 20, "Timed training steps per row.")
flags.DEFINE_integer("train_epochs", 3, "Epochs of the mixed-precision LruNet-10 run.")
flags.DEFINE_bool("references", True, "Time the PyTorch reference networks.")
flags.DEFINE_bool("accuracy", True, "Evaluate the published Fashion-MNIST LruNet-10.")
flags.DEFINE_bool("train", True, "Train LruNet-10 on Fashion-MNIST in mixed_float16.")
flags.DEFINE_string("data", DATA_FILE, "The Fashion-MNIST arrays the bundle writes.")
flags.DEFINE_string("output_dir", None, "Where gpu.json and gpu.md go (default: $OUT if set).")
flags.DEFINE_float("budget_s", 420.0, "Seconds for the whole run; later parts are skipped.")
flags.DEFINE_bool(
    "toy",
    False,
    "Toy size (small stand-ins, batch 4, 2 steps, a few images, 1 epoch) on whatever "
    "device there is, a CPU included: the code path CI runs.",
)

# Runs in a child: the GPU's name, or null (a JAX with CUDA reserves most of
# the GPU's memory in the process that asks, so this process never does).
_PROBE = """
import json
try:
    import jax
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    print(json.dumps(gpus[0].device_kind if gpus else None))
except ImportError:
    try:
        import torch
        print(json.dumps(torch.cuda.get_device_name(0) if torch.cuda.is_available() else None))
    except ImportError:
        print("null")
"""


def usage_error(message: str) -> app.UsageError:
    return app.UsageError(message, exitcode=2)


def check_flags() -> None:
    """Exit status 2 naming the first bad flag value, before anything runs."""
    for flag, values, allowed in (
        ("models", FLAGS.models, models.MODELS),
        ("backends", FLAGS.backends, BACKENDS),
        ("precisions", FLAGS.precisions, parts.KERAS_PRECISIONS),
    ):
        unknown = [value for value in values if value not in allowed]
        if unknown:
            raise usage_error(
                f"--{flag}={','.join(values)}: unknown {', '.join(map(repr, unknown))}; "
                f"one of {', '.join(allowed)}"
            )
    for flag in ("batch_size", "steps", "train_epochs"):
        if getattr(FLAGS, flag) < 1:
            raise usage_error(f"--{flag}={getattr(FLAGS, flag)}: must be an integer >= 1")
    if FLAGS.budget_s <= 0:
        raise usage_error(f"--budget_s={FLAGS.budget_s}: must be > 0")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_bundle(data: str, needs_data: bool) -> None:
    """Exits with status 1 naming what is missing and the command that makes it."""
    if not installed("keras"):
        sys.exit(
            f"Keras is not installed here: install it from the bundle with `{install_command()}` "
            f"(the bundle is made on a CPU machine with `{BUNDLE_COMMAND}`)."
        )
    if needs_data and not os.path.isfile(data):
        sys.exit(missing_message(f"The Fashion-MNIST arrays {data}"))


def gpu_name() -> str | None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if done.returncode == 0 and lines else None


def _text(output: Any) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def run_child(spec: dict, env: dict[str, str], timeout: float) -> tuple[list[dict], str | None]:
    """Runs one `benchmarks.gpu.parts` child; its results, and an error if it did not finish."""
    command = [sys.executable, "-m", "benchmarks.gpu.parts", json.dumps(spec)]
    error = None
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        stdout = done.stdout
        if done.returncode:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            error = f"exit code {done.returncode}: {tail}"[:400]
    except subprocess.TimeoutExpired as expired:
        stdout = _text(expired.stdout)
        error = f"stopped by the time budget after {timeout:.0f} s"
    results = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                results.append(json.loads(line))
            except ValueError:
                pass
    return results, error


def collect(payload: dict, results: list[dict], implementation: str) -> None:
    """Puts one child's results into the payload."""
    for result in results:
        part = result.pop("part")
        if part == "environment":
            payload["environment"].setdefault("children", {})[implementation] = result
        elif part == "speed":
            payload["rows"].append({"implementation": implementation, **result})
        elif part == "modules":
            payload["tensorflow_imported"] = payload["tensorflow_imported"] or result["tensorflow"]
        else:
            payload[part] = {"backend": implementation, **result}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise usage_error(f"unexpected arguments: {' '.join(argv[1:])}")
    check_flags()
    started = time.monotonic()
    output_dir = FLAGS.output_dir or os.environ.get("OUT") or None
    gpu = gpu_name()
    if gpu is None and not FLAGS.toy:
        print(NO_GPU_MESSAGE)
        return
    check_bundle(FLAGS.data, FLAGS.accuracy or FLAGS.train)
    sizes = dict(TOY) if FLAGS.toy else {}
    batch_size = sizes.get("batch_size", FLAGS.batch_size)
    steps = sizes.get("steps", FLAGS.steps)
    payload: dict[str, Any] = {
        "environment": {
            "gpu": gpu or "none (CPU)",
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "toy": FLAGS.toy,
        "batch_size": batch_size,
        "steps": steps,
        "rows": [],
        "skipped": [],
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
    base = {
        "models": FLAGS.models,
        "batch_size": batch_size,
        "steps": steps,
        "toy": FLAGS.toy,
        "data": os.path.abspath(FLAGS.data),
        "train_epochs": sizes.get("train_epochs", FLAGS.train_epochs),
    }
    jobs = []
    for index, backend in enumerate(FLAGS.backends):
        # The accuracy and the training run once, on the first backend.
        spec = {
            **base,
            "kind": "keras",
            "precisions": FLAGS.precisions,
            "accuracy": FLAGS.accuracy and index == 0,
            "train": FLAGS.train and index == 0,
        }
        label = f"Keras, {'JAX' if backend == 'jax' else 'PyTorch'}"
        jobs.append((label, spec, {"KERAS_BACKEND": backend}, backend))
        if index == 0 and FLAGS.references:
            jobs.append(("PyTorch reference", {**base, "kind": "torch_reference"}, {}, "torch"))
    if FLAGS.references and not FLAGS.backends:
        jobs.append(("PyTorch reference", {**base, "kind": "torch_reference"}, {}, "torch"))
    for position, (label, spec, env, module) in enumerate(jobs):
        left = FLAGS.budget_s - (time.monotonic() - started)
        if position < len(jobs) - 1:  # the last child may use all that is left
            share = SHARES["first"] if position == 0 else SHARES.get(label, 1.0)
            left = min(left, share * FLAGS.budget_s)
        if not installed(module):
            payload["skipped"].append(f"{label}: {module} is not installed")
        elif left < MIN_PART_S:
            payload["skipped"].append(f"{label}: not started, the time budget was spent")
        else:
            results, error = run_child(spec, env, left)
            collect(payload, results, label)
            if error:
                payload["skipped"].append(f"{label}: {error}")
        payload["seconds"] = time.monotonic() - started
        if output_dir:
            write(output_dir, payload, markdown(payload))
    print(markdown(payload))


def write(output_dir: str, payload: dict, table: str) -> None:
    """gpu.json and gpu.md in `output_dir`, each written atomically."""
    from keras_reuse.utils import atomic

    os.makedirs(output_dir, exist_ok=True)
    atomic.write_text(os.path.join(output_dir, "gpu.json"), json.dumps(payload, indent=2))
    atomic.write_text(os.path.join(output_dir, "gpu.md"), table)


if __name__ == "__main__":
    app.run(main)
