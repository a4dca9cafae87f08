"""The README's commands and code must stay true: subcommands, options, recipes, imports."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest

from sepkit.cli import build_parser

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)


def shell_commands() -> list[list[str]]:
    commands = []
    for lang, body in BLOCKS:
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                commands.append(shlex.split(line))
    return commands


def sepkit_invocations() -> list[list[str]]:
    found = []
    for words in shell_commands():
        for i, word in enumerate(words):
            if word.endswith("bin/sepkit") or word == "sepkit":
                found.append(words[i + 1 :])
            elif word == "-m" and i + 1 < len(words) and words[i + 1] == "sepkit":
                found.append(words[i + 2 :])
    return found


def test_readme_opens_with_the_two_setup_commands() -> None:
    _lang, first_block = BLOCKS[0]
    lines = [ln.split("#")[0].strip() for ln in first_block.strip().splitlines()]
    assert lines == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


@pytest.mark.parametrize("argv", sepkit_invocations(), ids=lambda a: " ".join(a[:2]))
def test_every_sepkit_command_in_the_readme_parses(argv: list[str]) -> None:
    parser = build_parser(argv[0])  # the subcommand's own arguments are built when named
    args, extra = parser.parse_known_args(argv)
    assert all("=" in e and not e.startswith("-") for e in extra), f"unknown options {extra}"
    recipe = getattr(args, "recipe", None)
    if recipe is not None:
        assert (ROOT / recipe).is_file(), f"README names a missing recipe {recipe}"


def test_readme_mentions_real_recipes_and_docs() -> None:
    for path in re.findall(r"(recipes/[\w.-]+\.yaml|docs/[\w.-]+\.md)", README):
        assert (ROOT / path).is_file(), f"README names a missing file {path}"


@pytest.mark.parametrize("body", [b for lang, b in BLOCKS if lang == "python"])
def test_python_blocks_compile_and_their_imports_exist(body: str) -> None:
    tree = ast.parse(body)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module}.{alias.name} is gone"
