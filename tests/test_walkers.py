"""Compiled walkers for other Pythons than the CLI's: `memdiag build-walker`,
and `memdiag run` and `attach`, which find or build the walker for the
target's Python before the hook goes in, or say before the first snapshot
why the target will walk in pure Python and what to do.

The CLI here is memdiag "installed on this Python only": a copy of the
package with no compiled module but this interpreter's (the checkout may
hold in-place builds for other versions, which would hide the cache). Its
targets run another Python: the newest that memdiag/_native/compat.h
supports (3.15), and 3.12 for attach. The
two walkers are built once per session, into a cache of the session's own;
each test that changes a cache works on its own copy.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest

from conftest import ROOT, kill_pid
from hookutil import load, start  # noqa: F401
from needs import needs_root, tool_missing

from memdiag import walker_cache
from memdiag.cli.run import hook_env

MINE = "%d.%d" % sys.version_info[:2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
RUN_TARGET = os.path.join(ROOT, "tests", "programs", "run_target.py")
ATTACH_TARGET = os.path.join(ROOT, "tests", "programs", "attach_target.py")
NOBODY = 65534
DESCRIBE = ("import json, sys\n"
            "print('DESCRIBE ' + json.dumps(sys.modules['_memdiag_hook.hook'].describe()))\n")


# ------------------------------------------------------------ interpreters

def headers():
    """{version: its header} for the versions compat.h picks a header for
    (`#elif PY_VERSION_HEX < 0x03HH0000` then `#  include "py3NN.h"`: 3.NN up
    to 3.HH-1): the compiled walker builds for these.

    >>> headers()["3.15"]
    'py314.h'
    """
    with open(os.path.join(ROOT, "memdiag", "_native", "compat.h")) as f:
        pairs = re.findall(r'PY_VERSION_HEX < 0x03([0-9A-Fa-f]{2})0000\s*\n'
                           r'#\s*include "(py3(\d+)\.h)"', f.read())
    return {f"3.{minor}": header for upper, header, first in pairs
            for minor in range(int(first), int(upper, 16))}


def supported():
    """The versions the compiled walker builds for, oldest first."""
    return sorted(headers(), key=lambda v: int(v[2:]))


def find_python(version):
    p = subprocess.run([os.path.join(ROOT, "scripts", "find-python"), version],
                       capture_output=True, text=True)
    exe = p.stdout.strip()
    return exe if p.returncode == 0 and exe else None


def other_python(preferred):
    """(version, interpreter): the first of `preferred` that compat.h supports,
    that is not this interpreter's version, and that is here."""
    for v in preferred:
        if v != MINE and v in supported():
            exe = find_python(v)
            if exe:
                return v, exe
    tool_missing(f"no Python {' or '.join(v for v in preferred if v != MINE)} here "
                 f"(scripts/find-python finds none)")


def run_python():
    """The run tests' target: the newest supported Python but this one."""
    return other_python(sorted(supported(), key=lambda v: int(v[2:]), reverse=True))


def attach_python():
    """The attach tests' target: 3.12 first (the issue's case), then the others."""
    return other_python(["3.12", "3.13", "3.11", "3.15", "3.14"])


def need_injector(version):
    if int(version[2:]) < 14:
        from memdiag.attach import debugger
        if not debugger.candidates():
            tool_missing("no gdb or lldb here for Python 3.11-3.13 targets: "
                         "scripts/install-debugger installs one")


# ------------------------------------------------------------ the CLI copy

@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """A directory holding a copy of memdiag with no compiled module but this
    interpreter's: memdiag as installed on this Python only."""
    d = tmp_path_factory.mktemp("cli-site")

    def ignore(_, names):
        return [n for n in names if n == "__pycache__" or
                (n.endswith(".so") and not n.endswith(SUFFIX))]

    shutil.copytree(os.path.join(ROOT, "memdiag"), d / "memdiag", ignore=ignore)
    return str(d)


