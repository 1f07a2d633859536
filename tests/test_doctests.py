"""The examples in memdiag's docstrings run, and pass.

Every module under memdiag/ that has an example is collected, one test each,
except memdiag/_boot/sitecustomize.py: importing it installs the hook in the
importing process, and only an interpreter that `memdiag run` starts may ever
run it. Examples that load "a.snap" and "b.snap" run in a directory holding
two real snapshot files of the captcha leak in miniature (snapbuild.leak_heap):
ccap.timer.timer['reg_ary'] holds 200 ccap.cap.CAP objects, then 700. An
example that needs a running target stays `# doctest: +SKIP`, with the reason
beside it.
"""

from __future__ import annotations

import doctest
import importlib
import os
import sys

import pytest

from snapbuild import leak_heap

import memdiag

PKG_DIR = os.path.dirname(os.path.abspath(memdiag.__file__))

# Files that are never imported in the test process, and why.
NEVER_IMPORTED = {
    os.path.join("_boot", "sitecustomize.py"):
        "installs the hook when imported; run only at interpreter startup by `memdiag run`",
}


def module_files():
    """{module name: path relative to memdiag/} for every .py file under memdiag/."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(PKG_DIR):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), PKG_DIR)
            parts = ["memdiag", *rel[:-3].split(os.sep)]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = rel
    return out


def with_examples():
    """Module names whose source holds a docstring example, never-imported files left out."""
    names = []
    for name, rel in module_files().items():
        if rel in NEVER_IMPORTED:
            continue
        with open(os.path.join(PKG_DIR, rel), encoding="utf-8") as f:
            if ">>>" in f.read():
                names.append(name)
    return names


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("doctest-snaps")
    mib = 1 << 20
    leak_heap(200, 10, 5).write(str(d / "a.snap"), pid=4242, time=1000.0, seq=1,
                                rss=40 * mib)
    leak_heap(700, 10, 5).write(str(d / "b.snap"), pid=4242, time=1060.0, seq=2,
                                rss=41 * mib)
    return d


@pytest.mark.parametrize("name", with_examples())
def test_docstring_examples_pass(name, snapshot_dir, monkeypatch):
    monkeypatch.chdir(snapshot_dir)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = []
    tests = [t for t in finder.find(module) if t.examples]
    for t in tests:
        runner.run(t, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
    assert result.attempted > 0, f"{name}: every example is +SKIP; nothing ran"


def test_every_module_with_examples_is_collected_and_sitecustomize_never_imported():
    files = module_files()
    collected = set(with_examples())
    for rel in NEVER_IMPORTED:
        assert rel in files.values(), f"{rel} is gone: drop it from NEVER_IMPORTED"
    assert "memdiag.model" in collected and "memdiag.snapfile" in collected
    assert "memdiag._boot.sitecustomize" not in collected
    # Whatever ran before in this process, memdiag's sitecustomize was not imported.
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        assert not path.endswith(os.path.join("memdiag", "_boot", "sitecustomize.py")), module
