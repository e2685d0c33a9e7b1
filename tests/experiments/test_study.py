"""The layer-reuse study: a tiny real study through the CLI, resume, plots, bad flags."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import processes
import pytest
from locations import ROOT
from matplotlib import image

from keras_reuse import reuse_summary, training
from keras_reuse.applications import LruNet
from keras_reuse.experiments import study, study_results
from keras_reuse.training import builders

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
    return processes.run(
        [sys.executable, "-m", "keras_reuse", "study", *args],
        capture_output=True,
        text=True,
        timeout=1800,
    )


def trainable_params(n):
    model = LruNet(num_classes=10, input_shape=(28, 28, 1), layer_reuse=n)
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# Runs the study CLI, killed with SIGKILL when the 6th epoch of the session
# begins: runs (N=1, seeds 0 and 1) have finished and (N=2, seed 0) has
# backed up its first epoch.
KILLED = (
    "import os, signal, sys\n"
    "from keras_reuse import cli\n"
    "from keras_reuse.training import callbacks\n"
    "begin = callbacks.ThroughputMonitor.on_epoch_begin\n"
    "calls = []\n"
    "def on_epoch_begin(self, epoch, logs=None):\n"
    "    calls.append(epoch)\n"
    "    if len(calls) == 6:\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    begin(self, epoch, logs)\n"
    "callbacks.ThroughputMonitor.on_epoch_begin = on_epoch_begin\n"
    "cli.run([sys.argv[0], 'study', *sys.argv[1:]])\n"
)


def test_cli_study_with_seeds_per_epoch_rows_plots_and_resume_after_a_kill(tmp_path):
    out = str(tmp_path / "study")
    flags = ["--reuse=2,1", "--seeds=0,1", f"--output_dir={out}", *TINY_FLAGS, "--epochs=2"]
    killed = processes.run(
        [sys.executable, "-c", KILLED, *flags], capture_output=True, text=True, timeout=1800
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert "study [2/4] N=1 seed=1: done" in killed.stdout
    assert "study [3/4] N=2 seed=0: starting" in killed.stdout
    runs = {(n, s): os.path.join(out, f"lrunet_reuse{n}_seed{s}") for n in (1, 2) for s in (0, 1)}
    assert not os.path.exists(os.path.join(runs[2, 0], "results.json"))
    models = {k: os.path.join(runs[k], "model.keras") for k in [(1, 0), (1, 1)]}
    mtimes = {k: os.path.getmtime(p) for k, p in models.items()}

    proc = cli(*flags, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "study [1/4] N=1 seed=0: finished earlier" in proc.stdout
    assert "study [3/4] N=2 seed=0: resuming after epoch 1" in proc.stdout
    assert "study [4/4] N=2 seed=1: starting" in proc.stdout
    # The finished runs were not retrained; the killed one did only epoch 2.
    assert {k: os.path.getmtime(p) for k, p in models.items()} == mtimes
    with open(os.path.join(runs[2, 0], "results.json")) as f:
        resumed = json.load(f)
    assert (resumed["epochs_completed"], resumed["epochs_this_session"]) == (2, 1)

    with open(os.path.join(out, "layer_reuse_study.csv"), newline="") as f:
        records = list(csv.DictReader(f))
    assert tuple(records[0]) == study.COLUMNS
    assert [(int(r["layer_reuse"]), int(r["seed"])) for r in records] == sorted(runs)
    for r in records:
        n = int(r["layer_reuse"])
        assert int(r["unrolled_depth"]) == 8 * n + 3
        assert int(r["trainable_params"]) == trainable_params(n)
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0 and int(r["epochs"]) == 2
    # Reuse 2 shares its convolutions: stored once, unrolled twice.
    one, two = records[0], records[2]
    assert one["unrolled_params"] == one["trainable_params"]
    assert int(two["unrolled_params"]) > int(two["trainable_params"])
    # The two seeds are different runs.
    assert records[0]["test_loss"] != records[1]["test_loss"]
    assert "| 2 | 1 | 19 |" in proc.stdout  # the Markdown table
    assert "| 1 | 2 | " in proc.stdout  # the summary: N=1 over 2 seeds

    # Every epoch of every run, its last one equal to the run's final result.
    with open(os.path.join(out, "layer_reuse_study_epochs.csv"), newline="") as f:
        epochs = list(csv.DictReader(f))
    assert tuple(epochs[0]) == study.EPOCH_COLUMNS
    assert [(int(e["layer_reuse"]), int(e["seed"]), int(e["epoch"])) for e in epochs] == [
        (n, s, e) for n, s in sorted(runs) for e in (1, 2)
    ]
    finals = {(r["layer_reuse"], r["seed"]): float(r["test_accuracy"]) for r in records}
    for e in epochs[1::2]:
        assert float(e["test_accuracy"]) == finals[e["layer_reuse"], e["seed"]]

    for name in study.PLOT_NAMES.values():
        pixels = image.imread(os.path.join(out, name))
        assert pixels.ndim == 3 and pixels.std() > 0.01, name  # a drawing, not a blank
    overview = image.imread(os.path.join(out, "layer_reuse_study.png"))
    assert overview.shape[1] > 4 * overview.shape[0]  # four panels side by side

    # Resuming a finished study retrains nothing and returns the same tables.
    config = dataclasses.replace(TINY, epochs=2)
    again = study.run_study((1, 2), out, config, resume=True, seeds=(0, 1))
    assert list(again.rows) == study.read_csv(os.path.join(out, "layer_reuse_study.csv"))
    assert list(again.epoch_rows) == study.read_csv(again.epochs_csv_path, study.EpochRow)

    # Without --resume the directory is refused; with it, another budget is too.
    with pytest.raises(training.ConfigError, match="already holds a study"):
        study.run_study((1, 2), out, config, seeds=(0, 1))
    with pytest.raises(training.ConfigError, match=r"learning_rate=0.05: differs from the run"):
        study.run_study(
            (1, 2), out, dataclasses.replace(config, learning_rate=0.05), resume=True, seeds=(0, 1)
        )


def test_cli_study_control_arm_resumes_after_a_kill(tmp_path):
    out = str(tmp_path / "control")
    flags = ["--reuse=2", "--unshared=2", f"--output_dir={out}", *TINY_FLAGS, "--epochs=2"]
    # Killed when the control's second epoch begins: its first is backed up.
    killed_script = KILLED.replace("len(calls) == 6", "len(calls) == 4")
    killed = subprocess.run(
        [sys.executable, "-c", killed_script, *flags], capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert "study [1/2] N=2 seed=0: done" in killed.stdout
    assert "study [2/2] N=2 unshared seed=0: starting" in killed.stdout
    control_dir = os.path.join(out, "lrunet_reuse2_unshared_seed0")
    assert not os.path.exists(os.path.join(control_dir, "results.json"))

    proc = cli(*flags, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "study [2/2] N=2 unshared seed=0: resuming after epoch 1" in proc.stdout
    with open(os.path.join(control_dir, "results.json")) as f:
        resumed = json.load(f)
    assert (resumed["epochs_completed"], resumed["epochs_this_session"]) == (2, 1)
    assert resumed["config"]["unshare"] is True

    shared, control = study.read_csv(os.path.join(out, "layer_reuse_study.csv"))
    assert (shared.shared, control.shared) == (True, False)
    # The same network unrolled: the same depth and compute, a layer per call.
    assert control.unrolled_depth == shared.unrolled_depth == 19
    assert control.macs_per_example == shared.macs_per_example
    assert control.trainable_params == control.unrolled_params == shared.unrolled_params
    assert shared.trainable_params < shared.unrolled_params
    model = keras.saving.load_model(os.path.join(control_dir, "model.keras"))
    assert reuse_summary(model).unique_params == reuse_summary(model).unrolled_params
    assert "| 2 unshared | 0 | 19 |" in proc.stdout
    assert f"| 2 unshared | 1 | {100 * control.test_accuracy:.2f} ± 0.00 |" in proc.stdout
    epochs = study.read_csv(os.path.join(out, "layer_reuse_study_epochs.csv"), study.EpochRow)
    assert [(e.shared, e.epoch) for e in epochs] == [(True, 1), (True, 2), (False, 1), (False, 2)]
    for name in study.PLOT_NAMES.values():
        pixels = image.imread(os.path.join(out, name))
        assert pixels.ndim == 3 and pixels.std() > 0.01, name


@pytest.mark.parametrize(
    "reuse, change, error, message",
    [
        ((), {}, ValueError, "Received: reuse=()"),
        ((2, 2), {}, ValueError, "must not repeat a reuse count"),
        ((1, "4"), {}, ValueError, "Received: reuse=(1, '4')"),
        ((1,), {"model": "sharesnet164"}, training.ConfigError, "model='sharesnet164'"),
        ((1,), {"batch_size": 0}, training.ConfigError, "batch_size=0: must be an integer"),
        ((1,), {"epochs": 0}, training.ConfigError, "epochs=0: must be an integer >= 1"),
        ((1,), {"dataset": "fashion_mnistt"}, training.ConfigError, "Did you mean"),
        ((1,), {"seeds": ()}, ValueError, "Received: seeds=()"),
        ((1,), {"seeds": (0, 0)}, ValueError, "must not repeat a seed"),
        ((1,), {"precise_bn_batches": -2}, training.ConfigError, "precise_bn_batches=-2"),
        ((1,), {"unshared": (1,)}, ValueError, "`unshared` must hold integers >= 2"),
        ((1,), {"unshared": (10, 10)}, ValueError, "Received: unshared=(10, 10)"),
        ((1,), {"unshared": 10}, ValueError, "Received: unshared=10"),
        ((1,), {"unshare": True}, training.ConfigError, "unshare=True: the study sets it"),
    ],
)
def test_bad_study_arguments_fail_before_writing(tmp_path, reuse, change, error, message):
    out = tmp_path / "never"
    seeds = change.pop("seeds", None)
    unshared = change.pop("unshared", ())
    config = dataclasses.replace(TINY, **change)
    with pytest.raises(error) as raised:
        study.run_study(reuse, str(out), config, seeds=seeds, unshared=unshared)
    assert message in str(raised.value)
    assert not out.exists()


def test_plots_and_csv_round_trip_of_given_rows(tmp_path):
    rows = [
        study.StudyRow(
            n, s, 8 * n + 3, 1000 * n, 3000 * n, 10 * n, 0.8 + n / 100 + s / 50, 0.5, 3, None, 1.5
        )
        for n in (4, 1, 2)
        for s in (0, 1)
    ] + [
        study.StudyRow(4, s, 35, 12000, 12000, 40, 0.83 + s / 50, 0.5, 3, None, 1.5, shared=False)
        for s in (0, 1)
    ]
    epoch_rows = [
        study.EpochRow(n, s, e, 0.5 + e / 10 + s / 50, 1.0, 0.5, 1.0)
        for n in (4, 1, 2)
        for s in (0, 1)
        for e in (1, 2, 3)
    ]
    paths = study.plot(rows, str(tmp_path), title="synthetic", epoch_rows=epoch_rows)
    assert sorted(paths) == ["accuracy", "depth", "epochs", "overview", "params"]
    summary = study.format_summary(rows)
    assert "| 1 | 2 | 82.00 ± 1.41 | 1,000 |" in summary  # mean ± sample std over the seeds
    assert "| 4 unshared | 2 | 84.00 ± 1.41 | 12,000 |" in summary
    # Without per-epoch rows there is no epoch plot.
    (tmp_path / "plain").mkdir()
    assert "epochs" not in study.plot(rows, str(tmp_path / "plain"), title="x")
    assert all(os.path.getsize(p) > 10_000 for p in paths.values())
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(study_results.csv_text(rows))
    assert study.read_csv(str(csv_path)) == rows
    csv_path.write_text(study_results.csv_text(epoch_rows, study.EPOCH_COLUMNS))
    assert study.read_csv(str(csv_path), study.EpochRow) == epoch_rows
    with pytest.raises(ValueError, match="at least one study row"):
        study.plot([], str(tmp_path))


def test_the_control_of_a_looped_lrunet_is_unrolled_then_unshared():
    # A looped stage is one layer called once: unsharing it alone would
    # leave the shared network (the default layout under JAX and on GPUs).
    info = builders.dataset_info(TINY)
    looped = dataclasses.replace(TINY, model_args={"layer_reuse": 2, "reuse_loop": True})
    control = reuse_summary(builders.build_model(dataclasses.replace(looped, unshare=True), info))
    shared = reuse_summary(builders.build_model(looped, info))
    assert shared.unique_params < shared.unrolled_params
    assert control.unique_params == control.unrolled_params == shared.unrolled_params


def _rows(arm, accuracies):
    return [
        study.StudyRow(arm.layer_reuse, s, 10, 1, 1, 1, a / 100, 0.5, 1, None, 1.0, arm.shared)
        for s, a in enumerate(accuracies)
    ]


def test_difference_is_welchs_interval():
    # Hand-computed: means 2 and 5, variances 1 each over 3 seeds, so the
    # standard error is sqrt(2/3), Welch's degrees of freedom are 4 and
    # t(0.975, 4) = 2.776445: -3 +- 2.26694.
    a, b = study.Arm(1), study.Arm(10)
    rows = _rows(a, [1, 2, 3]) + _rows(b, [4, 5, 6])
    d = study.difference(rows, a, b)
    assert d.mean == pytest.approx(-3)
    assert d.dof == pytest.approx(4)
    assert (d.low, d.high) == pytest.approx((-5.26694, -0.73306), abs=1e-4)
    # Unequal variances: Welch, not the pooled interval.
    rows = _rows(a, [1, 2, 3]) + _rows(b, [0, 5, 10, 15])
    d = study.difference(rows, a, b)
    var_a, var_b = 1 / 3, 125 / 12
    assert d.dof == pytest.approx((var_a + var_b) ** 2 / (var_a**2 / 2 + var_b**2 / 3))


def test_study_differences_ask_the_studys_two_questions():
    one, ten, control = study.Arm(1), study.Arm(10), study.Arm(10, shared=False)
    rows = _rows(one, [89.3, 89.4, 88.9]) + _rows(ten, [90.1, 90.5, 90.3])
    rows += _rows(control, [91.0, 91.4, 91.2])
    found = study.study_differences(rows)
    assert [(d.a, d.b) for d in found] == [(ten, one), (ten, control)]
    table = study.format_differences(rows)
    assert "| N=10 minus N=1 | +1.10 |" in table and "| N=10 higher |" in table
    assert "| N=10 minus N=10 unshared | -0.90 |" in table
    assert "| N=10 unshared higher |" in table
    # One seed per arm: no interval, no table.
    assert study.format_differences(_rows(one, [89.0]) + _rows(ten, [90.0])) == ""


def test_difference_refuses_what_has_no_interval():
    a, b = study.Arm(1), study.Arm(10)
    rows = _rows(a, [1, 2]) + _rows(b, [4])
    with pytest.raises(ValueError, match="Arm N=10 has 1 run"):
        study.difference(rows, a, b)
    with pytest.raises(ValueError, match="`confidence` must be in \\(0, 1\\), got 95"):
        study.difference(rows, a, a, confidence=95)


def test_difference_without_spread_has_no_interval():
    a, b = study.Arm(1), study.Arm(10)
    rows = _rows(a, [80.0, 80.0]) + _rows(b, [81.0, 81.0])
    d = study.difference(rows, a, b)
    assert d.mean == pytest.approx(-1.0) and d.low != d.low and d.high != d.high
    assert "no spread between seeds: no interval" in study.format_differences(rows)


def test_the_study_page_and_readme_state_the_committed_full_study():
    # The full study's answer is written out by hand in the docs: every table
    # and figure there must be what the committed CSV gives.
    reports = ROOT / "docs" / "reports"
    rows = study_results.read_csv(str(reports / "layer_reuse_study_full.csv"))
    assert len(rows) == 9 and {r.epochs for r in rows} == {8}
    page = (reports / "study.md").read_text()
    assert study_results.format_table(rows) in page
    assert study_results.format_summary(rows) in page
    assert study_results.format_differences(rows) in page
    readme = " ".join((ROOT / "README.md").read_text().split())
    means = {
        arm: study_results.mean_std([100 * r.test_accuracy for r in group])[0]
        for arm, group in study_results.group_by_arm(rows).items()
    }
    gain, control = study_results.study_differences(rows)
    assert f"LruNet-10 beats LruNet-1 by {gain.mean:.2f} points" in readme
    assert f"({means[gain.a]:.2f}% against {means[gain.b]:.2f}%" in readme
    assert f"[{gain.low:+.2f}, {gain.high:+.2f}]" in readme
    assert f"gains another {-control.mean:.2f} points ({means[control.b]:.2f}%" in readme
    assert f"[{-control.high:+.2f}, {-control.low:+.2f}]" in readme
