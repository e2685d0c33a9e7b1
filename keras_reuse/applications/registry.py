"""Name -> constructor registry, so models can be built from a string.

Like timm's registry: each public constructor registers itself under a
lowercase name when its module is imported; the CLI and the tuner look
models up here instead of branching on names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

import keras

_MODELS: dict[str, Callable[..., keras.Model]] = {}
# Preset name -> (architecture name, its keyword arguments with `weights`).
_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {}


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a model constructor under `name`."""

    def decorator(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        if name in _MODELS:
            raise ValueError(f"A model named {name!r} is already registered.")
        _MODELS[name] = fn
        return fn

    return decorator


def register_preset(name: str, architecture: str, **kwargs: Any) -> None:
    """Registers published weights: `create(name)` builds `architecture(**kwargs)`."""
    if name in _PRESETS or name in _MODELS:
        raise ValueError(f"A model or preset named {name!r} is already registered.")
    _PRESETS[name] = (architecture, kwargs)


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """The sorted registered names, like timm's `list_models`.

    Args:
        pattern: Shell-style wildcard (`fnmatch`), e.g. "lrunet*" or "*cifar10".
        pretrained: List the presets (published weights, e.g.
            "lrunet10_fashion_mnist") instead of the architectures.

    Returns:
        Matching names, sorted.
    """
    if pattern is not None and not isinstance(pattern, str):
        raise ValueError(f"`pattern` must be a string or None. Received: pattern={pattern!r}")
    names = _PRESETS if pretrained else _MODELS
    return sorted(n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern.lower()))


def get(name: str) -> Callable[..., keras.Model]:
    """Returns the constructor registered under `name`.

    Args:
        name: A model name such as "lrunet" or "sharesnet50", or a preset
            such as "lrunet10_fashion_mnist" (case insensitive).

    Returns:
        The constructor, e.g. `keras_reuse.applications.LruNet`.

    Raises:
        ValueError: if no model has that name; the message lists them all.
    """
    key = name.lower() if isinstance(name, str) else name
    if key in _PRESETS:
        architecture, preset_kwargs = _PRESETS[key]
        constructor = _MODELS[architecture]

        def pretrained(**kwargs: Any) -> keras.Model:
            return constructor(**{**preset_kwargs, **kwargs})

        pretrained.__name__ = pretrained.__qualname__ = key
        pretrained.__doc__ = f"`{constructor.__name__}({preset_kwargs})`: a published model."
        return pretrained
    if key not in _MODELS:
        raise ValueError(
            f"Unknown model name: {name!r}. Available models: {', '.join(list_models())}; "
            f"pretrained: {', '.join(list_models(pretrained=True))}"
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
