"""Name -> constructor registry, so models can be built from a string.

Like timm's registry: each public constructor registers itself under a
lowercase name when its module is imported; the CLI and the tuner look
models up here instead of branching on names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

_MODELS: dict[str, Callable[..., keras.Model]] = {}


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a model constructor under `name`."""

    def decorator(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        if name in _MODELS:
            raise ValueError(f"A model named {name!r} is already registered.")
        _MODELS[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """Returns the sorted names of all registered models."""
    return sorted(_MODELS)


def get(name: str) -> Callable[..., keras.Model]:
    """Returns the constructor registered under `name`.

    Args:
        name: A model name such as "lrunet" or "sharesnet50" (case
            insensitive).

    Returns:
        The constructor, e.g. `keras_reuse.applications.LruNet`.

    Raises:
        ValueError: if no model has that name; the message lists them all.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _MODELS:
        raise ValueError(
            f"Unknown model name: {name!r}. Available models: {', '.join(list_models())}"
        )
    return _MODELS[key]


def create(name: str, **kwargs: Any) -> keras.Model:
    """Builds the model registered under `name` with `kwargs`.

    Args:
        name: A registered model name (see `list_models()`).
        **kwargs: Keyword arguments for that model's constructor.

    Returns:
        A `keras.Model`.
    """
    return get(name)(**kwargs)
