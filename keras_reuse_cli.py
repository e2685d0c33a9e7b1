"""The `keras-reuse` console script: TensorFlow's start-up settings, then `keras_reuse.cli`.

TensorFlow reads these variables once, when it starts, and importing
anything from the `keras_reuse` package starts it (the package imports
Keras). This module lives outside the package so that the command sets
them first. Each is a default: a variable the user has set is left alone.

- `TF_CPP_MIN_LOG_LEVEL=2`: TensorFlow's INFO and WARNING lines would
  bury the progress bar. (A few lines that XLA writes through absl before
  its log is set up ignore it.)
- `TF_ENABLE_ONEDNN_OPTS=1` on x86-64: TensorFlow leaves oneDNN off on x86
  CPUs without AVX-512 VNNI, bfloat16 or AMX (an AVX2-only AMD EPYC, for
  one), and there our models trained 1.2-2x faster with oneDNN on
  (`python -m benchmarks.onednn`, README "Performance"). On the CPUs where
  it is TensorFlow's default this changes nothing.

`python -m keras_reuse_cli SUBCOMMAND ...` is the same command.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping

_X86_64 = ("x86_64", "amd64")


def start_up_defaults(machine: str | None = None) -> dict[str, str]:
    """The TensorFlow variables `keras-reuse` sets unless the user has.

    Args:
        machine: `platform.machine()` of the computer (that of this one if None).

    Returns:
        Variable name -> value.
    """
    machine = platform.machine() if machine is None else machine
    defaults = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    if machine.lower() in _X86_64:
        defaults["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return defaults


def set_start_up_environment(
    environ: MutableMapping[str, str] | None = None, machine: str | None = None
) -> dict[str, str]:
    """Sets `start_up_defaults()` in `environ` where a variable is unset.

    Args:
        environ: The environment to change (`os.environ` if None).
        machine: As `start_up_defaults`.

    Returns:
        The variables it set (those the user had set are left out).
    """
    environ = os.environ if environ is None else environ
    added = {k: v for k, v in start_up_defaults(machine).items() if k not in environ}
    environ.update(added)
    return added


def run(argv: list[str] | None = None) -> None:
    """Entry point of the `keras-reuse` console script (see `keras_reuse.cli.run`)."""
    set_start_up_environment()
    from keras_reuse.cli import run as run_cli

    run_cli(argv)


if __name__ == "__main__":
    run()
