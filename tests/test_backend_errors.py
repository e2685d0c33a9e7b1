"""What needs TensorFlow fails early under another Keras backend, saying what to do.

TFLite export and `--strategy` (tf.distribute) are TensorFlow programs.
Under KERAS_BACKEND=jax (a process of its own: Keras picks its backend at
import) they raise an error naming the backend and the alternative, before
anything is converted, loaded or written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from locations import ROOT as ROOT_PATH

ROOT = ROOT_PATH

# Runs under KERAS_BACKEND=jax; prints each entry point's error message.
_SCRIPT = r"""
import json, os, sys
import keras
from keras_reuse.training import distribute
from keras_reuse import training
from keras_reuse.export import to_tflite

out = sys.argv[1]
messages = {"backend": keras.backend.backend()}
inputs = keras.Input((4,))
model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
for name, call in [
    ("to_tflite", lambda: to_tflite(model, os.path.join(out, "m.tflite"))),
    ("make_strategy", lambda: distribute.make_strategy("mirrored")),
    ("train", lambda: training.train(training.TrainConfig(
        strategy="multi_worker", output_dir=os.path.join(out, "run")))),
]:
    try:
        call()
        messages[name] = None
    except ValueError as error:
        messages[name] = [type(error).__name__, str(error)]
messages["written"] = sorted(os.listdir(out))
model.save(os.path.join(sys.argv[2], "m.keras"))  # for the export CLI test
print(json.dumps(messages))
"""


def _env() -> dict:
    return dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """Where the script saves a small .keras model (trained on nothing)."""
    return tmp_path_factory.mktemp("saved")


@pytest.fixture(scope="module")
def messages(tmp_path_factory, saved) -> dict:
    out = tmp_path_factory.mktemp("jax_errors")
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(out), str(saved)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_to_tflite_names_the_backend_and_the_way_to_export(messages):
    assert messages["backend"] == "jax"
    kind, text = messages["to_tflite"]
    assert kind == "ValueError"
    assert "TFLite export (to_tflite) needs the TensorFlow Keras backend" in text
    assert "KERAS_BACKEND='jax'" in text
    assert "keras-reuse export model.keras model.tflite" in text
    assert messages["written"] == []  # nothing converted or written


def test_distributed_strategies_name_the_backend_and_the_alternative(messages):
    kind, text = messages["make_strategy"]
    assert kind == "ValueError"
    assert "--strategy=mirrored (tf.distribute) needs the TensorFlow Keras backend" in text
    assert "KERAS_BACKEND='jax'" in text and "--strategy=default" in text
    # training.train refuses in its flag checks, before reading data.
    kind, text = messages["train"]
    assert kind == "ConfigError"
    assert text.startswith("strategy='multi_worker': --strategy=multi_worker (tf.distribute)")
    assert "KERAS_BACKEND='jax'" in text


def test_cli_train_with_a_strategy_under_jax_is_a_one_line_error(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_reuse",
            "train",
            "--strategy=mirrored",
            f"--output_dir={out}",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-reuse train: error: --strategy=mirrored:")
    assert "KERAS_BACKEND='jax'" in last
    assert not out.exists()


def test_cli_export_under_jax_is_a_one_line_error(messages, saved, tmp_path):
    out = tmp_path / "m.tflite"
    done = subprocess.run(
        [sys.executable, "-m", "keras_reuse", "export", str(saved / "m.keras"), str(out)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-reuse export: error: keras-reuse export needs the TensorFlow")
    assert "KERAS_BACKEND='jax'" in last and "KERAS_BACKEND=tensorflow" in last
    assert not out.exists()
