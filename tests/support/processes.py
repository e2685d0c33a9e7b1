"""Child processes of the tests: every one has a timeout, and a timeout kills its whole tree."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def run(args: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess:
    """`subprocess.run(args, **kwargs)` in a session of its own, with a time limit.

    Args:
        args: The command.
        timeout: Seconds; when they pass, the child and every process it
            started are killed and `subprocess.TimeoutExpired` is raised.
        **kwargs: As `subprocess.run` (`capture_output`, `text`, `env`,
            `cwd`, `input`, `check`).

    Returns:
        The completed process.
    """
    check = kwargs.pop("check", False)
    if kwargs.pop("capture_output", False):
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdin = kwargs.pop("input", None)
    if stdin is not None:
        kwargs["stdin"] = subprocess.PIPE
    with subprocess.Popen(args, start_new_session=True, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(process)
            process.communicate()
            raise
    done = subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
    if check:
        done.check_returncode()
    return done


def kill_tree(process: subprocess.Popen) -> None:
    """Kills `process` and everything in its session (it must have one of its own)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
