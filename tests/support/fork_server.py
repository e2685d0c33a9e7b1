"""Starts `keras-reuse` runs as forked children of one process that imported TensorFlow once.

    python tests/support/fork_server.py

reads one JSON request per line on stdin, `{"argv": [...], "env": {...},
"log": path}`, forks a child that runs `keras_reuse.cli.run(argv)` with
`env` added to its environment and its output in `log`, waits for it and
answers one JSON line, `{"returncode": N}`: the exit code, or minus the
signal that ended the child (-9 for SIGKILL), as `subprocess` reports it.

Each child is a process of its own that can be killed at any instant; it
only skips the seconds that importing TensorFlow costs a fresh
`keras-reuse` (the parent imports it, then forks before TensorFlow starts
its runtime: no op has run, no thread pool exists). Op determinism is on, so
two runs from the same state compute the same weights.
"""

import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.config.experimental.enable_op_determinism()

import keras_reuse.cli.train  # noqa: E402, F401  (its import is the slow part)
from keras_reuse import cli  # noqa: E402
from keras_reuse.utils import atomic  # noqa: E402


def _child(request: dict) -> int:
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(request.get("env", {}))
    # The variable is read at import, which happened before the fork.
    atomic.load_fault_from_environment()
    try:
        cli.run(request["argv"])
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"returncode": code}), flush=True)


if __name__ == "__main__":
    main()
