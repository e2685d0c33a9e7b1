"""Keras callbacks for resumable, measured training runs.

`AtomicBackupAndRestore` is Keras's `BackupAndRestore` with crash-safe
writes: Keras writes the weights and the epoch counter as two files in
place, so a run killed between (or during) the two writes resumes from
weights that do not match the epoch it believes it is at. Here every backup
is written into a fresh directory and published by atomically replacing a
one-line `latest` pointer, so a restart only ever sees a complete backup.

`ThroughputMonitor` adds `images_per_sec` (training throughput, first batch
of each epoch excluded as warm-up) to the epoch logs, so `CSVLogger`,
`TensorBoard` and the `History` record it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import keras

_LATEST = "latest"
_WEIGHTS = "model.weights.h5"
_METADATA = "training_metadata.json"


def write_text_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` through a temp file and `os.replace`."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def latest_backup_epoch(backup_dir: str) -> int:
    """Number of completed epochs in the newest complete backup (0 if none)."""
    pointer = os.path.join(backup_dir, _LATEST)
    if not os.path.isfile(pointer):
        return 0
    with open(pointer) as f:
        name = f.read().strip()
    with open(os.path.join(backup_dir, name, _METADATA)) as f:
        return int(json.load(f)["epoch"])


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backups are published atomically.

    Backs up at the end of every epoch (weights with optimizer state, and
    the epoch counter) and restores the newest complete backup when `fit`
    starts. The backup is kept after training so that re-running a finished
    run with the same directory does no extra epoch.

    Args:
        backup_dir: Directory for the backups; created when needed.
    """

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)

    def _point_at(self, name: str) -> None:
        directory = os.path.join(self.backup_dir, name)
        self._weights_path = os.path.join(directory, _WEIGHTS)
        self._training_metadata_path = os.path.join(directory, _METADATA)

    def on_train_begin(self, logs=None):
        pointer = os.path.join(self.backup_dir, _LATEST)
        if os.path.isfile(pointer):
            with open(pointer) as f:
                self._point_at(f.read().strip())
            self._load_model()

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{self._current_epoch:05d}"
        tmp = tempfile.mkdtemp(dir=self.backup_dir, prefix=".tmp-")
        self.model.save_weights(os.path.join(tmp, _WEIGHTS))
        write_text_atomic(
            os.path.join(tmp, _METADATA),
            json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}),
        )
        final = os.path.join(self.backup_dir, name)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        write_text_atomic(os.path.join(self.backup_dir, _LATEST), name)
        self._point_at(name)
        # Older backups and leftovers of killed saves are now unreachable.
        for entry in os.listdir(self.backup_dir):
            if entry not in (name, _LATEST) and (
                entry.startswith("epoch-") or entry.startswith(".tmp-")
            ):
                path = os.path.join(self.backup_dir, entry)
                (shutil.rmtree if os.path.isdir(path) else os.remove)(path)


class ThroughputMonitor(keras.callbacks.Callback):
    """Logs training images/s per epoch as `images_per_sec`.

    Times from the end of an epoch's first batch to the end of its last, so
    tracing and pipeline warm-up do not count.

    Args:
        batch_size: Global batch size (images per training step).
    """

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.epoch_rates: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._first = None
        self._last = None
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._first is None:
            self._first = now
        else:
            self._batches += 1
        self._last = now

    def on_epoch_end(self, epoch, logs=None):
        if self._batches and logs is not None:
            rate = self._batches * self.batch_size / (self._last - self._first)
            self.epoch_rates.append(rate)
            logs["images_per_sec"] = rate
