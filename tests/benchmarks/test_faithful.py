"""benchmarks.faithful runs end to end at a tiny size: files, the verdict line, resume, bad flags.

Never asserts an accuracy or a pass: one epoch on 256 images says nothing
about faithfulness, only that both sides train, evaluate and report.
"""

import csv
import json
import os
import re
import subprocess
import sys

from locations import ROOT as ROOT_PATH

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
    assert len(verdict) == 1 and verdict[0]["tolerance_points"] == 0.5  # one seed: no SE
    line = re.search(r"^LruNet-1: Keras .* \(max\(0.5, 2 SE\)\): (PASS|FAIL)$", done.stdout, re.M)
    assert line, done.stdout[-2000:]
    assert ("PASS" in line.group(0)) == verdict[0]["passed"]

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
