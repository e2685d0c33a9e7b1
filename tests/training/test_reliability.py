"""Crash safety, measured: kills at the dangerous instants, a kill loop, full disks, hostile files.

The runs are `keras-reuse train` command lines in forked children of one
process that imported TensorFlow once (tests/support/fork_server.py), killed with
SIGKILL by the package's own fault points (`KERAS_REUSE_FAULT`, see
`keras_reuse.utils.atomic`): a kill lands at exactly the instant named, however
busy the machine is.
"""

import errno
import json
import os
import pickle
import random
import resource
import select
import signal
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest
import torch
from absl import flags
from locations import ROOT as ROOT_PATH

from keras_reuse import cli, export, training
from keras_reuse.applications.lrunet import checkpoint as pretrained
from keras_reuse.data import offline
from keras_reuse.training.callbacks import AtomicBackupAndRestore, latest_backup_epoch
from keras_reuse.training.optimizers import compile_for_training
from keras_reuse.utils import atomic

ROOT = str(ROOT_PATH)
EPOCHS = 3
STEPS = 2
TINY = [
    "--model=lrunet",
    "--dataset=fashion_mnist",
    "--layer_reuse=1",
    "--batch_size=16",
    "--max_train_examples=64",
    "--max_eval_examples=32",
    f"--steps_per_epoch={STEPS}",
    f"--epochs={EPOCHS}",
]
KILLED = -9
# A run takes seconds; a child that hangs fails the test instead of the suite.
RUN_TIMEOUT_S = 300


class Runs:
    """`keras-reuse train` runs as children of tests/support/fork_server.py."""

    def __init__(self, logs):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
        }
        env.pop(atomic.FAULT_ENV, None)
        self.logs = logs
        self.count = 0
        self.server = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "support", "fork_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its children die with it on a timeout
        )

    def train(self, out, *flags, fault=None):
        """Runs `keras-reuse train TINY --output_dir=out FLAGS`; returns (exit code, log)."""
        self.count += 1
        log = os.path.join(self.logs, f"run-{self.count}.log")
        request = {
            "argv": ["keras-reuse", "train", *TINY, f"--output_dir={out}", *flags],
            "env": {atomic.FAULT_ENV: fault} if fault else {},
            "log": log,
        }
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        ready, _, _ = select.select([self.server.stdout], [], [], RUN_TIMEOUT_S)
        if not ready:
            os.killpg(self.server.pid, signal.SIGKILL)
            pytest.fail(f"no answer in {RUN_TIMEOUT_S} s from the run logged in {log}")
        reply = self.server.stdout.readline()
        assert reply, "the fork server died"
        with open(log) as f:
            return json.loads(reply)["returncode"], f.read()

    def close(self):
        if self.server.poll() is None:
            self.server.stdin.close()
            self.server.wait(timeout=60)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    server = Runs(tmp_path_factory.mktemp("logs"))
    yield server
    server.close()


def csv_epochs(out):
    with open(os.path.join(out, "metrics.csv")) as f:
        return [int(line.split(",")[0]) for line in f.read().splitlines()[1:]]


def leftovers(out):
    return [
        os.path.join(root, name)
        for root, dirs, files in os.walk(out)
        for name in dirs + files
        if name.startswith(atomic.TEMP_PREFIX)
    ]


def assert_nothing_trusted_is_partial(out):
    """Every file a later run (or a user) would read is complete, or absent."""
    results = os.path.join(out, "results.json")
    if os.path.exists(results):
        with open(results) as f:
            assert json.load(f)["epochs_completed"] == EPOCHS
    model = os.path.join(out, "model.keras")
    if os.path.exists(model):
        with zipfile.ZipFile(model) as archive:
            assert archive.testzip() is None  # every member's CRC checks
    config = os.path.join(out, "config.json")
    if os.path.exists(config):
        with open(config) as f:
            assert json.load(f)["epochs"] == EPOCHS
    backup = os.path.join(out, "backup")
    epoch = latest_backup_epoch(backup)  # reads the pointer and the metadata
    if epoch:
        with open(os.path.join(backup, "latest")) as f:
            name = f.read()
        assert name == f"epoch-{epoch:05d}"
        with h5py.File(os.path.join(backup, name, "model.weights.h5"), "r") as weights:
            arrays = []
            weights.visititems(
                lambda _, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None
            )
        assert arrays and all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")
    return epoch


