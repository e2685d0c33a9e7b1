"""Runs many `keras-reuse` command lines in this one process; prints their outcomes as JSON.

    python tests/support/cli_cases.py CASES.json

CASES.json holds a list of `[subcommand, [args...]]`. Each runs through
`keras_reuse.cli.run` as the console script would, from the current
directory, and yields `{"code": exit code, "stderr": ..., "written": paths
that appeared or changed under the current directory}`. One process for all
of them: a start costs seconds of TensorFlow import, a case milliseconds.

absl's flags are global, and subcommands declare flags of the same name
(`train` and `study` both declare `--epochs`), which is why `keras-reuse`
imports only one subcommand per process. Here, after a subcommand's cases,
the flags its module declared are deleted and the module is forgotten, so
the next subcommand declares its own; between two cases the flags return
to their defaults.
"""

import contextlib
import io
import json
import os
import sys

from absl import app, flags

# Every library a subcommand imports, first: flags they declare are not the
# subcommands' and must survive the deletions below.
import keras_reuse.experiments.study  # noqa: F401
import keras_reuse.experiments.tuning  # noqa: F401
from keras_reuse import cli


def _snapshot() -> dict[str, tuple[int, int]]:
    found = {}
    for root, dirs, files in os.walk("."):
        for name in dirs + files:
            path = os.path.join(root, name)
            stat = os.stat(path)
            found[path] = (stat.st_size, stat.st_mtime_ns)
    return found


def _run(command: str, args: list[str]) -> dict:
    flags.FLAGS.unparse_flags()
    before = _snapshot()
    stderr = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.run(["keras-reuse", command, *args])
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        except BaseException as error:  # a traceback instead of a usage error
            code, stderr = -1, io.StringIO(f"{type(error).__name__}: {error}")
    after = _snapshot()
    written = sorted(p for p in after if before.get(p) != after[p])
    return {"code": code, "stderr": stderr.getvalue(), "written": written}


def main() -> None:
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    results = []
    loaded = None
    app.define_help_flags()
    declared = set(flags.FLAGS)
    for command, args in cases:
        if command != loaded and loaded is not None:
            for name in set(flags.FLAGS) - declared:
                delattr(flags.FLAGS, name)
            sys.modules.pop(f"keras_reuse.cli.{loaded}", None)
        loaded = command
        results.append(_run(command, args))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
