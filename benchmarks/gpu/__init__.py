"""The GPU check: training speed, compile time, mixed precision and accuracy on a borrowed GPU.

A package of its own because it is two programs for two machines:

- `python -m benchmarks.gpu` (`__main__`) runs on the GPU machine, which
  has CUDA builds of JAX and PyTorch but neither TensorFlow nor a network.
  It starts one child process per Keras backend and one for the PyTorch
  references (`parts`: Keras fixes its backend at import, and JAX reserves
  most of the GPU's memory in the process that uses it) and writes one
  table (`report`) and one JSON file.
- `python -m benchmarks.gpu.bundle` runs on a CPU machine with a network and
  TensorFlow Datasets: it downloads the wheels the GPU machine lacks (Keras
  and its dependencies that are not there), writes the Fashion-MNIST arrays,
  checks that the bundle and the working tree fit what travels to the
  device, and prints the one command to run there.

The paths and commands both programs name live here.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Git-ignored; carried to the device next to the working tree.
BUNDLE_DIR = "gpu_bundle"
WHEELS_DIR = f"{BUNDLE_DIR}/wheels"
DATA_FILE = f"{BUNDLE_DIR}/fashion_mnist.npz"
BUNDLE_COMMAND = "python -m benchmarks.gpu.bundle"
# What the device machine needs installed from the bundle.
DEVICE_PACKAGES = ("keras",)


def install_command(keras_version: str | None = None) -> str:
    """The device's install step: Keras from the bundle's wheels, nothing from a network."""
    keras = f"keras=={keras_version}" if keras_version else "keras"
    return f"pip install -q --no-index --find-links {WHEELS_DIR} {keras}"


def device_command(keras_version: str | None = None) -> str:
    """The one line to run on the GPU machine (the repository root is the working directory)."""
    return f"{install_command(keras_version)} && python -m benchmarks.gpu --output_dir=$OUT"


def missing_message(what: str) -> str:
    """The error for a missing piece of the bundle, with the command that makes it."""
    return (
        f"{what} is missing: on a CPU machine with a network, run `{BUNDLE_COMMAND}` in the "
        f"repository root (it writes {BUNDLE_DIR}/ and prints the command to run on the GPU "
        f"machine), then carry {BUNDLE_DIR}/ there."
    )
