"""The tests' process helper: a timeout kills the child and the processes it started."""

import os
import subprocess
import sys
import time

import processes
import pytest

# Starts a grandchild that would outlive it, prints the grandchild's pid, waits.
PARENT = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has ended
        return f.read().split()[2] != "Z"


def test_a_timeout_kills_the_child_and_its_children(tmp_path):
    out = tmp_path / "out"
    start = time.monotonic()
    with open(out, "w") as f, pytest.raises(subprocess.TimeoutExpired):
        processes.run([sys.executable, "-c", PARENT], timeout=3, stdout=f, text=True)
    assert time.monotonic() - start < 60
    grandchild = int(out.read_text().split()[0])
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(grandchild)


def test_run_returns_what_subprocess_run_returns():
    done = processes.run(
        [sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"],
        timeout=60,
        input="ok",
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "OK")
    with pytest.raises(subprocess.CalledProcessError):
        processes.run([sys.executable, "-c", "raise SystemExit(3)"], timeout=60, check=True)