def final_weights(out):
    return keras.models.load_model(os.path.join(out, "model.keras")).get_weights()


# ------------------------------------------------- kills at the instants ---


def _kill(runs, out, fault):
    code, log = runs.train(out, *(["--resume"] if os.path.exists(out) else []), fault=fault)
    assert code == KILLED, f"{fault}: {log[-2000:]}"
    return assert_nothing_trusted_is_partial(out)


def test_kills_at_the_dangerous_instants_leave_nothing_partial_and_resume_finishes(runs, tmp_path):
    """One run killed at each instant in turn, resumed after each kill."""
    out = str(tmp_path / "run")
    backup = os.path.join(out, "backup")
    model = os.path.join(out, "model.keras")

    # Epoch 2's weights half written: epoch 1's backup is the latest.
    assert _kill(runs, out, "backup:mid_weights@2") == 1
    assert leftovers(backup)
    # Without --resume the killed run's directory is refused, and left alone.
    before = sorted(os.listdir(out))
    config = training.TrainConfig(
        output_dir=out, model="lrunet", model_args={"layer_reuse": 1}, epochs=EPOCHS, verbose=0
    )
    with pytest.raises(training.ConfigError, match=r"output_dir=.*pass --resume"):
        training.train(config)
    assert sorted(os.listdir(out)) == before
    # The resumed run redoes epoch 2; its backup is complete, not yet published.
    assert _kill(runs, out, "backup:after_weights@1") == 1
    assert os.path.isdir(os.path.join(backup, "epoch-00002"))
    # Again, and killed while the pointer to it is half written.
    assert _kill(runs, out, "backup_pointer:mid_write@1") == 1
    assert leftovers(backup)
    # Epochs 2 and 3, then killed while model.keras is half written.
    assert _kill(runs, out, "model_keras:mid_write") == EPOCHS
    assert not os.path.exists(model) and leftovers(out)
    # Nothing left to train; model.keras written whole, results.json half.
    assert _kill(runs, out, "results_json:mid_write") == EPOCHS
    assert not os.path.exists(os.path.join(out, "results.json")) and leftovers(out)
    with open(model, "rb") as f:
        previous = f.read()
    # A kill while model.keras is rewritten leaves the previous file.
    assert _kill(runs, out, "model_keras:mid_write") == EPOCHS
    with open(model, "rb") as f:
        assert f.read() == previous

    code, log = runs.train(out, "--resume")
    assert code == 0, log[-2000:]
    assert_nothing_trusted_is_partial(out)
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["epochs_completed"] == EPOCHS and results["epochs_this_session"] == 0
    assert csv_epochs(out) == list(range(EPOCHS))
    keras.models.load_model(model)
    assert leftovers(out) == []


# ------------------------------------------------------------ kill loop ---


def _random_fault(rng, out):
    """A point this run is sure to reach, from the state the last run left."""
    left = EPOCHS - latest_backup_epoch(os.path.join(out, "backup"))
    points = ["config_json:mid_write", "model_keras:mid_write", "results_json:mid_write"]
    if os.path.exists(os.path.join(out, "metrics.csv")):
        points.append("metrics_csv:mid_write")
    if left:
        points.append(f"train:batch_end@{rng.randint(1, left * STEPS)}")
        for point in ("mid_weights", "after_weights", "published"):
            points.append(f"backup:{point}@{rng.randint(1, left)}")
        points.append(f"backup_pointer:mid_write@{rng.randint(1, left)}")
    return rng.choice(points)


