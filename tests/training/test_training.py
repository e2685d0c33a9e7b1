"""Training: the CLI end to end on real Fashion-MNIST, strategies, mixed precision
and bad flags. Kills and resumes: tests/training/test_reliability.py.

Two replicas (MirroredStrategy over two logical CPUs, or two MultiWorkerMirroredStrategy
processes) train to the one-device weights on the same global batch, and
`--batch_size` is that global batch."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import processes
import pytest
from locations import ROOT

from keras_reuse import data, training
from keras_reuse.applications import LruNet

DISTRIBUTION_RUNNER = ROOT / "tests" / "support" / "distribution_runner.py"

# Small, fast runs on a real slice of the data (TFDS_DATA_DIR, set by .ci/run).
QUICK = dict(
    model="lrunet",
    dataset="fashion_mnist",
    layer_reuse=1,
    epochs=2,
    batch_size=32,
    steps_per_epoch=4,
    max_train_examples=256,
    max_eval_examples=128,
    verbose=0,
)
QUICK_FLAGS = [
    "--model=lrunet",
    "--dataset=fashion_mnist",
    "--layer_reuse=1",
    "--batch_size=32",
    "--max_train_examples=256",
    "--max_eval_examples=128",
]


def cli(*args, env=None, **kwargs):
    """Runs `python -m keras_reuse train` (oneDNN as the suite sets it, tests/conftest.py)."""
    return processes.run(
        [sys.executable, "-m", "keras_reuse", "train", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **{"timeout": 1800, **kwargs},
    )


def read_csv_epochs(path):
    with open(path) as f:
        return [int(line.split(",")[0]) for line in f.read().splitlines()[1:]]


def test_train_writes_model_results_logs_and_metrics(tmp_path):
    out = str(tmp_path / "run")
    results = training.train(training.TrainConfig.from_values(dict(QUICK, output_dir=out)))

    for name in ("model.keras", "results.json", "metrics.csv", "config.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert os.listdir(os.path.join(out, "logs"))
    with open(os.path.join(out, "results.json")) as f:
        saved = json.load(f)
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    # LruNet-1's 131,402 with a 1-channel stem (3*3*2*64 fewer weights).
    assert saved["trainable_params"] == 131_402 - 1152
    assert saved["unrolled_params"] == saved["trainable_params"]  # reuse 1: nothing shared
    assert saved["epochs_completed"] == 2 and saved["images_per_sec"] > 0
    assert saved["mixed_precision"] == "float32" and saved["num_replicas"] == 1
    assert read_csv_epochs(os.path.join(out, "metrics.csv")) == [0, 1]

    # The saved model gives the reported accuracy on the same test slice.
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    # The batch size of the run's own evaluation: the same kernels, the same sums.
    test = data.load("fashion_mnist", split="test[:128]", batch_size=32)
    model.compile(metrics=["sparse_categorical_accuracy"], loss=None)
    labels = np.concatenate([y.numpy() for _, y in test])
    logits = model.predict(test, verbose=0)
    assert (logits.argmax(1) == labels).mean() == pytest.approx(saved["test_accuracy"], abs=1e-6)


def test_input_channels_and_classes_come_from_the_dataset(tmp_path):
    results = training.train(
        training.TrainConfig.from_values({**QUICK, "output_dir": str(tmp_path / "r"), "epochs": 1})
    )
    model = keras.models.load_model(results["model_path"])
    assert tuple(model.input_shape) == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    # A fresh process loads the compiled model (optimizer included) after
    # `import keras_reuse` alone.
    code = (
        "import keras, keras_reuse; "
        f"m = keras.models.load_model({results['model_path']!r}); "
        "print(type(m.optimizer).__name__)"
    )
    loaded = processes.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=1800
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().endswith("CoupledSGD")


def test_the_step_schedule_divides_by_ten_at_two_thirds_and_five_sixths():
    config = training.TrainConfig(epochs=300)
    schedule = training.learning_rate_schedule(config, steps_per_epoch=10)
    lr = lambda step: float(schedule(step))  # noqa: E731
    assert lr(0) == pytest.approx(0.1) and lr(1999) == pytest.approx(0.1)
    assert lr(2000) == pytest.approx(0.01) and lr(2499) == pytest.approx(0.01)
    assert lr(2500) == pytest.approx(0.001) and lr(2999) == pytest.approx(0.001)


def test_mixed_bfloat16_trains_with_a_float32_output(tmp_path):
    config = training.TrainConfig.from_values(
        dict(QUICK, output_dir=str(tmp_path / "bf16"), mixed_precision="mixed_bfloat16")
    )
    results = training.train(config)
    assert results["mixed_precision"] == "mixed_bfloat16"
    assert np.isfinite(results["test_loss"])
    model = keras.models.load_model(results["model_path"])
    assert model.get_layer("stage1_pw").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("stage1_pw").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    # The global policy is restored: the next model is float32 again.
    assert keras.config.dtype_policy().name == "float32"


def test_resume_with_another_network_is_refused(tmp_path):
    out = str(tmp_path / "run")
    training.train(training.TrainConfig.from_values({**QUICK, "output_dir": out, "epochs": 1}))
    before = sorted(os.listdir(out))
    with open(os.path.join(out, "config.json")) as f:
        config_before = f.read()
    changed = training.TrainConfig.from_values(
        {**QUICK, "output_dir": out, "resume": True, "layer_reuse": 2}
    )
    with pytest.raises(training.ConfigError, match=r"layer_reuse=2: differs .*layer_reuse=1"):
        training.train(changed)
    assert sorted(os.listdir(out)) == before
    with open(os.path.join(out, "config.json")) as f:
        assert f.read() == config_before


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    out = str(tmp_path / "mirrored")
    run = cli(
        *QUICK_FLAGS,
        "--epochs=1",
        "--max_train_examples=96",
        "--strategy=mirrored",
        "--cpu_devices=2",
        f"--output_dir={out}",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["num_replicas"] == 2
    assert np.isfinite(results["test_loss"])
    # --batch_size is the global batch: 96 images at 32 are 3 steps for both
    # replicas together (16 each), not 96 / (2 x 32).
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    assert int(model.optimizer.iterations.numpy()) == 3
    assert results["epochs_completed"] == 1


def _distribution_run(strategy, directory, env=None, **kwargs):
    """tests/support/distribution_runner.py under `strategy`, writing into `directory`."""
    return processes.run(
        [sys.executable, str(DISTRIBUTION_RUNNER), strategy, str(directory)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        **{"timeout": 300, **kwargs},
    )


def _json_line(done):
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def _multi_worker_env(cluster, index):
    task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CONFIG": json.dumps(task)}


def test_two_replicas_train_as_one_device_on_the_global_batch(tmp_path):
    # tests/support/distribution_runner.py: the same start, data and global batch
    # (16) under the default strategy, MirroredStrategy over two logical CPUs and
    # two MultiWorkerMirroredStrategy processes. Each global batch is a half-batch
    # twice, so each replica's BatchNorm statistics are the global batch's and
    # the averaged replica gradients are the one-device gradient: the weights
    # agree up to float32 rounding (the all-reduce sums in another order).
    done = _distribution_run("default,mirrored", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    default, mirrored = (json.loads(line) for line in done.stdout.splitlines() if line[:1] == "{")
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    workers = []
    for index in range(2):
        workers.append(
            subprocess.Popen(
                [sys.executable, str(DISTRIBUTION_RUNNER), "multi_worker", str(tmp_path)],
                env=_multi_worker_env(cluster, index),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=300) for p in workers]
    finally:
        for p in workers:
            processes.kill_tree(p)
    multi = [
        _json_line(subprocess.CompletedProcess(p.args, p.returncode, out, err))
        for p, (out, err) in zip(workers, outputs, strict=True)
    ]
    assert default["num_replicas"] == 1 and default["iterations"] == 3
    for run in (mirrored, *multi):
        assert run["num_replicas"] == 2 and run["iterations"] == 3, run
    expected = dict(np.load(tmp_path / "default-0.npz"))
    for name in ("mirrored-0", "multi_worker-0", "multi_worker-1"):
        actual = dict(np.load(tmp_path / f"{name}.npz"))
        assert set(actual) == set(expected)
        # Relative to each tensor's largest value, floored at 1% of the largest
        # weight: the depthwise BatchNorms' betas have a zero gradient in exact
        # arithmetic (the pointwise BatchNorm after them removes a shift), so they
        # hold rounding noise of order 1e-9 on either side. Measured at most
        # 1.8e-6 (this AVX2 CPU, oneDNN off, under load); bound 1e-5.
        floor = 1e-2 * max(np.abs(value).max() for value in expected.values())
        errors = {
            path: float(np.abs(actual[path] - value).max() / max(np.abs(value).max(), floor))
            for path, value in expected.items()
        }
        assert max(errors.values()) <= 1e-5, (name, max(errors, key=errors.get))
    np.testing.assert_allclose(mirrored["loss"], default["loss"], rtol=1e-5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_strategy_two_processes_agree_on_the_weights(tmp_path):
    out = str(tmp_path / "multi")
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    flags = [
        *QUICK_FLAGS,
        "--epochs=1",
        "--max_train_examples=96",
        "--strategy=multi_worker",
        f"--output_dir={out}",
    ]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "keras_reuse", "train", *flags],
                env={**os.environ, "TF_CONFIG": tf_config},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:  # a timeout (or a failure) leaves no worker behind
        for p in procs:
            processes.kill_tree(p)
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f)["num_replicas"] == 2
    chief = keras.models.load_model(os.path.join(out, "model.keras"))
    worker = keras.models.load_model(os.path.join(out, ".workers", "1", "model.keras"))
    # --batch_size is the global batch: 96 images at 32 are 3 steps of 16 per worker.
    assert int(chief.optimizer.iterations.numpy()) == 3
    # Gradients are all-reduced, so the trainable weights are identical.
    # (BatchNorm moving statistics are each worker's own, as without SyncBN.)
    for a, b in zip(chief.trainable_weights, worker.trainable_weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Training moved the weights from the initialisation, which the same seed
    # builds here: every kernel changed, yet is still close to where it began
    # after three steps (a mismatched initialisation would be uncorrelated).
    keras.utils.set_random_seed(0)
    initial = LruNet(
        num_classes=10, input_shape=(28, 28, 1), layer_reuse=1, classifier_activation=None
    )
    for name in ("stage1_pw", "stage4_pw", "head_logits_conv"):
        before = initial.get_layer(name).kernel.numpy().ravel()
        after = chief.get_layer(name).kernel.numpy().ravel()
        assert not np.array_equal(before, after), name
        assert np.corrcoef(before, after)[0, 1] > 0.9, name


# ------------------------------------------------------------- Bad input --

BAD_CONFIGS = [
    (dict(model="resnet9"), r"model='resnet9': unknown model; one of lrunet"),
    (dict(dataset="no_such_dataset"), r"dataset='no_such_dataset'"),
    (dict(layer_reuse=0), r"layer_reuse=0: must be an integer >= 1"),
    (dict(layer_reuse="2"), r"layer_reuse='2': must be an integer"),
    (dict(layer_reuse=1, model_args={"layers": 3}), r"layers=3: does not apply to --model=lrunet"),
    (dict(epochs=0), r"epochs=0: must be an integer >= 1"),
    (dict(batch_size=0), r"batch_size=0"),
    (dict(learning_rate=0.0), r"learning_rate=0.0"),
    (dict(schedule="linear"), r"schedule='linear'"),
    (dict(mixed_precision="fp8"), r"mixed_precision='fp8'"),
    (dict(strategy="tpu"), r"strategy='tpu'"),
    (dict(model="sharesnet164", layer_reuse=2), r"layer_reuse=2: does not apply"),
    (dict(model="sharesnet18", layer_reuse=None), r"model='sharesnet18': .*at least 32x32"),
]


@pytest.mark.parametrize("change, message", BAD_CONFIGS)
def test_bad_config_fails_before_writing(tmp_path, change, message):
    out = tmp_path / "never"
    config = training.TrainConfig.from_values({**QUICK, "output_dir": str(out), **change})
    with pytest.raises(training.ConfigError, match=message):
        training.train(config)
    assert not out.exists()


def test_output_dir_that_is_a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("keep me")
    config = training.TrainConfig.from_values(dict(QUICK, output_dir=str(path)))
    with pytest.raises(training.ConfigError, match=r"output_dir=.*a_file': exists and is not"):
        training.train(config)
    assert path.read_text() == "keep me"
