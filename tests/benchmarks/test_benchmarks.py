"""The benchmark suite runs end to end (--quick) and writes the documented JSON and table.

Never asserts a speed: only that every figure was measured (a positive
number, no recorded error) and lands where the README table reads it.
"""

import json
import os
import platform
import subprocess
import sys

import pytest
from locations import ROOT as ROOT_PATH

ROOT = str(ROOT_PATH)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "tensorflow_datasets")


def _run(*args, module="benchmarks.run", timeout=900):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFDS_DATA_DIR=SHARED)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _positive(value):
    return isinstance(value, (int, float)) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    done = _run("--quick", f"--output_dir={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "results.json") as file:
        payload = json.load(file)
    return payload, (out / "results.md").read_text(), done.stdout


def test_quick_run_measures_every_figure(quick_run):
    payload, _, _ = quick_run
    assert payload["schema_version"] == 1
    assert payload["mode"] == "quick"
    assert payload["complete"] is True
    assert payload["environment"]["cpu_count"] >= 1
    assert len(payload["load_before"]) == 3
    (entry,) = payload["results"]
    assert entry["model"] == "lrunet1"
    impls = entry["implementations"]
    assert set(impls) == {"keras", "keras_naive", "torch"}  # torch is a test dependency
    for name, values in impls.items():
        assert "errors" not in values, (name, values.get("errors"))
        for metric in ("params", "train_fp32", "predict", "latency_ms"):
            assert _positive(values[metric]), (name, metric, values[metric])
    keras, torch = impls["keras"], impls["torch"]
    for values in (keras, torch):
        for metric in ("fit_call_fp32", "build_s", "first_step_s"):
            assert _positive(values[metric]), (metric, values)
        # A whole call includes its first step and fit's set-up: never faster.
        assert values["fit_call_fp32"] <= values["train_fp32"] * 1.5
    assert isinstance(keras["per_call_overhead"], float) and keras["per_call_overhead"] > -1
    # The same network: PyTorch counts the same trainable parameters.
    assert keras["params"] == torch["params"] == impls["keras_naive"]["params"]
    assert _positive(keras["train_bf16"]) and _positive(torch["train_bf16"])
    assert _positive(keras["litert"]["ms"]) and keras["litert"]["size_bytes"] > 4 * 100_000
    for impl in ("keras", "torch"):
        memory = impls[impl]["memory"]
        assert "error" not in memory, memory
        assert memory["peak_rss_mb"] >= memory["rss_before_mb"] > 0
        # RSS split into anonymous and file-backed pages, read together with it.
        parts = memory["rss_anon_before_mb"] + memory["rss_file_before_mb"]
        assert memory["rss_file_before_mb"] > 0
        assert parts == pytest.approx(memory["rss_before_mb"], rel=0.05)
    assert keras["memory"]["activations_mb"] > 0
    ratios = payload["ratios"]["lrunet1"]
    assert ratios["train_keras_over_torch"] == pytest.approx(
        keras["train_fp32"] / torch["train_fp32"]
    )
    assert ratios["fit_call_keras_over_torch"] == pytest.approx(
        keras["fit_call_fp32"] / torch["fit_call_fp32"]
    )
    steady_step_s = entry["batch_size"] / keras["train_fp32"]
    assert ratios["first_step_in_steps"] == pytest.approx(keras["first_step_s"] / steady_step_s)
    assert ratios["per_call_overhead"] == keras["per_call_overhead"]
    (pipeline,) = payload["pipeline"]
    assert pipeline["dataset"] == "fashion_mnist" and _positive(pipeline["images_per_s"])
    assert pipeline["over_training"] == pytest.approx(
        pipeline["images_per_s"] / keras["train_fp32"]
    )


def test_quick_run_writes_the_markdown_table(quick_run):
    payload, table, stdout = quick_run
    assert table in stdout
    assert "| model | implementation | params | train fp32 img/s | whole fit calls img/s" in table
    assert "first step in steady steps (keras, PyTorch) | per-call overhead" in table
    for row in ("| LruNet-1 | keras_reuse |", "| LruNet-1 | PyTorch |", "naive Keras"):
        assert row in table
    assert payload["environment"]["cpu"] in table


BAD_FLAGS = [
    (["--models=lrunet99"], "--models must name models from lrunet1"),
    (["--quick", "--steps=0"], "--steps must be >= 1. Received: 0"),
    (["--quick", "--batch_size=-4"], "--batch_size must be >= 1. Received: -4"),
    (["--quick", "--overhead_calls=-1"], "--overhead_calls must be >= 0. Received: -1"),
    (["--quick", "--overhead_steps=0"], "--overhead_steps must be >= 1. Received: 0"),
]

# Every case through `benchmarks.run.main` in one process (a start costs
# seconds of TensorFlow import): absl parses the flags as `app.run` would,
# and `main` must raise the usage error before it writes anything.
_BAD_FLAGS_RUNNER = """
import json, sys
from absl import app, flags
from benchmarks import run
results = []
for args in json.loads(sys.argv[1]):
    flags.FLAGS.unparse_flags()
    try:
        run.main(flags.FLAGS(["run", *args]))
        results.append(None)
    except (app.UsageError, flags.Error) as error:
        results.append(str(error))
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def bad_flag_errors(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad_flags")
    cases = [[*args, f"--output_dir={out}"] for args, _ in BAD_FLAGS]
    done = subprocess.run(
        [sys.executable, "-c", _BAD_FLAGS_RUNNER, json.dumps(cases)],
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFDS_DATA_DIR=SHARED),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), out


@pytest.mark.parametrize("index", range(len(BAD_FLAGS)), ids=[a[-1] for a, _ in BAD_FLAGS])
def test_bad_flags_are_usage_errors(bad_flag_errors, index):
    errors, out = bad_flag_errors
    assert errors[index] is not None and BAD_FLAGS[index][1] in errors[index]
    assert not os.listdir(out)  # nothing written


def test_pipeline_benchmark_times_two_epochs_and_training(tmp_path):
    done = _run(
        "--datasets=fashion_mnist",
        "--split=train[:2000]",
        "--layer_reuse=1",
        "--train_warmup_steps=1",
        "--train_steps=2",
        f"--output={tmp_path / 'pipeline.json'}",
        module="benchmarks.pipeline",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads((tmp_path / "pipeline.json").read_text())["results"]
    assert result["dataset"] == "fashion_mnist"
    # Every image of the split, batch 128 with the remainder dropped.
    assert result["pipeline"]["images_per_epoch"] == 2000 // 128 * 128
    assert result["training"] == {
        "model": "LruNet-1",
        "input_shape": [28, 28, 1],
        "timed_steps": 2,
        "images_per_s": result["training"]["images_per_s"],
    }
    rate = result["training"]["images_per_s"]
    assert _positive(rate) and _positive(result["pipeline"]["first_epoch_images_per_s"])
    assert result["ratio_cached"] == pytest.approx(
        result["pipeline"]["cached_epoch_images_per_s"] / rate
    )
    assert "fashion_mnist" in done.stdout and os.listdir(tmp_path) == ["pipeline.json"]


def test_per_call_overhead_is_the_median_of_alternating_rounds():
    from benchmarks import measure

    # Seconds of each fit call in order; round 1's single call is an outlier.
    seconds = iter([1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.05, 1.05, 2.0])
    steps_asked = []
    trainer = object.__new__(measure.KerasTrainer)

    def fit_call(steps):
        steps_asked.append(steps)
        return next(seconds)

    trainer.fit_call = fit_call
    overhead = trainer.per_call_overhead(calls=2, steps=2, rounds=3)
    # Round ratios 0.0, 1.0 and 0.05: the median, not the first round or the mean.
    assert overhead == pytest.approx(0.05)
    # Two calls of 2 steps against one of 4, the order alternating by round.
    assert steps_asked == [2, 2, 4, 4, 2, 2, 2, 2, 4]


def test_import_order_runs_each_first_import_in_its_own_process(tmp_path):
    done = _run(
        "--models=lrunet1",
        "--batch_size=4",
        "--rounds=1",
        "--calls=1",
        "--steps=1",
        f"--output_dir={tmp_path}",
        module="benchmarks.import_order",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads((tmp_path / "import_order.json").read_text())["models"]
    keras_first, package_first, torch = (
        row["medians"][k] for k in ("keras", "keras_reuse", "torch")
    )
    # Each child started as asked: the package's defaults apply only when it
    # comes before TensorFlow; with Keras first the package says so, once.
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert package_first["onednn"] == [True] and package_first["warned"] == [False]
        if keras_first["onednn"] == [False]:  # TensorFlow's own default on this CPU
            assert keras_first["warned"] == [True]
    assert torch["onednn"] == [None]
    for m in (keras_first, package_first, torch):
        assert _positive(m["steady"]) and _positive(m["first_step_s"])
    table = (tmp_path / "import_order.md").read_text()
    assert "| LruNet-1 | `import keras` first |" in table
    assert "| LruNet-1 | `import keras_reuse` first |" in table
    assert f"{package_first['steady'] / torch['steady']:.2f}" in table


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models=lrunet99"], "--models must name models from lrunet1,"),
        (["--rounds=0"], "--rounds must be >= 1. Received: 0"),
        (["--steps=-2"], "--steps must be >= 1. Received: -2"),
    ],
)
def test_import_order_refuses_bad_flags(tmp_path, args, message):
    done = _run(*args, f"--output_dir={tmp_path}", module="benchmarks.import_order", timeout=300)
    assert done.returncode != 0
    assert message in done.stderr and "Received" in done.stderr
    assert not os.listdir(tmp_path)


def test_import_order_refuses_an_output_dir_that_is_a_file(tmp_path):
    path = tmp_path / "taken"
    path.write_text("")
    done = _run("--models=lrunet1", f"--output_dir={path}", module="benchmarks.import_order")
    assert done.returncode != 0
    assert f"--output_dir must be a directory. Received: {path}" in done.stderr
    assert path.read_text() == ""
