"""Import direction (shared/reference/architecture.md): lower layers never import upper ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vidrefine"

# module prefix -> prefixes it must not import (first matching rule wins)
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("vidrefine.cli", ()),
    ("vidrefine.__main__", ()),
    (
        "vidrefine.io",
        (
            "torch",
            "vidrefine.models",
            "vidrefine.sampling",
            "vidrefine.refine",
            "vidrefine.checkpoints",
            "vidrefine.cli",
            "click",
            "rich",
            "einops",
        ),
    ),
    (
        "vidrefine.models",
        (
            "vidrefine.sampling",
            "vidrefine.io",
            "vidrefine.refine",
            "vidrefine.cli",
            "vidrefine.checkpoints",
            "vidrefine.tiling",
            "vidrefine.chunking",
            "click",
            "rich",
            "av",
        ),
    ),
    (
        "vidrefine.sampling",
        (
            "vidrefine.models",
            "vidrefine.io",
            "vidrefine.refine",
            "vidrefine.cli",
            "vidrefine.checkpoints",
            "click",
            "rich",
            "av",
        ),
    ),
    (
        "vidrefine.tiling",
        (
            "vidrefine.models",
            "vidrefine.io",
            "vidrefine.refine",
            "vidrefine.cli",
            "click",
            "rich",
            "av",
        ),
    ),
    (
        "vidrefine.chunking",
        (
            "vidrefine.models",
            "vidrefine.io",
            "vidrefine.refine",
            "vidrefine.cli",
            "click",
            "rich",
            "av",
        ),
    ),
    (
        "vidrefine.checkpoints",
        (
            "vidrefine.io",
            "vidrefine.refine",
            "vidrefine.cli",
            "vidrefine.sampling",
            "click",
            "rich",
            "av",
        ),
    ),
    (
        "vidrefine.config",
        (
            "torch",
            "vidrefine.models",
            "vidrefine.io",
            "vidrefine.cli",
            "click",
            "rich",
            "av",
            "numpy",
        ),
    ),
    (
        "vidrefine.errors",
        (
            "torch",
            "vidrefine.models",
            "vidrefine.io",
            "vidrefine.cli",
            "vidrefine.config",
            "click",
            "rich",
            "av",
            "numpy",
        ),
    ),
    ("vidrefine", ("vidrefine.cli", "click", "rich", "generators")),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_names(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.append(target)
            names.extend(f"{target}.{alias.name}" for alias in node.names)
    return names


def matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rule_for(module: str) -> tuple[str, ...]:
    for prefix, forbidden in RULES:
        if matches(module, prefix):
            return forbidden
    return ()


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PACKAGE)) for p in FILES])
def test_module_imports_only_downward_when_parsed(path: Path) -> None:
    module = module_name(path)
    forbidden = rule_for(module)
    bad = sorted({n for n in imported_names(path, module) for f in forbidden if matches(n, f)})
    assert not bad, f"{module} imports {bad}, which its layer may not use"


def test_layering_rules_catch_an_upward_import(tmp_path: Path) -> None:
    fake = PACKAGE / "io" / "_layering_probe_example.py"
    source = "import torch\nfrom ..models import vae\n"
    tree_names = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tree_names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            tree_names.append("vidrefine." + (node.module or ""))
    forbidden = rule_for(module_name(fake))
    assert any(matches(n, f) for n in tree_names for f in forbidden)
