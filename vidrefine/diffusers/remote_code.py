"""The code of an exported diffusers folder, generated from the modules vidrefine runs.

`write_remote_code(folder, module)` copies `module` and every vidrefine module it needs into
`folder` as flat files (`vidrefine.models.dit` -> `vidrefine_models_dit.py`) with their imports
made relative, so diffusers' `trust_remote_code` loads them where vidrefine is not installed.
The model math (`WHOLE`: models, sampling, config, errors and this package) is copied whole;
of any other module only the functions, classes and constants imported from it, with what they
use (e.g. the per-window steps of `pipeline.steps`, not its loaders). Every import must be one a
diffusers installation has (`PORTABLE`).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

# What a diffusers installation has (einops aside: docs/diffusers.md says to install it).
PORTABLE = {"torch", "numpy", "einops", "diffusers", "transformers", "safetensors"}
PORTABLE |= {"huggingface_hub", "PIL", "av", "peft", "accelerate"}
OURS = "vidrefine"
WHOLE = tuple(f"{OURS}.{p}" for p in ("models", "sampling", "config", "errors", "diffusers"))
ALL = None  # a request for a whole module


class NotPortable(RuntimeError):
    """A module the export needs uses something it cannot carry (a bug in vidrefine)."""


def file_stem(module: str) -> str:
    """The flat file name (without .py) of `module` in an exported folder."""
    return module.replace(".", "_")


@dataclass
class _Source:
    module: str
    text: str
    tree: ast.Module = field(init=False)

    def __post_init__(self) -> None:
        self.tree = ast.parse(self.text)


def _source(module: str) -> _Source:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise NotPortable(f"{module}: no Python source to export")
    return _Source(module, Path(spec.origin).read_text(encoding="utf-8"))


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (anywhere, `if TYPE_CHECKING:` blocks left out)."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _ours(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] == OURS
    return any(alias.name.split(".")[0] == OURS for alias in node.names)


class _Portability:
    """Whether a module, with everything it imports, runs where only `PORTABLE` is installed."""

    def __init__(self) -> None:
        self._known: dict[str, bool] = {}

    def __call__(self, module: str) -> bool:
        if module not in self._known:
            self._known[module] = True  # an import cycle does not make it unportable
            self._known[module] = self._check(_source(module))
        return self._known[module]

    def _check(self, source: _Source) -> bool:
        for node in _runtime_imports(source.tree):
            if _ours(node):
                if isinstance(node, ast.Import) or not self(node.module or ""):
                    return False
            elif isinstance(node, ast.ImportFrom) and node.level:
                return False
            else:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if any(not _third_party_ok(n) for n in names):
                    return False
        return True


def _third_party_ok(name: str) -> bool:
    top = name.split(".")[0]
    return top in sys.stdlib_module_names or top in PORTABLE or top == "__future__"


def _relative(node: ast.ImportFrom, names: list[str] | None = None) -> str:
    """`from vidrefine.x.y import a, b` as `from .vidrefine_x_y import a, b`."""
    aliases = [a for a in node.names if names is None or (a.asname or a.name) in names]
    listed = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in aliases)
    return f"from .{file_stem(node.module or '')} import {listed}"


def _whole(source: _Source) -> tuple[str, dict[str, set[str] | None]]:
    """`source` with its vidrefine imports made relative, and what it imports from where."""
    lines = source.text.splitlines(keepends=True)
    needs: dict[str, set[str] | None] = {}
    edits = []
    for node in _runtime_imports(source.tree):
        if not _ours(node):
            continue
        if isinstance(node, ast.Import):
            raise NotPortable(f"{source.module} line {node.lineno}: use `from vidrefine.x import`")
        names = {a.name for a in node.names}
        target = node.module or ""
        previous = needs.get(target, set())
        needs[target] = None if previous is None else previous | names
        edits.append((node, _relative(node)))
    for node in _type_checking_imports(source.tree):
        edits.append((node, "pass  # (type-checking import, not exported)"))
    for node, text in sorted(edits, key=lambda e: -e[0].lineno):
        indent = lines[node.lineno - 1][: node.col_offset]
        lines[node.lineno - 1 : node.end_lineno] = [f"{indent}{text}\n"]
    return "".join(lines), needs


def _type_checking_imports(tree: ast.AST) -> list[ast.AST]:
    blocks = [n for n in ast.walk(tree) if _type_checking(n)]
    return [i for b in blocks for i in ast.walk(b) if isinstance(i, (ast.Import, ast.ImportFrom))]


def _bound(stmt: ast.stmt) -> list[str]:
    """Names a module-level statement binds."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in stmt.names]
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    targets = stmt.targets if isinstance(stmt, ast.Assign) else []
    if isinstance(stmt, ast.AnnAssign):
        targets = [stmt.target]
    return [t.id for t in targets if isinstance(t, ast.Name)]


