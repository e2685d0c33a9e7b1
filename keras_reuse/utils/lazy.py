"""Package attributes loaded on first use (PEP 562), so importing a package stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attribute_loader(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module `__getattr__` that imports each name from its module when first used.

    Args:
        package: The package's `__name__`, for the error message.
        names: Attribute -> the module that defines it (an attribute named
            like the last part of its module's path is the module itself).
        namespace: The package's `globals()`, where a loaded name is kept.

    Returns:
        The `__getattr__` to assign in the package.
    """

    def load(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name])
        value = module if module.__name__.rsplit(".", 1)[-1] == name else getattr(module, name)
        namespace[name] = value
        return value

    return load
