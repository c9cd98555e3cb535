"""Import direction (shared/reference/architecture.md): every package has its own rule."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for top in ("vidrefine", "generators") for p in (ROOT / top).rglob("*.py"))


class Rule(NamedTuple):
    """What one top-level module or package may not import.

    never: prefixes it may not import. only: if set, the only vidrefine/generators prefixes it
    may import besides its own package. stdlib_only: third-party imports are forbidden too.
    A bare "vidrefine" always means the public API module alone, never "all of vidrefine".
    """

    never: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    stdlib_only: bool = False


def _v(ours: str, third_party: str = "") -> tuple[str, ...]:
    """`_v("io cli", "torch")` -> ("vidrefine.io", "vidrefine.cli", "torch")."""
    return tuple(f"vidrefine.{name}" for name in ours.split()) + tuple(third_party.split())


RULES: dict[str, Rule] = {
    "vidrefine": Rule(never=(*_v("cli", "click rich"), "generators")),
    "vidrefine.__main__": Rule(only=_v("cli")),
    "vidrefine.errors": Rule(only=(), stdlib_only=True),
    "vidrefine.config": Rule(only=_v("errors"), stdlib_only=True),
    "vidrefine.captions": Rule(only=_v("errors io.atomic"), stdlib_only=True),
    "vidrefine.progress": Rule(only=()),
    "vidrefine.plugins": Rule(only=_v("errors config progress")),
    "vidrefine.presets": Rule(only=_v("config errors plan")),
    "vidrefine.models": Rule(
        never=_v("runtime sampling io pipeline plan checkpoints cli", "click rich av"),
    ),
    "vidrefine.checkpoints": Rule(never=_v("pipeline plan runtime sampling io cli")),
    "vidrefine.sampling": Rule(never=_v("models io pipeline plan runtime checkpoints cli")),
    "vidrefine.plan": Rule(
        never=_v("models runtime pipeline checkpoints sampling cli", "torch einops click rich av"),
        only=_v("config errors io.probe"),
    ),
    "vidrefine.runtime": Rule(never=_v("models pipeline plan checkpoints sampling io cli")),
    "vidrefine.io": Rule(
        never=_v(
            "models sampling pipeline plan runtime checkpoints cli", "torch einops click rich"
        ),
        only=_v("errors config io"),
    ),
    "vidrefine.pipeline": Rule(never=_v("cli", "click rich")),
    "vidrefine.quality": Rule(  # numpy, scikit-image, OpenCV, matplotlib: never torch
        never=_v("models runtime pipeline checkpoints sampling cli", "torch einops click rich"),
        only=_v("config errors io plan progress"),
    ),
    "vidrefine.captioners": Rule(
        never=_v("cli pipeline plan models sampling", "click rich"),
        only=_v("captions config errors plugins progress io checkpoints runtime"),
    ),
    "vidrefine.cli": Rule(),
    "vidrefine.train": Rule(  # `vidrefine tune`: imported by cli (and train.lora by pipeline)
        never=_v("cli web", "click rich"),
        only=_v("models checkpoints sampling runtime io plan pipeline quality")
        + _v("config errors progress captions"),
    ),
    "vidrefine.diffusers": Rule(  # diffusers classes and `export diffusers`: imported by cli.export
        never=_v("cli web", "click rich"),
        only=("vidrefine", *_v("models checkpoints sampling plan io pipeline.steps train.lora"))
        + _v("config errors"),
    ),
    "vidrefine.web": Rule(
        never=_v("cli"),
        only=(
            "vidrefine",
            *_v("pipeline io config errors presets plan progress"),
            *_v("captions captioners quality"),  # caption box, "Auto" button, compare report
        ),
    ),
    "generators": Rule(
        never=_v("cli"),
        only=(
            "vidrefine",  # the public API
            *_v("models sampling plan pipeline.loading pipeline.vae_pass checkpoints runtime"),
            *_v("config errors"),
            *_v("plugins progress"),
        ),
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


KNOWN = {module_name(p) for p in FILES}


def owner(module: str) -> str:
    """The rule key a module falls under: its top-level module or package."""
    parts = module.split(".")
    return "generators" if parts[0] == "generators" else ".".join(parts[:2])


def matches(name: str, prefix: str) -> bool:
    if prefix == "vidrefine":
        return name == prefix
    return name == prefix or name.startswith(prefix + ".")


def imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module `source` imports, anywhere in the file, with relative imports resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names = []
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package[: len(package) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{base}.{alias.name}"
                names.append(sub if sub in KNOWN else base)
    return names


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    rule = RULES[owner(module)]
    bad = set()
    for name in imports(source, module, is_package):
        top = name.partition(".")[0]
        ours = top in ("vidrefine", "generators")
        allowed = (*rule.only, owner(module)) if rule.only is not None else None
        if ours:
            outside = allowed is not None and not any(matches(name, a) for a in allowed)
        else:
            outside = rule.stdlib_only and top not in sys.stdlib_module_names
        if outside or any(matches(name, never) for never in rule.never):
            bad.add(name)
    return sorted(bad)


def file_imports(path: Path) -> list[str]:
    """Imports of one file; [] if it does not parse (its own parametrized test reports that)."""
    try:
        return imports(path.read_text(), module_name(path), path.name == "__init__.py")
    except SyntaxError:
        return []


IDS = [str(p.relative_to(ROOT)) for p in FILES]


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_module_imports_only_what_its_rule_allows_when_parsed(path: Path) -> None:
    module = module_name(path)
    bad = violations(path.read_text(), module, path.name == "__init__.py")
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}, which {owner(module)} may not use"


def test_every_module_falls_under_one_rule_when_the_package_is_scanned() -> None:
    orphans = sorted(m for m in KNOWN if owner(m) not in RULES)
    assert not orphans, f"no layering rule for {orphans}: add one to RULES"
    stale = sorted(key for key in RULES if not any(owner(m) == key for m in KNOWN))
    assert not stale, f"RULES name {stale}, which no longer exist"


def test_cli_is_imported_by_nothing_when_outside_cli_and_main() -> None:
    importers = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in FILES
        if owner(module_name(path)) not in ("vidrefine.cli", "vidrefine.__main__")
        for name in file_imports(path)
        if matches(name, "vidrefine.cli")
    )
    assert not importers, f"only vidrefine/__main__.py may import vidrefine.cli: {importers}"


def test_train_is_imported_only_by_cli_when_outside_train() -> None:
    # a tuned adapter is applied by the pipeline, the API and the page: train.lora, nothing else
    lora_users = ("vidrefine", "vidrefine.pipeline", "vidrefine.web", "vidrefine.diffusers")
    importers = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in FILES
        if owner(module_name(path)) not in ("vidrefine.cli", "vidrefine.train")
        for name in file_imports(path)
        if matches(name, "vidrefine.train")
        and not (owner(module_name(path)) in lora_users and matches(name, "vidrefine.train.lora"))
    )
    assert not importers, f"only the CLI imports vidrefine.train: {importers}"


def test_diffusers_is_imported_only_inside_vidrefine_diffusers_when_outside_cli_export() -> None:
    # the integration (issue 23) and the diffusers library itself stay out of everything else
    importers = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in FILES
        if owner(module_name(path)) != "vidrefine.diffusers"
        and module_name(path) != "vidrefine.cli.export"
        for name in file_imports(path)
        if matches(name, "vidrefine.diffusers") or matches(name, "diffusers")
    )
    assert not importers, f"only vidrefine.diffusers and cli.export use diffusers: {importers}"


def test_models_import_only_config_and_errors_when_leaving_models() -> None:
    allowed = _v("models config errors")
    leaks = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in FILES
        if owner(module_name(path)) == "vidrefine.models"
        for name in file_imports(path)
        if name.partition(".")[0] == "vidrefine" and not any(matches(name, a) for a in allowed)
    )
    assert not leaks, f"models must stay pure math: {leaks}"
    hf = sorted(
        str(path.relative_to(ROOT))
        for path in FILES
        if owner(module_name(path)) == "vidrefine.models"
        and path.name != "text.py"
        and any(matches(name, "transformers") for name in file_imports(path))
    )
    assert not hf, f"only models/text.py may import transformers: {hf}"


def test_checker_reports_forbidden_imports_when_fed_a_synthetic_source() -> None:
    source = (
        "import math\n"
        "from . import geometry\n"
        "def lazy():\n"
        "    import torch\n"
        "    from ..pipeline import refine\n"
        "    from vidrefine.io.probe import probe\n"
    )
    bad = violations(source, "vidrefine.plan.fake")
    assert bad == ["torch", "vidrefine.pipeline.refine"]
    assert violations("import numpy\nfrom .errors import BadInput\n", "vidrefine.config") == [
        "numpy"
    ]
    assert violations("from vidrefine.cli import main\n", "generators.fake") == ["vidrefine.cli"]
