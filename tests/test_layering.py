"""Layering of the package: no import cycles, commands call the library (never each other or the CLI),
and every module imports on its own in a fresh interpreter."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "volseg"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, top_level_only: bool) -> List[Tuple[str, int]]:
    """``(volseg module, line)`` imported by ``path``: at module level only (what runs on import), or
    anywhere (also inside functions: the lazy imports of commands)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module level includes try/if blocks, not function bodies
        stack, nodes = list(tree.body), []
        while stack:
            node = stack.pop()
            nodes.append(node)
            if isinstance(node, (ast.If, ast.Try)):
                stack += [*node.body, *node.orelse, *getattr(node, "finalbody", []),
                          *[s for h in getattr(node, "handlers", []) for s in h.body]]
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "volseg"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "volseg":
            out.append((node.module, node.lineno))
            out += [(f"{node.module}.{a.name}", node.lineno) for a in node.names if f"{node.module}.{a.name}" in MODULES]
    return [(m, line) for m, line in out if m in MODULES]


def _graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, _ in _imports(path, top_level_only=True):
            parts = target.split(".")
            graph[mod] |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - {mod}  # parents import first
    return graph


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle (``[a, b, ..., a]``) or ``[]``."""
    state: Dict[str, int] = {}
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return []


def test_no_import_cycles() -> None:
    assert _cycle(_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_commands_call_the_library_not_each_other() -> None:
    """A command module imports the library (lazily, in ``run``), never another command or the CLI;
    the library never imports a command, the CLI or the demo (``volseg.demo`` is the demo command's)."""
    bad = []
    for mod, path in MODULES.items():
        for target, line in _imports(path, top_level_only=False):
            is_command = mod.startswith("volseg.commands.") and mod != "volseg.commands._docgen"
            to_command = target.startswith("volseg.commands.") and target != "volseg.commands._options"
            if is_command and (to_command or target == "volseg.cli") and target != mod:
                bad.append(f"{mod}:{line} imports {target}")
            if not mod.startswith(("volseg.commands", "volseg.cli", "volseg.__main__")) and \
                    target.startswith(("volseg.commands", "volseg.cli", "volseg.demo")) and mod != target:
                bad.append(f"{mod}:{line} imports {target}")
    assert bad == []


@pytest.mark.slow
def test_every_module_imports_alone() -> None:
    """Each module in a fresh interpreter of its own (an import-order dependency fails here)."""
    code = ("import importlib, subprocess, sys\n"
            "bad = []\n"
            "for m in sys.argv[1:]:\n"
            "    r = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True, text=True)\n"
            "    if r.returncode:\n"
            "        bad.append(m + ': ' + (r.stderr.strip().splitlines() or ['?'])[-1])\n"
            "print('\\n'.join(bad))\n")
    mods = [m for m in MODULES if m != "volseg.__main__"]
    out = subprocess.run([sys.executable, "-c", code, *mods], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
