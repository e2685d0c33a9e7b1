"""benchmarks.faithful runs end to end at a tiny size: files, the verdict line, resume, bad flags;
and its equivalence verdict on constructed accuracies.

The tiny run never asserts an accuracy or a pass: one epoch on 256 images says nothing
about faithfulness, only that both sides train, evaluate and report. The verdict (two
one-sided Welch t-tests at a 0.5-point margin) is checked on inputs whose answer is
known.
"""

import csv
import json
import os
import re
import subprocess
import sys

import pytest
from locations import ROOT as ROOT_PATH

from benchmarks import faithful

ROOT = str(ROOT_PATH)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "tensorflow_datasets")


def _run(*args, timeout=900):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("TFDS_DATA_DIR", SHARED)
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.faithful", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_tiny_faithfulness_run_writes_csv_plot_and_verdict(tmp_path):
    out = tmp_path / "faithful"
    flags = [
        "--layer_reuse=1",
        "--seeds=0",
        "--epochs=1",
        "--max_train_examples=256",
        # The full test split is the real runs' (both frameworks evaluate it).
        "--max_eval_examples=256",
        "--batch_size=64",
        f"--output_dir={out}",
    ]
    done = _run(*flags)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "faithful.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["framework"], r["layer_reuse"], r["seed"], r["epoch"]) for r in rows] == [
        ("keras", "1", "0", "1"),
        ("pytorch", "1", "0", "1"),
    ]
    assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 for r in rows)
    assert (out / "faithful.png").stat().st_size > 10_000
    assert (out / "pytorch_reuse1_seed0" / "checkpoint.pt").is_file()
    assert (out / "keras_reuse1_seed0" / "backup" / "latest").is_file()
    verdict = json.loads((out / "faithful_verdict.json").read_text())["verdicts"]
    # One seed: no spread, so equivalence cannot be shown.
    assert len(verdict) == 1 and verdict[0]["margin_points"] == 0.5
    assert verdict[0]["ci90_low_points"] is None and not verdict[0]["passed"]
    line = re.search(r"^LruNet-1: Keras .*fewer than 2 seeds.*: FAIL$", done.stdout, re.M)
    assert line, done.stdout[-2000:]

    # A finished run resumes without training again, to the same table.
    before = (out / "faithful.csv").read_text()
    again = _run(*flags, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "finished earlier" in again.stdout and "faithful pytorch" not in again.stdout
    assert (out / "faithful.csv").read_text() == before

    # Without --resume the directory is refused, naming the flag.
    refused = _run(*flags)
    assert refused.returncode == 2
    assert "--output_dir=" in refused.stderr and "pass --resume" in refused.stderr


def test_bad_flag_is_a_one_line_error_before_writing(tmp_path):
    out = tmp_path / "never"
    done = _run("--layer_reuse=0,2", f"--output_dir={out}")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert (
        last == "benchmarks.faithful: error: --layer_reuse=0,2: expected integers >= 1, e.g. 1,10"
    )
    assert not out.exists()


# ------------------------------------------------------------- the verdict --


def _rows(keras, pytorch, epochs=6, n=1):
    return [
        dict(framework=framework, layer_reuse=n, seed=seed, epoch=epochs, test_accuracy=a / 100)
        for framework, accuracies in (("keras", keras), ("pytorch", pytorch))
        for seed, a in enumerate(accuracies)
    ]


def _spread(mean, offsets):
    return [mean + o for o in offsets]


SMALL = (-0.1, 0.0, 0.1, -0.05, 0.05)  # sd 0.079 points
LARGE = (-1.0, 0.0, 1.0, -0.5, 0.5)  # sd 0.79 points, the same mean


def test_verdict_passes_a_small_gap_measured_precisely():
    (v,) = faithful.verdict(_rows(_spread(76.1, SMALL), _spread(76.0, SMALL)), 6)
    assert v["difference_points"] == pytest.approx(0.1)
    assert v["passed"] and v["tost_p_value"] < 0.05
    assert -0.5 < v["ci90_low_points"] < 0.1 < v["ci90_high_points"] < 0.5


def test_verdict_fails_a_gap_beyond_the_margin_however_precise():
    (v,) = faithful.verdict(_rows(_spread(76.7, SMALL), _spread(76.0, SMALL)), 6)
    assert not v["passed"] and v["ci90_low_points"] > 0.5
    # Inside the margin but not shown inside it at this precision.
    (v,) = faithful.verdict(_rows(_spread(76.45, SMALL), _spread(76.0, SMALL)), 6)
    assert not v["passed"] and v["ci90_high_points"] > 0.5
    # Three seeds a side (df 4): Student's quantile 2.13, where a normal
    # approximation (1.64) would put the interval inside the margin.
    three = (-0.1, 0.0, 0.1)
    (v,) = faithful.verdict(_rows(_spread(76.35, three), _spread(76.0, three)), 6)
    assert v["degrees_of_freedom"] == pytest.approx(4.0)
    assert 0.35 + 1.645 * v["standard_error_points"] < 0.5 < v["ci90_high_points"]
    assert not v["passed"]


def test_a_noisier_run_with_the_same_gap_does_not_pass_more_easily():
    quiet, noisy, noisier = (
        faithful.verdict(_rows(_spread(76.1, k), _spread(76.0, k)), 6)[0]
        for k in (SMALL, LARGE, tuple(3 * o for o in LARGE))
    )
    assert quiet["difference_points"] == pytest.approx(noisy["difference_points"])
    assert quiet["passed"] and not noisy["passed"] and not noisier["passed"]
    assert quiet["tost_p_value"] < noisy["tost_p_value"] < noisier["tost_p_value"]
    # The old rule, |gap| <= max(0.5, 2 SE), passed a 1.5-point gap measured this noisily.
    noise = tuple(3 * o for o in LARGE)
    (v,) = faithful.verdict(_rows(_spread(77.5, noise), _spread(76.0, noise)), 6)
    assert abs(v["difference_points"]) <= max(0.5, 2 * v["standard_error_points"])
    assert not v["passed"]
    # Noise on one side only widens the interval too.
    (v,) = faithful.verdict(_rows(_spread(76.1, LARGE), _spread(76.0, SMALL)), 6)
    assert not v["passed"]


def test_verdict_needs_two_seeds_a_side_and_the_final_epoch():
    (v,) = faithful.verdict(_rows([76.0], [76.0]), 6)
    assert not v["passed"] and v["ci90_low_points"] is None
    (v,) = faithful.verdict(_rows([76.0, 76.0], [76.2, 76.2]), 6)  # no spread: the point
    assert v["passed"] and v["ci90_low_points"] == v["ci90_high_points"]
    with pytest.raises(ValueError, match="epoch 7"):
        faithful.verdict(_rows([76.0, 76.1], [76.0, 76.1]), 7)


def test_committed_verdict_is_the_rule_applied_to_the_committed_table():
    docs = ROOT_PATH / "docs" / "reports"
    committed = json.loads((docs / "faithful_verdict.json").read_text())
    epochs = committed["settings"]["epochs"]
    recomputed = faithful.verdict(faithful.read_csv(str(docs / "faithful.csv")), epochs)
    assert [v["passed"] for v in recomputed] == [v["passed"] for v in committed["verdicts"]]
    for ours, theirs in zip(recomputed, committed["verdicts"], strict=True):
        for key in ("difference_points", "ci90_low_points", "ci90_high_points", "tost_p_value"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-9), key


def test_verdict_from_restates_a_table_without_training(tmp_path):
    done = _run(
        "--verdict_from=docs/reports/faithful.csv", "--epochs=6", f"--output_dir={tmp_path}/x"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("LruNet-")]
    assert [line.split(":")[0] for line in lines] == ["LruNet-1", "LruNet-10"]
    assert all("90% CI [" in line for line in lines)
    assert not (tmp_path / "x").exists()
    missing = _run(f"--verdict_from={tmp_path}/none.csv")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        f"benchmarks.faithful: error: --verdict_from={tmp_path}/none.csv: no such file"
    )
