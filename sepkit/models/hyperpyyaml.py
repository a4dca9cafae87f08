"""HyperPyYAML, read as data: the ``hyperparams.yaml`` of a SpeechBrain model card without
SpeechBrain.

``!new:dotted.Class`` (an object built from its arguments) and ``!ref <key>`` (another entry, with
arithmetic) are recorded, never executed: a model card is data, and importing SpeechBrain would
pull in torchaudio and much more. :func:`load_hyperpyyaml` resolves the references and the few
arithmetic expressions model cards use.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class SpeechBrainImportError(ValueError):
    """A SpeechBrain folder cannot be read as a SepFormer; the message names file and key."""


# --------------------------------------------------------------------------- HyperPyYAML subset


@dataclass
class New:
    """``!new:dotted.Class`` with its (unresolved, then resolved) arguments."""

    target: str
    args: list[Any]
    kwargs: dict[str, Any]


@dataclass
class Ref:
    """``!ref <key>`` (or a string with several ``<key>`` parts, or simple arithmetic)."""

    text: str


@dataclass
class Opaque:
    """Any other tag (``!name:``, ``!apply:``, ``!PLACEHOLDER``...): kept, never executed."""

    tag: str
    value: Any


class _HyperLoader(yaml.SafeLoader):
    """SafeLoader that records HyperPyYAML tags as :class:`New`/:class:`Ref`/:class:`Opaque`."""


def _construct_tagged(loader: _HyperLoader, suffix: str, node: yaml.Node) -> Any:
    tag = "!" + suffix
    value: Any
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)  # type: ignore[arg-type]
    if tag == "!ref" or tag == "!copy":
        return Ref(str(value))
    if tag.startswith("!new:"):
        if isinstance(value, dict):
            return New(tag[5:], [], value)
        if isinstance(value, list):
            return New(tag[5:], value, {})
        return New(tag[5:], [] if value in ("", None) else [value], {})
    return Opaque(tag, value)


_HyperLoader.add_multi_constructor("!", _construct_tagged)

_REF = re.compile(r"<([^<>]+)>")
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
#: ``**`` only within these bounds: ``9**9**9**9`` in a downloaded hyperparams.yaml must not
#: hang the import computing a number with hundreds of millions of digits.
MAX_EXPONENT, MAX_BASE = 64, 1e6


def _arith(text: str) -> Any:
    """Evaluate ``2 * 128 // 4``-style arithmetic (all HyperPyYAML allows in ``!ref``)."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or abs(left) > MAX_BASE):
                raise ValueError(f"{text}: {left} ** {right} is too large to evaluate")
            return _BINOPS[type(node.op)](left, right)
        raise ValueError(text)

    return ev(ast.parse(text, mode="eval"))


class _Resolver:
    """Resolves ``!ref`` against the whole document (recursively, detecting cycles)."""

    def __init__(self, root: dict[str, Any], source: Path) -> None:
        self.root = root
        self.source = source
        self.active: set[str] = set()

    def lookup(self, key: str) -> Any:
        node: Any = self.root
        for part in re.split(r"[.\[\]]+", key.strip()):
            if not part:
                continue
            if isinstance(node, New):
                node = node.kwargs
            if not isinstance(node, Mapping) or part not in node:
                raise SpeechBrainImportError(f"{self.source}: !ref <{key}> names no entry")
            node = node[part]
        if key in self.active:
            raise SpeechBrainImportError(f"{self.source}: !ref <{key}> refers to itself")
        self.active.add(key)
        try:
            return self.resolve(node)
        finally:
            self.active.discard(key)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, Ref):
            whole = _REF.fullmatch(node.text.strip())
            if whole:
                return self.lookup(whole.group(1))
            text = _REF.sub(lambda m: str(self.lookup(m.group(1))), node.text)
            try:
                return _arith(text)
            except (ValueError, SyntaxError, ZeroDivisionError):
                return text
        if isinstance(node, New):
            # Resolved in place: two references to one object stay one object, as in SpeechBrain.
            node.args = [self.resolve(v) for v in node.args]
            node.kwargs = {k: self.resolve(v) for k, v in node.kwargs.items()}
            return node
        if isinstance(node, dict):
            return {k: self.resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v) for v in node]
        return node


def load_hyperpyyaml(path: str | Path) -> dict[str, Any]:
    """Parse a HyperPyYAML file into plain data with :class:`New`/:class:`Opaque` leaves."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_HyperLoader)  # a SafeLoader subclass
    except OSError as err:
        raise SpeechBrainImportError(f"{path}: cannot be read ({err})") from err
    except yaml.YAMLError as err:
        raise SpeechBrainImportError(f"{path}: not valid (Hyper)YAML: {err}") from err
    if not isinstance(raw, dict):
        raise SpeechBrainImportError(f"{path}: top level must be a mapping")
    resolved: dict[str, Any] = _Resolver(raw, path).resolve(raw)
    return resolved