def test_ten_kills_at_random_instants_end_like_clean_stops_at_the_same_epochs(runs, tmp_path):
    """Ten seeded random kills in a row, each resumed, then a run to the end.

    Exact equality with an uninterrupted run is impossible by design (two
    uninterrupted runs are bit-identical; one stopped cleanly after epoch 1
    and resumed is not): a resumed process reads its data from a fresh
    tf.data pipeline, whose shuffle (`reshuffle_each_iteration`) and
    augmentation seeds (`rerandomize_each_iteration`) start their per-epoch
    sequence again, and Dropout's seed generator starts again too (Keras
    saves no seed state with the weights), so the epochs after a resume
    see other batches and masks than they would have.
    The closest claim that holds: a kill at any instant costs exactly the
    epoch it interrupted. The killed run ends with the same epochs and
    bit-identical weights (op determinism on) as a run stopped cleanly,
    just after publishing a backup, at the epochs the killed run resumed from.
    """
    rng = random.Random(16)
    out = str(tmp_path / "killed")
    starts, faults = [], []
    for _ in range(10):
        starts.append(latest_backup_epoch(os.path.join(out, "backup")))
        faults.append(_random_fault(rng, out))
        _kill(runs, out, faults[-1])
    starts.append(latest_backup_epoch(os.path.join(out, "backup")))
    code, log = runs.train(out, "--resume")
    assert code == 0, (faults, log[-2000:])
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f)["epochs_completed"] == EPOCHS
    assert csv_epochs(out) == list(range(EPOCHS))
    assert leftovers(out) == []

    # The reference stops where the killed run resumed from, and nowhere else.
    reference = str(tmp_path / "reference")
    boundaries = sorted(set(starts))
    for start, stop in zip(boundaries, boundaries[1:], strict=False):
        resume = ["--resume"] if start else []
        code, log = runs.train(reference, *resume, fault=f"backup:published@{stop - start}")
        assert code == KILLED, log[-2000:]
    code, log = runs.train(reference, *(["--resume"] if boundaries[-1] else []))
    assert code == 0, log[-2000:]
    for a, b in zip(final_weights(out), final_weights(reference), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"faults {faults}, resumed at {starts}")


# ------------------------------------------------------ optimizer state ---


def _tiny_model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    return compile_for_training(model, 0.1, momentum=0.9)


