"""benchmarks.gpu: its bad inputs, its toy-size code path on a CPU, and the bundle's checks.

The GPU itself is not here. `--toy` runs the same code on a CPU (the
Keras PyTorch backend here, which compiles nothing; CI's no-TensorFlow job
runs the JAX backend) on the first Fashion-MNIST images; the bundle's size
check and wheel selection run on made-up files, with no download.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from locations import ROOT as ROOT_PATH

from benchmarks.gpu import BUNDLE_COMMAND, bundle

ROOT = str(ROOT_PATH)


def _run(args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_toy_arrays(path, train=32, test=16):
    """A tiny .npz in the bundle's format: the first Fashion-MNIST images (uint8), labels."""
    import tensorflow_datasets as tfds

    from keras_reuse.data import resolve_data_dir

    arrays = {}
    for split, count in (("train", train), ("test", test)):
        data = tfds.as_numpy(
            tfds.load(
                "fashion_mnist",
                split=f"{split}[:{count}]",
                batch_size=-1,
                data_dir=resolve_data_dir(),
            )
        )
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = data["image"], data["label"]
    np.savez_compressed(path, **arrays)
    return path


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0():
    done = _run(["-m", "benchmarks.gpu"], {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "benchmarks.gpu needs a GPU: neither JAX nor PyTorch sees one on this machine, nothing "
        "was measured (--toy runs the same code at toy size on a CPU)."
    ]


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--models=lrunet14,lrunet99", "--models=lrunet14,lrunet99: unknown 'lrunet99'; one of"),
        ("--backends=tensorflow", "--backends=tensorflow: unknown 'tensorflow'; one of jax, torch"),
        ("--precisions=float16", "--precisions=float16: unknown 'float16'; one of float32,"),
        ("--steps=0", "--steps=0: must be an integer >= 1"),
    ],
)
def test_bad_flags_exit_2_naming_the_value(flag, message):
    done = _run(["-m", "benchmarks.gpu", flag])
    assert done.returncode == 2, done.stderr[-3000:]
    assert message in done.stderr
    assert not done.stdout.strip()  # nothing measured


def test_missing_arrays_are_named_with_the_command_that_makes_them(tmp_path):
    missing = tmp_path / "fashion_mnist.npz"
    done = _run(["-m", "benchmarks.gpu", "--toy", f"--data={missing}", f"--output_dir={tmp_path}"])
    assert done.returncode == 1
    assert f"The Fashion-MNIST arrays {missing} is missing" in done.stderr
    assert f"run `{BUNDLE_COMMAND}` in the repository root" in done.stderr
    assert os.listdir(tmp_path) == []  # nothing written