def cli_env(site, cache, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MEMDIAG_QUIET", "MEMDIAG_PURE_PYTHON", "MEMDIAG_WALKER_SAID")}
    env.update(PYTHONPATH=site, MEMDIAG_WALKER_CACHE=cache, MEMDIAG_PLAIN="1",
               PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def cli(site, *args, cache, timeout=900, **extra):
    """Run the copy's CLI: (exit code, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "memdiag.cli.main", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout,
                       env=cli_env(site, cache, **extra), cwd=site)
    return p.returncode, p.stdout, p.stderr


def cli_argv(*args):
    return [sys.executable, "-m", "memdiag.cli.main", *map(str, args)]


@pytest.fixture(scope="session")
def built(site, tmp_path_factory):
    """The session's cache, after `memdiag run` built the run target's walker
    (the result of that first run is kept for the test that reads it)."""
    cache = str(tmp_path_factory.mktemp("walkers") / "walkers")
    version, python = run_python()
    first = cli(site, "run", "--", python, "-c", "print('RAN')", cache=cache)
    return {"cache": cache, "version": version, "python": python, "first": first}


@pytest.fixture(scope="session")
def built_for_attach(site, built):
    """The attach target's walker, built with `memdiag build-walker` into the same cache."""
    version, python = attach_python()
    rc, out, err = cli(site, "build-walker", "--python", python, "--json", cache=built["cache"])
    return {"version": version, "python": python, "result": (rc, out, err)}


def entry_of(cache, version):
    tag = "cpython-3" + version[2:] + "-"
    found = [n for n in os.listdir(cache) if n.startswith(tag) and not n.endswith(".log")]
    assert len(found) == 1, os.listdir(cache)
    return os.path.join(cache, found[0])


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# ------------------------------------------------------------ memdiag run

def test_run_builds_a_missing_walker_once_and_says_so(site, built):
    rc, out, err = built["first"]
    v = built["version"]
    assert rc == 0 and "RAN" in out, (rc, out, err)
    building = [ln for ln in err.splitlines() if "building the compiled walker" in ln]
    assert len(building) == 1 and f"for Python {v} into {built['cache']}" in building[0], err
    assert "pure-Python" not in err, err
    # Once: the next run finds it.
    rc, out, err = cli(site, "run", "--", built["python"], "-c", "print('RAN')",
                       cache=built["cache"])
    assert rc == 0 and "RAN" in out and "building" not in err and "pure-Python" not in err, err
    # 0700 directories, the extension 0700 and its record 0600, all ours, nothing left over.
    cache, entry = built["cache"], entry_of(built["cache"], v)
    assert entry.endswith("-" + walker_cache.source_hash(os.path.join(site, "memdiag"))[:16])
    so = os.path.join(entry, f"_walker.{os.path.basename(entry).rsplit('-', 1)[0]}.so")
    info = os.path.join(entry, "build.json")
    assert sorted(os.listdir(entry)) == sorted([os.path.basename(so), "build.json"])
    assert [mode(p) for p in (cache, entry, so, info)] == [0o700, 0o700, 0o700, 0o600]
    assert {os.lstat(p).st_uid for p in (cache, entry, so, info)} == {os.geteuid()}
    assert not [n for n in os.listdir(cache) if n.startswith(".")]
    with open(info) as f:
        record = json.load(f)
    assert record["python"].startswith(v + ".")
    assert record["sources"] == walker_cache.source_hash(os.path.join(site, "memdiag"))


def test_run_of_another_python_snapshots_with_the_compiled_walker(site, built, start, tmp_path):
    """The issue's case: memdiag on this Python, `memdiag run -- pythonX.Y app.py`."""
    v, cache = built["version"], built["cache"]
    p = start(argv=cli_argv("run", "--dir", tmp_path / "snaps", "--", built["python"],
                            RUN_TARGET),
              env=cli_env(site, cache), cwd=str(tmp_path))
    assert p.ready()["python"] == v
    rc, out, err = cli(site, "snapshot", p.pid, "--json", cache=cache)
    assert rc == 0, (rc, out, err, p.stderr())
    r = json.loads(out)
    meta = load(r["path"]).meta
    assert meta["python"].startswith(v + ".")
    assert (meta["walker"], meta["walker_reason"]) == ("c", None), meta.get("walker_reason")
    assert (r["walker"], r["walker_reason"]) == ("c", None)
    assert "pure-Python" not in p.stderr() + err, p.stderr() + err


@pytest.mark.parametrize("how", ["CC=false", "no compiler on PATH"])
def test_run_without_a_compiler_says_why_before_the_first_snapshot(site, built, start,
                                                                    tmp_path, how):
    v, python = built["version"], built["python"]
    cache = str(tmp_path / "walkers")
    extra = {"CC": "false"} if how == "CC=false" else {"PATH": str(tmp_path / "no-bin")}
    p = start(argv=cli_argv("run", "--dir", tmp_path / "snaps", "--", python, RUN_TARGET),
              env=dict(cli_env(site, cache, **extra), MEMDIAG_QUIET="1"), cwd=str(tmp_path))
    p.ready()
    # Before any snapshot: one line, with why and what to do.
    said = [ln for ln in p.stderr().splitlines() if "pure-Python walker" in ln]
    assert len(said) == 1 and said[0].startswith("memdiag: warning: "), p.stderr()
    why = ("fails even on an empty file that includes Python.h" if how == "CC=false"
           else "no C compiler")
    assert why in said[0] and f"Python {v}" in said[0], said[0]
    assert f"memdiag build-walker --python {python}" in said[0], said[0]
    rc, out, err = cli(site, "snapshot", p.pid, cache=cache)
    assert rc == 0, (rc, out, err)
    assert f"memdiag: pid {p.pid} uses the pure-Python walker" in err, err
    meta = load(out.strip()).meta
    assert meta["walker"] == "python"
    assert f"no compiled walker for Python {v}" in meta["walker_reason"]
    assert "memdiag build-walker --python" in meta["walker_reason"]


def test_a_program_whose_python_run_cannot_tell_says_so_when_it_starts(site, tmp_path):
    """`memdiag run -- sh -c 'python ...'`: the CLI cannot tell the Python, so
    the hook says, when the program starts, that it walks in pure Python."""
    version, python = run_python()
    cache = str(tmp_path / "walkers")
    rc, out, err = cli(site, "run", "--", "sh", "-c", f"exec {python} -c 'print(1)'",
                       cache=cache)
    assert rc == 0 and out.strip() == "1", (rc, out, err)
    said = [ln for ln in err.splitlines() if "pure-Python walker" in ln]
    assert len(said) == 1 and f"no compiled walker for Python {version}" in said[0], err
    assert "memdiag build-walker --python" in said[0]


# ------------------------------------------------------------ the cache's checks

def tamper(root, entry, case, elsewhere):
    """Make the copied cache unsafe (or stale) in the way `case` names."""
    so = next(os.path.join(entry, n) for n in os.listdir(entry) if n.endswith(".so"))
    if case == "world-writable entry":
        os.chmod(entry, 0o777)
    elif case == "group-writable extension":
        os.chmod(so, 0o720)
    elif case == "writable cache directory":
        os.chmod(root, 0o757)
    elif case == "symlinked entry":
        shutil.move(entry, elsewhere)
        os.symlink(elsewhere, entry)
    elif case == "another owner":
        needs_root("chowns the cached walker to uid 65534")
        for path in (entry, so, os.path.join(entry, "build.json")):
            os.chown(path, NOBODY, NOBODY)
    elif case == "stale sources":
        info = os.path.join(entry, "build.json")
        with open(info) as f:
            record = json.load(f)
        record["sources"] = "0" * 64          # built from another memdiag's sources
        with open(info, "w") as f:
            json.dump(record, f)


REFUSALS = {
    "untouched": None,
    "world-writable entry": "is writable by its group and others (mode 0777)",
    "group-writable extension": "is writable by its group (mode 0720)",
    "writable cache directory": "is writable by others (mode 0757)",
    "symlinked entry": "is a symlink",
    "another owner": f"is owned by uid {NOBODY}, not by uid {os.geteuid()}",
    "stale sources": "was built from other sources than this memdiag's",
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_the_hook_refuses_an_unsafe_or_stale_cached_walker(site, built, tmp_path, case):
    """The target loads native code from the cache, so its hook checks the
    entry itself: the program starts, with the pure-Python walker and a line
    that says why. Untouched, the same copy loads (found through
    $XDG_CACHE_HOME, as memdiag.install() in the program finds it)."""
    v, python = built["version"], built["python"]
    root = tmp_path / "xdg" / "memdiag" / "walkers"
    shutil.copytree(built["cache"], root)
    entry = entry_of(str(root), v)
    tamper(str(root), entry, case, str(tmp_path / "elsewhere"))
    env = hook_env({k: v for k, v in os.environ.items() if not k.startswith("MEMDIAG_")},
                   str(tmp_path / "snaps"))
    env.update(PYTHONPATH=os.path.join(site, "memdiag", "_boot"),
               XDG_CACHE_HOME=str(tmp_path / "xdg"), MEMDIAG_PKG_DIR=os.path.join(site, "memdiag"))
    del env["MEMDIAG_WALKER_CACHE"]       # the hook's default: $XDG_CACHE_HOME/memdiag/walkers
    p = subprocess.run([python, "-c", DESCRIBE], capture_output=True, text=True, env=env,
                       timeout=120, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout.split("DESCRIBE ", 1)[1])
    if REFUSALS[case] is None:
        assert (d["walker"], d["walker_reason"]) == ("c", None), d
        assert d["walker_path"].startswith(entry + os.sep)
        assert "pure-Python" not in p.stderr
        return
    assert d["walker"] == "python" and REFUSALS[case] in d["walker_reason"], d
    assert "memdiag build-walker --force --python" in d["walker_reason"]
    said = [ln for ln in p.stderr.splitlines() if "pure-Python walker" in ln]
    assert len(said) == 1 and REFUSALS[case] in said[0], p.stderr
    assert "Traceback" not in p.stderr
    # The CLI sees it too, says so before the program starts, and builds nothing over it.
    rc, out, err = cli(site, "run", "--", python, "-c", "print('RAN')", cache=str(root))
    assert rc == 0 and "RAN" in out, (rc, out, err)
    warned = [ln for ln in err.splitlines() if ln.startswith("memdiag: warning: ")]
    assert len(warned) == 1 and REFUSALS[case] in warned[0], err
    assert "building" not in err
    assert walker_cache.available_walkers(os.path.join(site, "memdiag"), str(root)) == \
        [(MINE, os.path.join(site, "memdiag", "_walker" + SUFFIX))]


def test_available_walkers_lists_the_install_s_and_the_cache_s(site, built):
    pkg = os.path.join(site, "memdiag")
    v = built["version"]
    entry = entry_of(built["cache"], v)
    found = dict(walker_cache.available_walkers(pkg, built["cache"]))
    assert found[MINE] == os.path.join(pkg, "_walker" + SUFFIX)
    assert os.path.dirname(found[v]) == entry


# ------------------------------------------------------------ memdiag build-walker

def test_build_walker_builds_then_finds_it(site, built, built_for_attach):
    rc, out, err = built_for_attach["result"]
    assert rc == 0, (rc, out, err)
    r = json.loads(out)
    v = built_for_attach["version"]
    assert r["state"] == "built" and r["python"].startswith(v + ".")
    assert os.path.dirname(r["path"]) == entry_of(built["cache"], v)
    assert len([ln for ln in err.splitlines() if "building the compiled walker" in ln]) == 1
    rc, out, err = cli(site, "build-walker", "--python", built_for_attach["python"], "--json",
                       cache=built["cache"])
    again = json.loads(out)
    assert rc == 0 and (again["state"], again["path"]) == ("cache", r["path"])
    assert "building" not in err


def test_build_walker_refuses_what_is_not_a_python(site, tmp_path):
    cache = str(tmp_path / "walkers")
    for python, why in ((str(tmp_path / "nowhere" / "python3"), "no such interpreter"),
                        ("/bin/sh", "is not a Python 3 interpreter")):
        rc, out, err = cli(site, "build-walker", "--python", python, cache=cache)
        assert rc == 2 and out == "", (rc, out, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("memdiag: error: ") and why in lines[0], err


def test_build_walker_says_when_the_sources_do_not_support_that_python(site, built, tmp_path):
    """What a Python that compat.h does not know gets (made here by taking
    the built version's header out): the #error's text, and that a newer
    memdiag may support it."""
    v, python = built["version"], built["python"]
    other = tmp_path / "site"
    shutil.copytree(site, other)
    compat = other / "memdiag" / "_native" / "compat.h"
    text = compat.read_text()
    header = f'#  include "{headers()[v]}"'
    assert header in text
    compat.write_text(text.replace(header, f'#  error "memdiag._walker does not know {v} here"'))
    cache = str(tmp_path / "walkers")
    rc, out, err = cli(str(other), "build-walker", "--python", python, cache=cache)
    assert rc == 4, (rc, out, err)
    building, line = err.strip().splitlines()      # the compiler ran: it said so first
    assert "building the compiled walker" in building and line.startswith("memdiag: error: ")
    assert f"does not build for Python {v} (module.c: memdiag._walker does not know {v} here;" \
        in line and "a newer memdiag may support it" in line, line
    log = re.search(r"; its output: (\S+)\)", line).group(1)
    assert os.path.isfile(log) and mode(log) == 0o600
    assert [n for n in os.listdir(cache) if not n.endswith(".log")] == []


# ------------------------------------------------------------ memdiag attach

def start_plain(python, tmp_path):
    """attach_target.py on `python`, without memdiag anywhere in its environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MEMDIAG_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    out = open(tmp_path / "target-out.txt", "w")
    err = open(tmp_path / "target-err.txt", "w")
    proc = subprocess.Popen([python, ATTACH_TARGET], env=env, stdout=out, stderr=err,
                            stdin=subprocess.PIPE, cwd=str(tmp_path))
    out.close()
    err.close()
    return proc


def wait_target_ready(proc, tmp_path):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "READY" in (tmp_path / "target-out.txt").read_text():
            return
        assert proc.poll() is None, (tmp_path / "target-err.txt").read_text()
        time.sleep(0.02)
    raise AssertionError("the target did not print READY")


@pytest.fixture
def plain_target(tmp_path):
    procs = []

    def _start(python):
        proc = start_plain(python, tmp_path)
        procs.append(proc)
        wait_target_ready(proc, tmp_path)
        return proc

    yield _start
    for proc in procs:
        kill_pid(proc.pid)
        proc.stdin.close()


def test_attach_to_another_python_snapshots_with_the_compiled_walker(site, built,
                                                                     built_for_attach,
                                                                     plain_target):
    v, python = built_for_attach["version"], built_for_attach["python"]
    need_injector(v)
    proc = plain_target(python)
    rc, out, err = cli(site, "attach", proc.pid, "--snapshot", "--json", cache=built["cache"])
    assert rc == 0, (rc, out, err)
    r = json.loads(out)
    assert r["python"].startswith(v + ".") and r["state"] == "installed"
    assert (r["walker"], r["walker_reason"]) == ("compiled", None), r
    meta = load(r["snapshot"]).meta
    assert (meta["walker"], meta["walker_reason"]) == ("c", None)
    assert "building" not in err        # built by the session's build-walker


def test_attach_without_a_compiler_says_why(site, plain_target, tmp_path):
    v, python = attach_python()
    need_injector(v)
    proc = plain_target(python)
    rc, out, err = cli(site, "attach", proc.pid, cache=str(tmp_path / "walkers"), CC="false")
    assert rc == 0, (rc, out, err)
    line = next(ln for ln in out.splitlines() if ln.startswith("walker: "))
    assert line.startswith("walker: pure-Python"), out
    assert "fails even on an empty file that includes Python.h" in line, line
    assert f"Python {v}" in line
    assert "memdiag build-walker --python" in line