class _Uses(ast.NodeVisitor):
    """Names a statement reads at run time; annotations are strings here (PEP 563)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:  # noqa: N802 (ast's visitor names)
        self.names.add(node.id)

    def visit_arg(self, node: ast.arg) -> None:  # noqa: N802
        return  # only an annotation lives here

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for child in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if child is not None:
                self.visit(child)
        for child in node.body:
            self.visit(child)

    visit_FunctionDef = visit_AsyncFunctionDef = _function  # noqa: N815

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:  # noqa: N802
        if node.value is not None:
            self.visit(node.value)


def _uses(stmt: ast.stmt) -> set[str]:
    visitor = _Uses()
    visitor.visit(stmt)
    return visitor.names


def _partial(source: _Source, names: set[str]) -> tuple[str, dict[str, set[str] | None]]:
    """The statements of `source` that define `names`, with what they use, and their imports."""
    body = source.tree.body
    defs = {name: stmt for stmt in body for name in _bound(stmt)}
    wanted: set[str] = set()
    todo = sorted(names)
    while todo:
        name = todo.pop()
        if name in wanted or name not in defs:
            if name in names and name not in defs:
                raise NotPortable(f"{source.module} has no module-level name {name!r}")
            continue
        wanted.add(name)
        if not isinstance(defs[name], (ast.Import, ast.ImportFrom)):
            todo.extend(_uses(defs[name]))
    imports, code, needs = [], [], {}
    for stmt in body:
        used = [n for n in _bound(stmt) if n in wanted]
        if not used or (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"):
            continue
        text = _statement(source, stmt, used, needs).rstrip("\n")
        (imports if isinstance(stmt, (ast.Import, ast.ImportFrom)) else code).append(text)
    doc = f'"""From {source.module}: {", ".join(sorted(names))} and what they use."""\n'
    head = doc + "\nfrom __future__ import annotations\n\n" + "\n".join(imports)
    return head + "\n\n\n" + "\n\n\n".join(code) + "\n", needs


def _statement(
    source: _Source, stmt: ast.stmt, used: list[str], needs: dict[str, set[str] | None]
) -> str:
    """One kept statement's text; imports keep only the `used` names (ours made relative)."""
    if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
        return "".join(source.text.splitlines(keepends=True)[first - 1 : stmt.end_lineno])
    if _ours(stmt) and isinstance(stmt, ast.ImportFrom):
        names = {a.name for a in stmt.names if (a.asname or a.name) in used}
        needs[stmt.module or ""] = needs.get(stmt.module or "", set()) | names  # type: ignore[operator]
        return _relative(stmt, used)
    if _ours(stmt) or (isinstance(stmt, ast.ImportFrom) and stmt.level):
        raise NotPortable(f"{source.module} line {stmt.lineno}: import form not exported")
    kept = [a for a in stmt.names if (a.asname or a.name).split(".")[0] in used]
    for alias in kept:
        module = stmt.module if isinstance(stmt, ast.ImportFrom) else alias.name
        if not _third_party_ok(module or ""):
            raise NotPortable(f"{source.module} needs {module}, which the export cannot carry")
    clone = type(stmt)(**{**stmt.__dict__, "names": kept})
    return ast.unparse(clone)


def _copied_whole(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in WHOLE)


def collect(top: str) -> dict[str, str]:
    """Module name -> exported source, for `top` and everything it needs (a fixed point)."""
    portable = _Portability()
    requests: dict[str, set[str] | None] = {top: ALL}
    made: dict[str, tuple[set[str] | None, str]] = {}
    while any(made.get(m, (0,))[0] != r for m, r in requests.items()):
        for module, request in list(requests.items()):
            if module in made and made[module][0] == request:
                continue
            source = _source(module)
            if request is ALL and not portable(module):
                raise NotPortable(f"{module} imports what a diffusers installation lacks")
            text, needs = _whole(source) if request is ALL else _partial(source, request)
            made[module] = (request, text)
            for target, names in needs.items():
                requests[target] = _merge(target, requests.get(target, set()), names)
    return {module: text for module, (_, text) in made.items()}


def _merge(module: str, old: set[str] | None, new: set[str] | None) -> set[str] | None:
    """What to export of `module`: all of the model math, else the names asked for."""
    if _copied_whole(module) or old is ALL or new is ALL:
        return ALL
    return old | new


def _banner(module: str) -> str:
    from vidrefine import __version__

    path = module.replace(".", "/") + ".py"
    return f"# Generated by `vidrefine export diffusers` (vidrefine {__version__}) from {path}.\n"


def write_remote_code(folder: Path, top: str) -> str:
    """Write `top` and the modules it needs into `folder`; return the file stem of `top`.

    The top file also imports each of the others by name: diffusers copies only the files a
    remote-code module imports itself into its module cache, not what those import.
    """
    sources = collect(top)
    for module, text in sources.items():
        if module == top:
            others = sorted(file_stem(m) for m in sources if m != top)
            text += "\n\n# Every file of this folder's code, so diffusers copies them all:\n"
            text += "".join(f"from .{o} import __name__ as _{o}  # noqa: F401\n" for o in others)
        (folder / f"{file_stem(module)}.py").write_text(_banner(module) + text, encoding="utf-8")
    return file_stem(top)


__all__ = ["NotPortable", "collect", "file_stem", "write_remote_code"]
