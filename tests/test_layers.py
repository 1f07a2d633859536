"""Imports run one way. Every module under memdiag/ is parsed (ast, nothing is
imported) and each of its imports, at module level or inside a function,
is checked against the table below:

    cli -> render -> analysis -> model -> snapfile

each layer importing only layers to its right; and the hook side (what runs
inside the target) imports only the standard library and itself: never
numpy, typer or rich, never cli, render, analysis or model. No import circle
between memdiag's modules, however lazy the import.

A new module is one line in LAYER_OF (a package line covers its modules).
"""

from __future__ import annotations

import ast
import os
import sys

import pytest

import memdiag

PKG_DIR = os.path.dirname(os.path.abspath(memdiag.__file__))

# Which layer each module is in: the longest matching prefix wins.
LAYER_OF = {
    "memdiag.cli": "cli",
    "memdiag.render": "render",
    "memdiag.analysis": "analysis",
    "memdiag._fastmatch": "analysis",       # C: address matching for analysis.match
    "memdiag._dominators": "analysis",      # C: the dominator tree (retained sizes)
    "memdiag.model": "model",
    "memdiag.snapfile": "snapfile",
    # the hook side: runs inside the target
    "memdiag.hook": "hook",
    "memdiag.hook_capture": "hook",         # hook.py's parts, one concern each
    "memdiag.hook_fork": "hook",
    "memdiag.hook_inline": "hook",
    "memdiag.hook_limits": "hook",
    "memdiag.hook_publish": "hook",
    "memdiag.hook_registry": "hook",
    "memdiag.hook_rss": "hook",
    "memdiag.hook_signal": "hook",
    "memdiag.hook_state": "hook",
    "memdiag.hook_walk": "hook",
    "memdiag.protocol": "hook",
    "memdiag.walker": "hook",
    "memdiag.walker_reads": "hook",         # the pure-Python walker's reads by address (W8)
    "memdiag.walker_cache": "hook",         # compiled walkers for other Pythons: cache, checks
    "memdiag._walker": "hook",              # C: the compiled walker
    "memdiag.walker_build": "build",        # compiling the walker for another Python (CLI side)
    "memdiag.attach": "attach",             # attach: injectors (CLI side) and the payload (target side), stdlib only
    "memdiag._boot": "boot",                # sitecustomize: loads the hook by file path
    "memdiag": "package",                   # memdiag/__init__.py only: the public facade
}

HOOK_SIDE = {"hook", "snapfile"}

# What each layer may import: memdiag layers, and packages outside the stdlib.
MAY_IMPORT = {
    "cli": ({"cli", "render", "analysis", "model", "snapfile", "hook", "attach", "build"},
            {"typer", "click", "rich", "numpy"}),
    "render": ({"render", "analysis", "model", "snapfile"}, {"rich"}),
    "analysis": ({"analysis", "model", "snapfile"}, {"numpy"}),
    "model": ({"model", "snapfile"}, {"numpy"}),
    "snapfile": ({"snapfile"}, set()),
    "hook": (HOOK_SIDE, set()),
    "attach": (HOOK_SIDE | {"attach"}, set()),
    "build": (HOOK_SIDE | {"build"}, set()),
    "boot": (set(), {"sitecustomize"}),   # chains to the program's own sitecustomize
    # install()/dump() load the hook, load() the model: lazily, inside functions
    "package": ({"hook", "model"}, set()),
}

STDLIB = set(sys.stdlib_module_names)


def layer_of(module):
    """The layer of a module, or None if LAYER_OF does not place it."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        layer = LAYER_OF.get(".".join(parts[:n]))
        if layer is not None:
            return layer
    return LAYER_OF.get(module)          # "memdiag" itself: exact only


def source_modules():
    """{module name: file} for every .py file under memdiag/."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(PKG_DIR):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                parts = ["memdiag", *os.path.relpath(path, PKG_DIR)[:-3].split(os.sep)]
                if parts[-1] == "__init__":
                    parts.pop()
                out[".".join(parts)] = path
    return out


MODULES = source_modules()


