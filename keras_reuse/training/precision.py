"""Mixed-precision policy: choosing one and applying it to model construction.

Keras's dtype policy is process-global; `dtype_policy_scope` sets it only
while a model is being built (layers keep the policy they were built with),
so building one mixed-precision model does not change the next one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

from keras_reuse.utils.backends import gpu_available

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def cpu_supports_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this x86 CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX).

    Args:
        cpuinfo: The file listing the CPU flags (Linux's /proc/cpuinfo).
    """
    try:
        with open(cpuinfo) as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """Turns a `--mixed_precision` value into a Keras dtype policy name.

    Args:
        precision: One of "auto", "float32", "mixed_float16",
            "mixed_bfloat16". "auto" picks mixed_float16 when the Keras
            backend sees a GPU, mixed_bfloat16 on a CPU with bfloat16 support, else
            float32.

    Returns:
        A Keras dtype policy name.

    Raises:
        ValueError: for an unknown value.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"`mixed_precision` must be one of {', '.join(PRECISIONS)}. "
            f"Received: mixed_precision={precision!r}"
        )
    if precision != "auto":
        return precision
    if gpu_available():
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_supports_bfloat16() else "float32"


@contextlib.contextmanager
def dtype_policy_scope(policy: str) -> Iterator[None]:
    """Sets Keras's global dtype policy to `policy` inside the block only."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
