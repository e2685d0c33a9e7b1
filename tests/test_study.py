"""The layer-reuse study: a tiny real study through the CLI, resume, plots, bad flags."""

import csv
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image

from keras_reuse import study, training
from keras_reuse.applications import LruNet

TINY_FLAGS = [
    "--epochs=1",
    "--steps_per_epoch=2",
    "--batch_size=32",
    "--max_train_examples=64",
    "--max_eval_examples=64",
    "--verbose=0",
]
# The same budget as a TrainConfig (what the CLI builds from TINY_FLAGS).
TINY = training.TrainConfig(
    model="lrunet",
    dataset="fashion_mnist",
    epochs=1,
    steps_per_epoch=2,
    batch_size=32,
    max_train_examples=64,
    max_eval_examples=64,
    verbose=0,
)


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "keras_reuse.cli", "study", *args],
        capture_output=True,
        text=True,
    )


def trainable_params(n):
    model = LruNet(num_classes=10, input_shape=(28, 28, 1), layer_reuse=n)
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_cli_study_trains_every_reuse_count_and_writes_table_and_plots(tmp_path):
    out = str(tmp_path / "study")
    proc = cli("--reuse=2,1", f"--output_dir={out}", *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr[-3000:]

    with open(os.path.join(out, "layer_reuse_study.csv"), newline="") as f:
        records = list(csv.DictReader(f))
    assert tuple(records[0]) == study.COLUMNS
    assert [int(r["layer_reuse"]) for r in records] == [1, 2]
    for r in records:
        n = int(r["layer_reuse"])
        assert int(r["unrolled_depth"]) == 8 * n + 3
        assert int(r["trainable_params"]) == trainable_params(n)
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0 and int(r["epochs"]) == 1
        assert os.path.isfile(os.path.join(out, f"lrunet_reuse{n}", "model.keras"))
    # Reuse 2 shares its convolutions: stored once, unrolled twice.
    one, two = records
    assert one["unrolled_params"] == one["trainable_params"]
    assert int(two["unrolled_params"]) > int(two["trainable_params"])
    assert "| 2 | 19 |" in proc.stdout  # the Markdown table

    for name in study.PLOT_NAMES.values():
        pixels = image.imread(os.path.join(out, name))
        assert pixels.ndim == 3 and pixels.std() > 0.01, name  # a drawing, not a blank
    overview = image.imread(os.path.join(out, "layer_reuse_study.png"))
    assert overview.shape[1] > 3 * overview.shape[0]  # three panels side by side

    # Resuming a finished study retrains nothing and returns the same table.
    models = {n: os.path.join(out, f"lrunet_reuse{n}", "model.keras") for n in (1, 2)}
    mtimes = {n: os.path.getmtime(p) for n, p in models.items()}
    again = study.run_study((1, 2), out, TINY, resume=True)
    assert {n: os.path.getmtime(p) for n, p in models.items()} == mtimes
    assert list(again.rows) == study.read_csv(os.path.join(out, "layer_reuse_study.csv"))
    assert [r.test_accuracy for r in again.rows] == [float(r["test_accuracy"]) for r in records]

    # Without --resume the directory is refused; with it, another budget is too.
    with pytest.raises(training.ConfigError, match="already holds a study"):
        study.run_study((1, 2), out, TINY)
    with pytest.raises(training.ConfigError, match=r"--learning_rate=0.05: differs from the run"):
        study.run_study((1, 2), out, dataclasses.replace(TINY, learning_rate=0.05), resume=True)


def test_cli_bad_flag_is_a_one_line_error(tmp_path):
    # Budget flags reach the same ConfigError as below; --reuse is the CLI's own.
    out = tmp_path / "never"
    proc = cli("--reuse=0,2", f"--output_dir={out}")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "keras-reuse study: error: --reuse=0,2: expected integers >= 1, e.g. 1,2,4,8,10"
    assert not out.exists()


@pytest.mark.parametrize(
    "reuse, change, error, message",
    [
        ((), {}, ValueError, "Received: reuse=()"),
        ((2, 2), {}, ValueError, "must not repeat a reuse count"),
        ((1, "4"), {}, ValueError, "Received: reuse=(1, '4')"),
        ((1,), {"model": "sharesnet164"}, training.ConfigError, "--model=sharesnet164"),
        ((1,), {"batch_size": 0}, training.ConfigError, "--batch_size=0: must be an integer"),
        ((1,), {"epochs": 0}, training.ConfigError, "--epochs=0: must be an integer >= 1"),
        ((1,), {"dataset": "fashion_mnistt"}, training.ConfigError, "Did you mean"),
    ],
)
def test_bad_study_arguments_fail_before_writing(tmp_path, reuse, change, error, message):
    out = tmp_path / "never"
    config = dataclasses.replace(TINY, **change)
    with pytest.raises(error) as raised:
        study.run_study(reuse, str(out), config)
    assert message in str(raised.value)
    assert not out.exists()


def test_plots_and_csv_round_trip_of_given_rows(tmp_path):
    rows = [
        study.StudyRow(n, 8 * n + 3, 1000 * n, 3000 * n, 10 * n, 0.8 + n / 100, 0.5, 3, None, 1.5)
        for n in (4, 1, 2)
    ]
    paths = study.plot(rows, str(tmp_path), title="synthetic")
    assert sorted(paths) == ["accuracy", "depth", "overview", "params"]
    assert all(os.path.getsize(p) > 10_000 for p in paths.values())
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(study._csv_text(rows))
    assert study.read_csv(str(csv_path)) == rows
    with pytest.raises(ValueError, match="at least one study row"):
        study.plot([], str(tmp_path))