def _tiny_data():
    rng = np.random.default_rng(0)
    return rng.random((32, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 32)


class _RecordAtTrainBegin(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.variables = [np.array(v) for v in self.model.optimizer.variables]
        self.model.stop_training = True


def test_resume_restores_the_momentum_buffers(tmp_path):
    backup = str(tmp_path / "backup")
    x, y = _tiny_data()
    first = _tiny_model(seed=0)
    first.fit(x, y, batch_size=8, epochs=2, callbacks=[AtomicBackupAndRestore(backup)], verbose=0)
    before = [np.array(v) for v in first.optimizer.variables]
    names = [v.path for v in first.optimizer.variables]
    momentums = [b for b, n in zip(before, names, strict=True) if "momentum" in n]
    assert len(momentums) == len(first.trainable_variables)
    assert all(np.abs(m).max() > 0 for m in momentums)

    # Another process would start from other weights and a fresh optimizer.
    second = _tiny_model(seed=1)
    probe = _RecordAtTrainBegin()
    second.fit(
        x, y, batch_size=8, epochs=3, callbacks=[AtomicBackupAndRestore(backup), probe], verbose=0
    )
    # Variables in the same order (the layers' names differ: another model).
    for name, a, b in zip(names, before, probe.variables, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)  # iterations and every buffer


# ------------------------------------------------ full and read-only disks ---


def _refuse(monkeypatch, code, directory):
    """Makes the OS refuse writes under `directory`: ENOSPC when data is flushed
    to disk, EROFS when a file or directory is created or renamed there (as a
    full disk and a read-only mount do). Elsewhere (TensorFlow's own temporary
    files) writes go on."""
    import tempfile

    directory = os.path.realpath(directory)

    def inside(path):
        return os.path.realpath(path).startswith(directory + os.sep)

    def refused(real, where):
        def call(*args, **kwargs):
            if inside(where(*args, **kwargs)):
                raise OSError(code, os.strerror(code))
            return real(*args, **kwargs)

        return call

    if code == errno.ENOSPC:
        where = lambda fd: os.readlink(f"/proc/self/fd/{fd}")  # noqa: E731
        monkeypatch.setattr(os, "fsync", refused(os.fsync, where))
    else:
        where = lambda *a, dir=None, **k: os.path.join(dir or "/", "new")  # noqa: E731
        monkeypatch.setattr(tempfile, "mkstemp", refused(tempfile.mkstemp, where))
        monkeypatch.setattr(tempfile, "mkdtemp", refused(tempfile.mkdtemp, where))
        monkeypatch.setattr(os, "replace", refused(os.replace, lambda src, dst: dst))


def _assert_refused(error, path, code):
    assert isinstance(error.value, OSError) and error.value.errno == code
    assert repr(os.fspath(path)) in str(error.value) and os.strerror(code) in str(error.value)


DISK_ERRORS = [errno.ENOSPC, errno.EROFS]


@pytest.mark.parametrize("code", DISK_ERRORS, ids=errno.errorcode.get)
def test_a_refused_model_save_keeps_the_previous_model(tmp_path, monkeypatch, code):
    path = tmp_path / "model.keras"
    good = _tiny_model(seed=0)
    atomic.save_model(good, path)
    before = path.read_bytes()
    _refuse(monkeypatch, code, tmp_path)
    with pytest.raises(atomic.AtomicWriteError) as error:
        atomic.save_model(_tiny_model(seed=1), path, fault="model_keras")
    _assert_refused(error, path, code)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.keras"]


@pytest.mark.parametrize("code", DISK_ERRORS, ids=errno.errorcode.get)
def test_a_refused_text_write_keeps_the_previous_file(tmp_path, monkeypatch, code):
    path = tmp_path / "results.json"
    atomic.write_text(path, '{"good": true}')
    _refuse(monkeypatch, code, tmp_path)
    with pytest.raises(atomic.AtomicWriteError) as error:
        atomic.write_text(path, '{"good": false}', fault="results_json")
    _assert_refused(error, path, code)
    assert path.read_text() == '{"good": true}'
    assert os.listdir(tmp_path) == ["results.json"]


@pytest.mark.parametrize("code", DISK_ERRORS, ids=errno.errorcode.get)
def test_a_refused_tflite_export_keeps_the_previous_file(tmp_path, monkeypatch, code):
    path = tmp_path / "model.tflite"
    model = _tiny_model(seed=0)
    export.to_tflite(model, path, verify=False)
    before = path.read_bytes()
    _refuse(monkeypatch, code, tmp_path)
    with pytest.raises(atomic.AtomicWriteError) as error:
        export.to_tflite(_tiny_model(seed=1), path, verify=False)
    _assert_refused(error, path, code)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.tflite"]


@pytest.mark.parametrize("code", DISK_ERRORS, ids=errno.errorcode.get)
def test_a_refused_backup_keeps_the_previous_backup(tmp_path, monkeypatch, code):
    backup = tmp_path / "backup"
    x, y = _tiny_data()
    model = _tiny_model(seed=0)
    model.fit(x, y, epochs=1, callbacks=[AtomicBackupAndRestore(str(backup))], verbose=0)
    assert sorted(os.listdir(backup)) == ["epoch-00001", "latest"]
    weights = backup / "epoch-00001" / "model.weights.h5"
    before = weights.read_bytes()
    _refuse(monkeypatch, code, tmp_path)
    with pytest.raises(atomic.AtomicWriteError) as error:
        model.fit(x, y, epochs=2, callbacks=[AtomicBackupAndRestore(str(backup))], verbose=0)
    _assert_refused(error, backup / "epoch-00002", code)
    assert sorted(os.listdir(backup)) == ["epoch-00001", "latest"]
    assert (backup / "latest").read_text() == "epoch-00001"
    assert weights.read_bytes() == before


@pytest.mark.parametrize("code", DISK_ERRORS, ids=errno.errorcode.get)
def test_a_refused_dataset_move_leaves_the_data_directory_as_it_was(tmp_path, monkeypatch, code):
    """`data prepare`: the built dataset cannot be renamed into place."""
    data_dir = tmp_path / "tfds"
    (data_dir / "mnist" / "3.0.1").mkdir(parents=True)  # another, prepared dataset
    (data_dir / "mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
    built = tmp_path / "built"
    built.mkdir()
    (built / "fashion_mnist-train.tfrecord").write_bytes(b"records")
    target = data_dir / "fashion_mnist" / "3.0.1"
    _refuse(monkeypatch, code, tmp_path)
    with pytest.raises(atomic.AtomicWriteError) as error:
        offline._move_into_place(built, target)
    _assert_refused(error, target, code)
    assert sorted(os.listdir(data_dir)) == ["mnist"]
    assert (data_dir / "mnist" / "3.0.1" / "dataset_info.json").read_text() == "{}"


def test_a_full_disk_while_preparing_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    """`keras-reuse data prepare` through TFDS's builder, the write refused."""
    debian = "/usr/share/datasets/fashion-mnist"
    assert os.path.isdir(debian), "`apt-get install -y dataset-fashion-mnist` (.ci/run does)"
    data_dir = tmp_path / "tfds"

    def download_and_prepare(self, **kwargs):
        # What TFDS does on a full disk: a partial file, then the OS error.
        os.makedirs(self.data_dir, exist_ok=True)
        with open(os.path.join(self.data_dir, "fashion_mnist-train.tfrecord"), "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.data_dir)

    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", download_and_prepare)
    flags.FLAGS.unparse_flags()
    with pytest.raises(SystemExit) as exit_info:
        cli.run(["keras-reuse", "data", "prepare", "fashion_mnist", "--from", debian,
                 "--data_dir", str(data_dir)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1
    assert len(err) == 1 and err[0].startswith("keras-reuse data prepare: error: ")
    assert os.strerror(errno.ENOSPC) in err[0] and str(data_dir) in err[0]
    assert os.listdir(data_dir) == []  # the scratch directory is gone too


# ---------------------------------------------------- hostile checkpoints ---


class _Payload:
    """Unpickling it would create the file `marker`: code run from the checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def hostile(tmp_path):
    """Checkpoints whose unpickling runs code, in torch's zip and legacy formats."""
    marker = tmp_path / "payload_ran"
    checkpoint = {"net": {"features.0.weight": torch.zeros(1), "x": _Payload(str(marker))}}
    paths = []
    for name, zip_format in (("zip.t7", True), ("legacy.t7", False)):
        path = tmp_path / name
        torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
        paths.append(path)
    raw = tmp_path / "raw.t7"
    raw.write_bytes(pickle.dumps(checkpoint["net"], protocol=2))
    paths.append(raw)
    # torch.save really did pickle the payload: a plain unpickling runs it.
    pickle.loads(raw.read_bytes())
    assert marker.exists()
    marker.unlink()
    return paths, marker


def test_a_checkpoint_that_would_run_code_is_refused_unrun(hostile):
    paths, marker = hostile
    for path in paths:
        with pytest.raises(ValueError, match=r"not a checkpoint of tensors|corrupted") as error:
            pretrained.load_lrunet_checkpoint(path)
        assert repr(str(path)) in str(error.value)
        assert not marker.exists(), f"{path.name}: the payload ran"


def test_convert_refuses_a_checkpoint_that_would_run_code(hostile, capsys):
    paths, marker = hostile
    out = marker.parent / "out.keras"
    for path in paths:
        flags.FLAGS.unparse_flags()
        with pytest.raises(SystemExit) as exit_info:
            cli.run(["keras-reuse", "convert", str(path), str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2
        assert len(err) == 1 and str(path) in err[0]
        assert not marker.exists() and not out.exists()


def test_an_enormous_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.t7"
    size = 4 * pretrained.MAX_CHECKPOINT_BYTES  # sparse: no disk used
    with open(path, "wb") as f:
        f.write(pickle.dumps({"net": {}}))
        f.truncate(size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with pytest.raises(ValueError, match=rf"{size:,} bytes, more than any LruNet checkpoint"):
        pretrained.load_lrunet_checkpoint(path)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak
    assert grown < 64 << 20, f"the peak memory grew by {grown:,} bytes"


def test_a_truncated_checkpoint_is_named_truncated(tmp_path):
    checkpoint = {"net": {"features.0.weight": torch.ones(64, 3, 3, 3)}}
    for name, zip_format in (("zip.t7", True), ("legacy.t7", False)):
        whole = tmp_path / f"whole-{name}"
        torch.save(checkpoint, whole, _use_new_zipfile_serialization=zip_format)
        cut = tmp_path / name
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        with pytest.raises(ValueError, match=r"ends early, it is truncated") as error:
            pretrained.load_lrunet_checkpoint(cut)
        assert repr(str(cut)) in str(error.value)


# ------------------------------------------------------------ the hook ---


def test_an_unknown_fault_point_is_an_error_not_a_silent_pass(monkeypatch):
    cases = [
        ("backup:typo", "unknown fault point 'backup:typo'"),
        ("train:batch_end@0", "the count after @ must be an integer >= 1"),
    ]
    try:
        for value, message in cases:
            monkeypatch.setenv(atomic.FAULT_ENV, value)
            with pytest.raises(ValueError, match=rf"^{atomic.FAULT_ENV}=.*{message}"):
                atomic.load_fault_from_environment()
    finally:
        monkeypatch.delenv(atomic.FAULT_ENV)
        atomic.load_fault_from_environment()
    assert atomic._fault is None
