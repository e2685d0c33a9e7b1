"""TensorFlow's start-up settings, applied when the package is imported before TensorFlow.

TensorFlow reads these variables once, when it starts. Importing
`keras_reuse` (or any of its modules) sets them where TensorFlow has not
started yet, so `model.fit` in a user's script runs as fast as the
`keras-reuse` command. Each is a default: a variable the user has set is
left alone.

- `TF_CPP_MIN_LOG_LEVEL=2`: TensorFlow's INFO and WARNING lines would bury
  the progress bar.
- `TF_ENABLE_ONEDNN_OPTS=1` on x86-64 CPUs where TensorFlow leaves oneDNN
  off: those without AVX-512 VNNI, AVX-VNNI, AVX-512 bfloat16 or AMX (an
  AVX2-only AMD EPYC, for one), where our models train much faster with it
  on (docs/performance.md). Where oneDNN is TensorFlow's own default the
  variable is left unset.

Where TensorFlow had started with oneDNN off before the package was
imported, the first model built logs one warning (`warn_if_onednn_off`).
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import sys
from collections.abc import MutableMapping

_X86_64 = ("x86_64", "amd64")
# CPU flags (Linux /proc/cpuinfo names) with which TensorFlow turns oneDNN on
# by itself.
ONEDNN_BY_DEFAULT = ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# Training with oneDNN on against off, on an AVX2-only EPYC where TensorFlow
# leaves it off: 1.22x (LruNet-14) to 2.03x (ResNet-164),
# benchmarks/results/avx2/onednn.md.
ONEDNN_SPEEDUP = "1.2-2x"


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux lists them (empty where it does not)."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def start_up_defaults(
    machine: str | None = None, flags: frozenset[str] | None = None
) -> dict[str, str]:
    """The TensorFlow variables the package sets unless the user has.

    Args:
        machine: `platform.machine()` of the computer (that of this one if None).
        flags: Its CPU flags (`cpu_flags()` of this one if None).

    Returns:
        Variable name -> value.
    """
    machine = platform.machine() if machine is None else machine
    flags = cpu_flags() if flags is None else flags
    defaults = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    if machine.lower() in _X86_64 and not flags.intersection(ONEDNN_BY_DEFAULT):
        defaults[ONEDNN_VARIABLE] = "1"
    return defaults


def set_start_up_environment(
    environ: MutableMapping[str, str] | None = None,
    machine: str | None = None,
    flags: frozenset[str] | None = None,
) -> dict[str, str]:
    """Sets `start_up_defaults()` in `environ` where a variable is unset.

    Args:
        environ: The environment to change (`os.environ` if None).
        machine, flags: As `start_up_defaults`.

    Returns:
        The variables it set (those the user had set are left out).
    """
    environ = os.environ if environ is None else environ
    defaults = start_up_defaults(machine, flags)
    added = {k: v for k, v in defaults.items() if k not in environ}
    environ.update(added)
    return added


def apply_before_tensorflow() -> dict[str, str]:
    """Sets the start-up defaults if TensorFlow has not started in this process.

    Returns:
        The variables it set; empty where TensorFlow had started already.
    """
    if "tensorflow" in sys.modules:
        return {}
    return set_start_up_environment()


def onednn_off_message() -> str:
    """The warning for a process whose TensorFlow started with oneDNN off."""
    return (
        f"TensorFlow started with oneDNN off on this x86-64 CPU, before keras_reuse was "
        f"imported: our models train {ONEDNN_SPEEDUP} faster with it on. Set "
        f"{ONEDNN_VARIABLE}=1 in the environment, or import keras_reuse before keras "
        "and tensorflow."
    )


@functools.cache
def warn_if_onednn_off() -> bool:
    """Logs `onednn_off_message()` once per process where it applies.

    It applies on the TensorFlow backend, on an x86-64 CPU, when TensorFlow
    runs with oneDNN off and the user has not set `TF_ENABLE_ONEDNN_OPTS=0`.

    Returns:
        Whether it warned.
    """
    if "tensorflow" not in sys.modules or platform.machine().lower() not in _X86_64:
        return False
    if os.environ.get(ONEDNN_VARIABLE) == "0":  # the user's choice
        return False
    # Lazy: only where TensorFlow has started; the package import starts nothing.
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    # Lazy: TensorFlow has started here; its oneDNN state has no public query.
    from tensorflow.python.util import _pywrap_util_port

    if _pywrap_util_port.IsMklEnabled():
        return False
    logging.getLogger("keras_reuse").warning(onednn_off_message())
    return True
