"""`python -m benchmarks.gpu.bundle`: what the GPU machine lacks, made on a CPU machine.

    python -m benchmarks.gpu.bundle     # writes gpu_bundle/, prints the device command

The GPU machine has Python 3.12, CUDA builds of JAX and PyTorch, flax,
optax, absl-py, h5py, ml-dtypes, numpy and matplotlib, but no Keras, no
TensorFlow and no network. This script

1. downloads the wheels of Keras (the version installed here, so the device
   runs what CI tests) and of its dependencies, for that Python and
   platform, leaving out the ones the machine has (`--present`);
2. writes the Fashion-MNIST test images (all 10,000, for the published
   LruNet-10's accuracy) and the first `--train_images` training images
   (for the mixed-precision training run) from TFDS into one `.npz`;
3. checks that the bundle and the working tree (what git tracks, and
   untracked files it does not ignore) fit under the 64 MiB that travel to
   the device;
4. prints the one-line command to run there.

The wheels go in `gpu_bundle/wheels/`, the arrays in
`gpu_bundle/fashion_mnist.npz`; `gpu_bundle/` is git-ignored and carried to
the device beside the working tree.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from absl import app, flags

from benchmarks.gpu import BUNDLE_DIR, DATA_FILE, ROOT, WHEELS_DIR, device_command

MIB = 1024 * 1024
LIMIT_BYTES = 64 * MIB
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
# On the GPU machine already (with their own dependencies): not downloaded.
PRESENT = ("numpy", "h5py", "ml-dtypes", "absl-py", "jax", "jaxlib", "torch")

FLAGS = flags.FLAGS
flags.DEFINE_string("keras", None, "Keras version to bundle (default: the one installed here).")
flags.DEFINE_list("present", list(PRESENT), "Distributions the GPU machine has already.")
flags.DEFINE_integer("train_images", 30_000, "Fashion-MNIST training images in the .npz.")
flags.DEFINE_bool("download", True, "Download the wheels (else keep gpu_bundle/wheels as is).")


def normalized(name: str) -> str:
    """A distribution's name as wheel files and pip compare it (PEP 503)."""
    return name.lower().replace("_", "-").replace(".", "-")


def wheel_name(filename: str) -> str:
    """The distribution a wheel file holds: `optree-0.17.0-cp312-...whl` -> "optree"."""
    return normalized(filename.split("-", 1)[0])


def pip_download(requirements: list[str], destination: str, no_deps: bool) -> None:
    """Wheels for the GPU machine's Python and platform (binary only) into `destination`."""
    command = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:"]
    command += ["--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += ["--dest", destination]
    if no_deps:
        command.append("--no-deps")
    subprocess.run([*command, *requirements], check=True)


def download_wheels(keras_version: str, present: list[str], wheels: Path) -> list[str]:
    """Keras and the dependencies the GPU machine lacks, into `wheels` (replaced).

    pip resolves Keras's dependencies for the GPU machine's Python once, into
    a scratch folder; the wheels of distributions it has already are left out.

    Returns:
        The file names kept.
    """
    skip = {normalized(name) for name in present}
    with tempfile.TemporaryDirectory() as scratch:
        pip_download([f"keras=={keras_version}"], scratch, no_deps=False)
        kept = sorted(f for f in os.listdir(scratch) if wheel_name(f) not in skip)
        partial = wheels.with_name(wheels.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in kept:
            shutil.copy2(os.path.join(scratch, name), partial / name)
        shutil.rmtree(wheels, ignore_errors=True)
        partial.rename(wheels)
    return kept


def write_arrays(path: Path, train_images: int) -> dict[str, int]:
    """The Fashion-MNIST test split and the first `train_images` training images, as uint8."""
    import numpy as np

    from keras_reuse.utils.backends import require_installed

    require_installed("python -m benchmarks.gpu.bundle", ("tensorflow", "tensorflow_datasets"))
    # Lazy: TFDS (and TensorFlow) only here, on the CPU machine.
    import tensorflow_datasets as tfds

    from keras_reuse.data import resolve_data_dir

    data_dir = resolve_data_dir()
    arrays = {}
    for split, limit in (("train", train_images), ("test", None)):
        data = tfds.as_numpy(
            tfds.load("fashion_mnist", split=split, batch_size=-1, data_dir=data_dir)
        )
        arrays[f"{split}_images"] = data["image"][:limit].astype(np.uint8)
        arrays[f"{split}_labels"] = data["label"][:limit].astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(partial, **arrays)
    os.replace(partial, path)
    return {key: len(value) for key, value in arrays.items() if key.endswith("labels")}


def _git_files(root: Path) -> list[str]:
    """What travels of the working tree: tracked files, and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({name for name in listed.split("\0") if name})


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def transfer_bytes(root: Path, bundle: Path) -> dict[str, int]:
    """Bytes of the working tree (as it travels) and of the bundle folder."""
    tree = sum((root / name).stat().st_size for name in _git_files(root) if (root / name).is_file())
    return {"tree": tree, "bundle": folder_bytes(bundle) if bundle.is_dir() else 0}


def check_size(sizes: dict[str, int], limit: int = LIMIT_BYTES) -> str:
    """One line with the sizes; ValueError naming them when the total passes `limit`."""
    total = sizes["tree"] + sizes["bundle"]
    line = (
        f"working tree {sizes['tree'] / MIB:.1f} MiB + {BUNDLE_DIR}/ {sizes['bundle'] / MIB:.1f} "
        f"MiB = {total / MIB:.1f} MiB of the {limit / MIB:.0f} MiB that travel to the device"
    )
    if total > limit:
        raise ValueError(
            f"{line}: too large. Make {BUNDLE_DIR}/ smaller (--train_images) or remove untracked "
            "files from the working tree."
        )
    return line


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}", exitcode=2)
    if FLAGS.train_images < 1:
        raise app.UsageError(
            f"--train_images={FLAGS.train_images}: must be an integer >= 1", exitcode=2
        )
    keras_version = FLAGS.keras or importlib.metadata.version("keras")
    wheels = ROOT / WHEELS_DIR
    if FLAGS.download:
        kept = download_wheels(keras_version, FLAGS.present, wheels)
        print(f"{WHEELS_DIR}/: {', '.join(kept)}")
    counts = write_arrays(ROOT / DATA_FILE, FLAGS.train_images)
    train, test = counts["train_labels"], counts["test_labels"]
    print(f"{DATA_FILE}: {train:,} training and {test:,} test images")
    try:
        print(check_size(transfer_bytes(ROOT, ROOT / BUNDLE_DIR)))
    except ValueError as error:
        sys.exit(str(error))
    print(f"On the GPU machine (carry {BUNDLE_DIR}/), in the repository root:")
    print(device_command(keras_version))


if __name__ == "__main__":
    app.run(main)
