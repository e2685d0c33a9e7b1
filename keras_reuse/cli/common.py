"""Subcommands of the `keras-reuse` command line, one module each.

A subcommand reports a bad argument by raising `absl.app.UsageError`;
`keras_reuse.cli` prints it as one line, `keras-reuse NAME: error: ...`,
with exit code 2.
"""

from __future__ import annotations

from absl import app


def check_no_arguments(argv: list[str]) -> None:
    """Refuses positional arguments (a subcommand that takes flags only)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")


def distinct_integers(flag: str, texts: list[str], minimum: int | None, example: str) -> list[int]:
    """The integers of a list flag such as `--seeds=0,1`, at least one, none repeated.

    Raises:
        absl.app.UsageError: `--flag=text: what is wrong`.
    """
    text = ",".join(texts)
    expected = f"expected integers{'' if minimum is None else f' >= {minimum}'}, e.g. {example}"
    try:
        values = [int(v) for v in texts]
    except ValueError:
        raise app.UsageError(f"--{flag}={text}: {expected}") from None
    if not values or (minimum is not None and min(values) < minimum):
        raise app.UsageError(f"--{flag}={text}: {expected}")
    if len(set(values)) != len(values):
        raise app.UsageError(f"--{flag}={text}: a value is repeated")
    return values
