"""Every script in examples/ runs with tiny settings on the real data and does what it says."""

import os
import sys

import keras
import processes
from locations import ROOT as ROOT_PATH

from keras_reuse.reuse.summary import reuse_summary

ROOT = str(ROOT_PATH)
EXAMPLES = os.path.join(ROOT, "examples")
PRETRAINED = os.path.join(os.path.dirname(ROOT), "shared", "pretrained", "lrunet-pytorch")


def run(script, *args, cwd):
    proc = processes.run(
        [sys.executable, os.path.join(EXAMPLES, script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_every_example_is_tested():
    tested = {
        "convert_pretrained.py",
        "export_tflite.py",
        "fit_lrunet.py",
        "share_resnet.py",
        "sharesnet_cifar.py",
        "tune_lrunet.py",
    }
    assert {f for f in os.listdir(EXAMPLES) if f.endswith(".py")} == tested


def test_fit_lrunet_trains_and_saves_the_model(tmp_path):
    out = run(
        "fit_lrunet.py",
        "--layer_reuse=2",
        "--epochs=1",
        "--train_examples=128",
        "--test_examples=64",
        "--batch_size=64",
        "--output=lrunet.keras",
        cwd=tmp_path,
    )
    assert "test accuracy: " in out
    # compile=False: the architecture is what counts here (the optimizer, CoupledSGD, is
    # registered only once keras_reuse.training.optimizers is imported).
    model = keras.models.load_model(tmp_path / "lrunet.keras", compile=False)
    assert reuse_summary(model).calls["stage3_pw"] == 2
    assert model.input_shape == (None, 28, 28, 1)


def test_tune_lrunet_runs_a_keras_tuner_search(tmp_path):
    out = run(
        "tune_lrunet.py",
        "--max_trials=1",
        "--epochs=1",
        "--layer_reuse=1",
        "--width_multiplier=0.5",
        "--train_examples=128",
        "--validation_examples=64",
        "--batch_size=64",
        "--directory=tune",
        cwd=tmp_path,
    )
    assert "best hyperparameters: {'layer_reuse': 1, 'width_multiplier': 0.5" in out
    assert "retrain with: keras-reuse train --model=lrunet --layer_reuse=1 " in out
    assert (tmp_path / "tune" / "lrunet" / "oracle.json").is_file()


def test_sharesnet_cifar_trains_a_shared_wide_resnet(tmp_path):
    out = run(
        "sharesnet_cifar.py",
        "--dataset=cifar10_jpeg",
        "--depth=22",
        "--width=1",
        "--epochs=1",
        "--train_examples=128",
        "--test_examples=64",
        "--batch_size=64",
        cwd=tmp_path,
    )
    summary = next(line for line in out.splitlines() if line.startswith("WRN-22-1:"))
    shared, unshared = (int(part.split()[0].replace(",", "")) for part in summary[10:].split(", "))
    assert shared < unshared
    assert "ShaResNet test accuracy: " in out


def test_share_resnet_shares_a_users_resnet_and_trains_both(tmp_path):
    out = run(
        "share_resnet.py",
        "--epochs=1",
        "--train_examples=128",
        "--test_examples=64",
        "--batch_size=64",
        cwd=tmp_path,
    )
    lines = {line.split(":")[0]: line for line in out.splitlines() if "test accuracy" in line}
    params = {k: int(v.split(": ")[1].split()[0].replace(",", "")) for k, v in lines.items()}
    # ResNet-20: 3x3 convs of 16, 32 and 64 channels; blocks 1..3, 2..3 and 2..3 share.
    assert params["ResNet"] - params["ShaResNet"] == 2 * 16 * 16 * 9 + 32 * 32 * 9 + 64 * 64 * 9


def test_export_tflite_writes_verified_float_and_int8_files(tmp_path):
    out = run(
        "export_tflite.py",
        "--layer_reuse=2",
        "--epochs=1",
        "--train_examples=128",
        "--test_examples=64",
        "--calibration_examples=32",
        "--output_dir=tflite",
        cwd=tmp_path,
    )
    for name in ("lrunet_float32.tflite", "lrunet_int8.tflite"):
        assert (tmp_path / "tflite" / name).stat().st_size > 0
    accuracy = {
        line.split(":")[0]: float(line.split(": ")[1].split("%")[0])
        for line in out.splitlines()
        if line.startswith(("Keras:", "LiteRT float32:", "LiteRT int8:"))
    }
    assert sorted(accuracy) == ["Keras", "LiteRT float32", "LiteRT int8"]
    # The float32 file reproduces Keras (to_tflite checked it to 1e-5 of the output
    # scale): the same predictions, up to a near-tie on one of the 64 images.
    assert abs(accuracy["LiteRT float32"] - accuracy["Keras"]) <= 100 / 64


def test_convert_pretrained_reproduces_the_published_network(tmp_path):
    out = run(
        "convert_pretrained.py",
        os.path.join(PRETRAINED, "fashionmnist-lru1-ckpt-09117.t7"),
        "--test_examples=1000",
        "--output=lrunet1.keras",
        cwd=tmp_path,
    )
    line = next(line for line in out.splitlines() if line.startswith("fashion_mnist test[:1000]"))
    accuracy = float(line.split(": ")[1].split("%")[0])
    # The checkpoint scores 91.17% on the whole test split; a failed
    # conversion would be near chance (10%).
    assert accuracy > 85.0
    model = keras.models.load_model(tmp_path / "lrunet1.keras")
    assert model.input_shape == (None, 28, 28, 1)
