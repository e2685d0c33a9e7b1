"""`ConfigError`: the error of a run specification, naming the field (or flag) and its value."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A `TrainConfig` field (or model argument) has an invalid value.

    Attributes:
        field: The field or model argument, also the command-line flag's name.
        value: The value received.
        reason: What is wrong with it.
    """

    def __init__(self, field: str, value: Any, reason: str):
        super().__init__(f"{field}={value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason

    def __reduce__(self):  # pickles (multiprocessing, subprocess tests)
        return (type(self), (self.field, self.value, self.reason))

    def flag_message(self) -> str:
        """The message as a command line shows it: `--field=value: reason`."""
        value = self.value
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        return f"--{self.field}={value}: {self.reason}"