def is_package(module):
    return MODULES.get(module, "").endswith("__init__.py")


def parse(module):
    with open(MODULES[module], encoding="utf-8") as f:
        return ast.parse(f.read(), MODULES[module])


def top_level_names(module):
    """Names a module defines or imports at its top level."""
    names = set()
    for node in parse(module).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def imports_of(module):
    """[(line, imported name)] of one module: memdiag modules fully resolved
    (from .x import y is memdiag...x.y when y is a module, else memdiag...x),
    others by their top-level name."""
    tree = parse(module)
    package = module if is_package(module) else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            if base.split(".")[0] != "memdiag":
                out.append((node.lineno, base))
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # A name from a package that is not one of its own is a
                # submodule (a C extension has no .py file).
                is_module = sub in MODULES or sub in LAYER_OF or (
                    is_package(base) and alias.name not in top_level_names(base))
                out.append((node.lineno, sub if is_module else base))
    return out


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if layer_of(m) is None]
    assert not missing, f"add these to LAYER_OF in {__file__}: {missing}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module):
    layer = layer_of(module)
    ours, theirs = MAY_IMPORT[layer]
    bad = []
    for line, name in imports_of(module):
        top = name.split(".")[0]
        if top == "memdiag":
            target = layer_of(name)
            if target is None:
                bad.append(f"line {line}: {name} is not in LAYER_OF; add it")
            elif target not in ours:
                bad.append(f"line {line}: {name} ({target}) from {layer}")
        elif top not in STDLIB and top not in theirs:
            bad.append(f"line {line}: {name} (not stdlib) from {layer}")
    assert not bad, f"{module}: " + "; ".join(bad)


def import_graph():
    return {m: {name for _, name in imports_of(m) if name in MODULES and name != m}
            for m in MODULES}


def circles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_circle_finder_finds_circles():
    """The check above can fail: a circle through a lazy import is one."""
    graph = import_graph()
    # As it was: Snapshot.path_of imported analysis.paths, which imported model.
    graph["memdiag.model"] = graph["memdiag.model"] | {"memdiag.analysis.paths"}
    graph["memdiag.analysis.paths"] = graph["memdiag.analysis.paths"] | {"memdiag.model"}
    found = circles(graph)
    assert ["memdiag.analysis.paths", "memdiag.model"] in found, found
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_upper_layers_name_no_snapfile_column():
    """analysis, render and cli read columns through Snapshot's named accessors,
    never by snapfile column id (COL_*)."""
    bad = []
    for module, path in MODULES.items():
        if layer_of(module) not in ("analysis", "render", "cli"):
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            name = (node.attr if isinstance(node, ast.Attribute)
                    else node.id if isinstance(node, ast.Name) else
                    " ".join(a.name for a in node.names) if isinstance(node, ast.ImportFrom)
                    else "")
            if any(word.startswith("COL_") for word in name.split()):
                bad.append(f"{module} line {node.lineno}: {name}")
    assert not bad, bad


def test_the_check_reads_imports_as_written():
    """imports_of resolves what the modules really say (a check that read
    nothing would pass everything)."""
    assert "memdiag.snapfile" in {n for _, n in imports_of("memdiag.model")}
    assert "memdiag._fastmatch" in {n for _, n in imports_of("memdiag.analysis.match")}
    names = {n for _, n in imports_of("memdiag.cli.main")}
    assert {"typer", "memdiag.cli.errors", "memdiag.cli.diff"} <= names   # diff: lazy, in a function
    assert "memdiag.analysis.paths" in {n for _, n in imports_of("memdiag.analysis.top")}


def test_setup_py_loads_walker_cache_by_path():
    """setup.py loads memdiag/walker_cache.py by path, outside the package,
    for the walker's source list and flags: its module-level imports must be
    stdlib only (a top-level `from . import protocol` broke every install)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "memdiag_walker_cache_by_path", os.path.join(PKG_DIR, "walker_cache.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "module.c" in module.WALKER_SOURCES
    assert "-std=c11" in module.WALKER_CFLAGS