def test_missing_keras_is_named_with_the_bundle_install_command():
    code = (
        "import runpy, sys\n"
        "sys.modules['keras'] = None\n"  # as on the GPU machine before the install
        "sys.argv = ['benchmarks.gpu', '--toy']\n"
        "runpy.run_module('benchmarks.gpu', run_name='__main__')\n"
    )
    done = _run(["-c", code])
    assert done.returncode == 1
    assert (
        "Keras is not installed here: install it from the bundle with `pip install -q "
        "--no-index --find-links gpu_bundle/wheels keras`" in done.stderr
    )
    assert BUNDLE_COMMAND in done.stderr


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu")
    data = write_toy_arrays(folder / "arrays.npz")
    done = _run(
        [
            "-m",
            "benchmarks.gpu",
            "--toy",
            "--backends=torch",
            "--models=lrunet14",
            "--precisions=mixed_float16",
            "--budget_s=3000",  # a loaded CI machine must not skip parts
            f"--data={data}",
            f"--output_dir={folder / 'out'}",
        ],
        timeout=3000,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads((folder / "out" / "gpu.json").read_text())
    return payload, (folder / "out" / "gpu.md").read_text(), data


def test_toy_run_measures_every_row_and_writes_the_table(toy):
    payload, table, _ = toy
    rows = {(r["implementation"], r["precision"]): r for r in payload["rows"]}
    assert sorted(rows) == [
        ("Keras, PyTorch", "mixed_float16"),
        ("PyTorch reference", "amp_bfloat16"),
        ("PyTorch reference", "amp_float16"),
        ("PyTorch reference", "float32"),
    ]
    for key, row in rows.items():
        assert "error" not in row, (key, row)
        assert row["images_per_s"] > 0 and np.isfinite(row["loss"]), key
        # Loss scaling exactly where float16 is: Keras's, and the GradScaler.
        assert row["loss_scaled"] == (key[1] in ("mixed_float16", "amp_float16")), key
    assert payload["skipped"] == []
    assert "| LruNet-14 | Keras, PyTorch | mixed_float16 |" in table
    assert "| LruNet-14 | PyTorch reference | AMP float16, GradScaler |" in table


def test_toy_accuracy_is_the_presets_prediction_on_the_arrays(toy):
    import keras

    from keras_reuse.applications import LruNet

    payload, table, data = toy
    result = payload["accuracy"]
    with np.load(data) as arrays:
        images, labels = arrays["test_images"] / 255.0, arrays["test_labels"]
    model = LruNet(weights="fashion_mnist", layer_reuse=1, classifier_activation=None)
    expected = 100 * np.mean(np.argmax(model.predict(images, verbose=0), axis=1) == labels)
    assert keras.backend.backend() == "tensorflow"  # another backend than the toy run's
    assert result["images"] == len(labels) == 16
    # Real test images: the preset classifies most; at most one image apart.
    assert expected >= 75
    assert result["accuracy"] == pytest.approx(expected, abs=100 / len(labels))
    assert result["preset_accuracy"] == 91.17  # the preset's own figure, quoted
    assert f"{result['accuracy']:.2f}% | 91.17% |" in table


def test_toy_training_run_scales_the_loss_and_moves_the_weights(toy):
    payload, table, _ = toy
    run = payload["training"]
    assert run["policy"] == "mixed_float16" and run["loss_scale_optimizer"]
    assert run["final_loss_scale"] > 1
    assert len(run["loss"]) == len(run["test_accuracy"]) == 1
    assert np.isfinite(run["loss"][0]) and run["stage_weight_change"] > 0
    assert "Loss scaling: LossScaleOptimizer" in table


# ------------------------------------------------------------------ bundle ---


def test_size_check_passes_under_the_limit_and_names_both_sizes_over_it():
    sizes = {"tree": 14 * bundle.MIB, "bundle": 20 * bundle.MIB}
    assert bundle.check_size(sizes) == (
        "working tree 14.0 MiB + gpu_bundle/ 20.0 MiB = 34.0 MiB of the 64 MiB that travel to "
        "the device"
    )
    with pytest.raises(ValueError, match=r"= 74\.0 MiB of the 64 MiB .*: too large"):
        bundle.check_size({"tree": 14 * bundle.MIB, "bundle": 60 * bundle.MIB})


def test_transfer_size_counts_tracked_and_untracked_files_not_ignored_ones(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("ignored/\ngpu_bundle/\n")
    (tmp_path / "tracked.txt").write_bytes(b"x" * 100)
    git("add", ".gitignore", "tracked.txt")
    (tmp_path / "untracked.txt").write_bytes(b"y" * 10)
    (tmp_path / "ignored").mkdir()
    (tmp_path / "ignored" / "big").write_bytes(b"z" * 5000)
    (tmp_path / "gpu_bundle").mkdir()
    (tmp_path / "gpu_bundle" / "w.whl").write_bytes(b"w" * 1000)
    sizes = bundle.transfer_bytes(tmp_path, tmp_path / "gpu_bundle")
    assert sizes == {"tree": 100 + 10 + len("ignored/\ngpu_bundle/\n"), "bundle": 1000}


def test_wheels_of_what_the_gpu_machine_has_are_left_out(tmp_path, monkeypatch):
    resolved = [
        "keras-3.15.1-py3-none-any.whl",
        "numpy-2.4.6-cp312-cp312-manylinux_2_28_x86_64.whl",
        "ml_dtypes-0.7.0-cp312-cp312-manylinux_2_28_x86_64.whl",
        "optree-0.20.0-cp312-cp312-manylinux_2_28_x86_64.whl",
        "absl_py-2.3.1-py3-none-any.whl",
    ]
    calls = []

    def fake_download(requirements, destination, no_deps):
        calls.append((requirements, no_deps))
        for name in resolved:
            open(os.path.join(destination, name), "w").close()

    monkeypatch.setattr(bundle, "pip_download", fake_download)
    wheels = tmp_path / "wheels"
    kept = bundle.download_wheels("3.15.1", list(bundle.PRESENT), wheels)
    assert calls == [(["keras==3.15.1"], False)]
    assert kept == sorted(os.listdir(wheels)) == [resolved[0], resolved[3]]
