"""Argument checks shared by the whole package.

Every check raises a ValueError in `keras.applications`' form, naming the
argument and quoting the value received: "`epochs` must be an integer >= 1.
Received: epochs=0".
"""

from __future__ import annotations

from typing import Any


def is_int(value: Any) -> bool:
    """Whether `value` is an int (bools, which are ints to Python, excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether `value` is an int or a float (bools excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int = 1, optional: bool = False) -> None:
    """Raises ValueError unless `value` is an integer >= `minimum` (or None if `optional`).

    Args:
        name: The argument's name, for the message.
        value: The value received.
        minimum: The smallest valid value.
        optional: Whether None is valid too.
    """
    if optional and value is None:
        return
    if not is_int(value) or value < minimum:
        none = " or None" if optional else ""
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}{none}. Received: {name}={value!r}"
        )


def check_positive_int(name: str, value: Any) -> None:
    """Raises ValueError unless `value` is an int >= 1 (bools excluded)."""
    check_int(name, value, minimum=1)


def check_rate(name: str, value: Any) -> None:
    """Raises ValueError unless `value` is a number in [0, 1)."""
    if not is_number(value):
        raise ValueError(f"`{name}` must be a number in [0, 1). Received: {name}={value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value!r}")


def check_bool(name: str, value: Any, optional: bool = False) -> None:
    """Raises ValueError unless `value` is a bool (or None if `optional`)."""
    if optional and value is None:
        return
    if not isinstance(value, bool):
        what = "True, False or None" if optional else "True or False"
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")


DATA_FORMATS = ("channels_last", "channels_first")


def check_data_format(data_format: Any) -> str:
    """An image data format, None meaning Keras's global one (`keras.config.image_data_format()`).

    Args:
        data_format: "channels_last", "channels_first" or None.

    Returns:
        "channels_last" or "channels_first".

    Raises:
        ValueError: quoting any other value.
    """
    if data_format is None:
        # Lazy: the package's checks import nothing heavy until a format is read.
        import keras

        data_format = keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            "`data_format` must be 'channels_last', 'channels_first' or None (Keras's "
            f"`keras.config.image_data_format()`). Received: data_format={data_format!r}"
        )
    return data_format


def channel_axis(data_format: str) -> int:
    """The channel axis of a batch of images in `data_format`: 1 (channels first) or -1."""
    return 1 if data_format == "channels_first" else -1
