"""The house rules of the layout, checked on the source: stages meet only in files.

Every import in probekit/, extract/, classify/ and analysis/ (module level and inside
functions) is an arrow between two modules of ``probekit``. The allowed arrows:

    probekit.core.*              -> probekit.core.*   (and one lazy arrow: the config checks the
                                                      classify grids against classify's registry)
    probekit.stages.extract.*    -> probekit.core.*, probekit.stages.extract.*
    probekit.stages.classify.*   -> probekit.core.*, probekit.stages.classify.*
    probekit.stages.analysis.*   -> probekit.core.*, probekit.stages.analysis.*, probekit.stages.classify.*
    probekit (API, CLI, run)     -> anything

No stage imports a later one (extract -> classify -> analysis), nothing imports the API
layer, and the graph has no circles.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

FOLDERS = {"probekit": "probekit", "extract": "probekit.stages.extract", "classify": "probekit.stages.classify",
           "analysis": "probekit.stages.analysis"}
ALLOWED = {
    "probekit.core": ("probekit.core",),
    "probekit.stages.extract": ("probekit.core", "probekit.stages.extract"),
    "probekit.stages.classify": ("probekit.core", "probekit.stages.classify"),
    "probekit.stages.analysis": ("probekit.core", "probekit.stages.analysis", "probekit.stages.classify"),
}
# The one arrow from the core to a stage: model grids are declared once, in classify's registry,
# and the config checks them when it loads (lazily, inside the check; the registry imports nothing heavy).
EXCEPTIONS = {("probekit.core.sections_classify", "probekit.stages.classify.registry")}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def _arrows(modules: dict[str, Path]) -> set[tuple[str, str]]:
    """(importer, imported) for every import of a probekit module, resolved to a module of the tree."""
    arrows = set()
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("probekit") and target != name and target != "probekit":
                    arrows.add((name, target))
    return arrows


def _layer(module: str) -> str | None:
    for prefix in ALLOWED:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return None  # the API layer: probekit, probekit.cli, probekit.run, ...


def test_the_module_list_covers_the_stages():
    modules = _modules()
    for expected in ("probekit.core.config", "probekit.core.cache", "probekit.stages.extract.encode",
                     "probekit.stages.classify.train", "probekit.stages.analysis.report", "probekit.cli"):
        assert expected in modules


def test_imports_follow_the_allowed_arrows():
    bad = []
    for src, dst in sorted(_arrows(_modules())):
        layer, target_layer = _layer(src), _layer(dst)
        if layer is None or (src, dst) in EXCEPTIONS:
            continue
        if target_layer is None:
            bad.append(f"{src} -> {dst} (the API layer is imported by nothing below it)")
        elif target_layer not in ALLOWED[layer]:
            bad.append(f"{src} -> {dst}")
    assert not bad, "imports outside the allowed arrows:\n" + "\n".join(bad)


def test_no_import_circles():
    graph: dict[str, set[str]] = {}
    for src, dst in _arrows(_modules()):
        graph.setdefault(src, set()).add(dst)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_import_probekit_beside_files_with_the_stage_names(tmp_path):
    """A notebook folder holding its own analysis.py, classify.py and extract.py shadows nothing of probekit."""
    for name in ("analysis", "classify", "extract"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('the user file was imported instead of probekit')\n")
    code = ("import sys, probekit, probekit.cli, probekit.stages.classify.train, probekit.stages.analysis.report; "
            "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; "
            "assert not heavy, heavy; print('OK')")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr[-2000:]


def test_no_generic_top_level_names_are_installed(tmp_path):
    code = ("import importlib.util as u; "
            "print([n for n in ('extract', 'classify', 'analysis') if u.find_spec(n) is not None])")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
