"""Objects named in a recipe by a dotted path (``package.module:attribute``).

How a user brings their own model or loss without touching sepkit: the recipe names it, sepkit
imports it. The module must be importable (installed, or on ``PYTHONPATH``); every failure is one
error naming the recipe key and the path.
"""

from __future__ import annotations

import importlib
from typing import Any


def is_dotted_path(name: str) -> bool:
    """``package.module:attribute`` (the colon tells it from a built-in name)."""
    module, sep, attribute = name.partition(":")
    return bool(sep and module and attribute)


def import_object(path: str, key: str) -> Any:
    """The object at ``package.module:attribute``; ``ValueError`` naming ``key`` if it is not."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"{key}: cannot import {module_name!r} ({err}); is it installed or on PYTHONPATH?"
        ) from err
    try:
        found = module
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError as err:
        raise ValueError(f"{key}: {module_name!r} has no {attribute!r}") from err
    return found
