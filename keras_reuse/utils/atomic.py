"""Atomic writes of every file keras-reuse produces, and the hook that crash-tests them.

Every file the package writes (`model.keras`, `results.json`, `config.json`,
the training backups, `.tflite` files, plots, CSVs, prepared datasets) goes
through `write_file` and its wrappers `write_text`, `write_bytes` and
`save_model`, or, for a whole directory, `replace_directory`. The content is
written to a temporary sibling (named `TEMP_PREFIX...`), flushed to disk and
renamed over the destination with `os.replace`, so a reader, or a run
resumed after a crash, sees the previous file or the new one, never a part
of one. When the OS refuses (a full disk, ENOSPC; a read-only file system,
EROFS; no permission, EACCES) the write raises `AtomicWriteError`, an
`OSError` with the same `errno` whose message names the destination; the
previous file is left as it was and the temporary file is removed.

Fault injection: `KERAS_REUSE_FAULT=POINT` (or `POINT@N`) makes the process
kill itself with SIGKILL the first (N-th) time it reaches `POINT`, so tests
can crash a run at exactly the instants that matter. The points
(`FAULT_POINTS`):

    train:batch_end         after a training batch (AtomicBackupAndRestore)
    backup:mid_weights      the backup's weights file is half written
    backup:after_weights    the backup is complete on disk; the `latest`
                            pointer still names the previous one
    backup_pointer:mid_write  the new `latest` pointer is half written
    backup:published        the pointer names the new backup; older ones
                            are not yet deleted
    config_json:mid_write, metrics_csv:mid_write, model_keras:mid_write,
    results_json:mid_write  that file of a training run is half written

A `*:mid_write` point (and `backup:mid_weights`) first truncates the
temporary file to half its length, which is what a kill in the middle of
the write leaves on disk. The variable is read once, when this module is
imported (`load_fault_from_environment` reads it again, for a process forked
after the import); unset, a point costs one comparison with None. An unknown
point is an error at import, so a typo cannot make a crash test pass
without crashing anything.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from typing import Any

TEMP_PREFIX = ".keras-reuse-tmp-"
FAULT_ENV = "KERAS_REUSE_FAULT"
FAULT_POINTS = (
    "train:batch_end",
    "backup:mid_weights",
    "backup:after_weights",
    "backup_pointer:mid_write",
    "backup:published",
    "config_json:mid_write",
    "metrics_csv:mid_write",
    "model_keras:mid_write",
    "results_json:mid_write",
)


class AtomicWriteError(OSError):
    """The OS refused a write; the destination still holds its previous content.

    Attributes:
        path: The destination that was not written.
    """

    def __init__(self, path: str, error: OSError):
        super().__init__(error.errno, error.strerror or str(error), path)
        self.path = path

    def __reduce__(self):  # pickles with the constructor's arguments
        return type(self), (self.path, OSError(self.errno, self.strerror))

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno, str(self.errno)) if self.errno else "OSError"
        return (
            f"Cannot write {self.path!r}: {self.strerror} ({code}); the previous "
            "content there, if any, is unchanged"
        )


# --------------------------------------------------------------- faults ---

_fault: tuple[str, int] | None = None
_reached: dict[str, int] = {}


def _parse_fault(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, count = value.partition("@")
    if point not in FAULT_POINTS:
        raise ValueError(
            f"{FAULT_ENV}={value!r}: unknown fault point {point!r}; "
            f"one of {', '.join(FAULT_POINTS)}"
        )
    if count and not (count.isdigit() and int(count) >= 1):
        raise ValueError(f"{FAULT_ENV}={value!r}: the count after @ must be an integer >= 1")
    return point, int(count or 1)


def load_fault_from_environment() -> None:
    """(Re)reads `KERAS_REUSE_FAULT`; done at import, again in a forked child.

    Raises:
        ValueError: naming the variable, for an unknown point or a bad count.
    """
    global _fault
    _fault = _parse_fault(os.environ.get(FAULT_ENV))
    _reached.clear()


def fault_point(point: str, partial: str | None = None) -> None:
    """Kills the process with SIGKILL if `KERAS_REUSE_FAULT` names this instant.

    Args:
        point: One of `FAULT_POINTS`.
        partial: A file being written; it is cut to half its length before
            the kill, as a kill in mid-write leaves it.
    """
    if _fault is None or _fault[0] != point:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] < _fault[1]:
        return
    if partial is not None and os.path.isfile(partial):
        os.truncate(partial, os.path.getsize(partial) // 2)
    os.kill(os.getpid(), signal.SIGKILL)


load_fault_from_environment()

# --------------------------------------------------------------- writes ---


def _file_mode() -> int:
    # mkstemp creates files private (0600); give them the mode open() would.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable. Best effort: some file systems refuse
    # to open or sync a directory, and the new file is in place by now.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def write_file(
    path: str | os.PathLike, write: Callable[[str], Any], fault: str | None = None
) -> Any:
    """Writes a file atomically: `write(temporary_path)`, then a rename over `path`.

    Args:
        path: The destination; its directory must exist.
        write: Writes the complete content to the path it is given, which
            ends with `path`'s base name (so extension checks such as Keras's
            `.keras` pass). It may also check the file: whatever it raises
            propagates (an `OSError` as `AtomicWriteError`) and `path` is
            left untouched.
        fault: Label of this file for fault injection: point
            `f"{fault}:mid_write"` is reached after `write`.

    Returns:
        What `write` returned.

    Raises:
        AtomicWriteError: (an `OSError`) naming `path`, if the OS refuses
            any step; the previous file stays and the temporary one is removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix=TEMP_PREFIX, suffix=f"-{os.path.basename(path)}"
        )
        os.close(fd)
    except OSError as error:
        raise AtomicWriteError(path, error) from error
    try:
        result = write(tmp)
        if fault is not None:
            fault_point(f"{fault}:mid_write", partial=tmp)
        _fsync_file(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except OSError as error:
        _remove(tmp)
        raise AtomicWriteError(path, error) from error
    except BaseException:
        _remove(tmp)
        raise
    _fsync_directory(directory)
    return result


def write_bytes(path: str | os.PathLike, data: bytes, fault: str | None = None) -> None:
    """Writes `data` to `path` atomically (see `write_file`).

    Args:
        path: The destination; its directory must exist.
        data: The file's complete content.
        fault: Fault-injection label (see `write_file`).

    Raises:
        AtomicWriteError: naming `path`; the previous file stays.
    """

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    write_file(path, write, fault)


def write_text(path: str | os.PathLike, text: str, fault: str | None = None) -> None:
    """`write_bytes` of `text` encoded as UTF-8."""
    write_bytes(path, text.encode("utf-8"), fault)


def save_model(model: Any, path: str | os.PathLike, fault: str | None = None) -> None:
    """Saves a Keras model to the `.keras` file `path` atomically.

    Args:
        model: The `keras.Model`.
        path: The destination, ending in `.keras`; its directory must exist.
        fault: Fault-injection label (see `write_file`).

    Raises:
        AtomicWriteError: naming `path`; the previous file stays.
    """
    write_file(path, model.save, fault)


def make_temp_directory(target: str | os.PathLike) -> str:
    """Creates an empty sibling of `target` to build it in, for `replace_directory`.

    Args:
        target: The directory that will be built; its parent is created if
            needed.

    Returns:
        The new directory's path; its name begins with `TEMP_PREFIX`.

    Raises:
        AtomicWriteError: naming `target`, if the OS refuses.
    """
    target = os.fspath(target)
    parent = os.path.dirname(os.path.abspath(target))
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(dir=parent, prefix=TEMP_PREFIX)
    except OSError as error:
        raise AtomicWriteError(target, error) from error


def replace_directory(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Renames the complete directory `source` to `target` in one step.

    Every file in `source` is flushed to disk first.

    Args:
        source: The finished directory, on the same file system as `target`.
        target: Where it goes: absent or an empty directory (`os.replace`
            does not replace a non-empty one); its parent must exist.

    Raises:
        AtomicWriteError: naming `target`, if the OS refuses; `source` is
            left for the caller to remove.
    """
    source, target = os.fspath(source), os.fspath(target)
    try:
        for root, _, files in os.walk(source):
            for name in files:
                _fsync_file(os.path.join(root, name))
        os.replace(source, target)
    except OSError as error:
        raise AtomicWriteError(target, error) from error
    _fsync_directory(os.path.dirname(os.path.abspath(target)))


def remove_leftovers(directory: str | os.PathLike) -> list[str]:
    """Removes what killed writes left in `directory` (names beginning with `TEMP_PREFIX`).

    Args:
        directory: A directory only this process writes to; need not exist.

    Returns:
        The names removed.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    removed = [name for name in os.listdir(directory) if name.startswith(TEMP_PREFIX)]
    for name in removed:
        _remove(os.path.join(directory, name))
    return removed
