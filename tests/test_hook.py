"""The hook's promises to the target (issue 2, "Not harming the target"),
checked on real processes with real signals and real snapshot files.

Tests that take a `walker` parameter run once with the pure-Python walker
(MEMDIAG_PURE_PYTHON=1) and once with the compiled one (skipped when it is
not built for this interpreter); tests about one walker say so in their name.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import ROOT, memdiag, memdiag_json
from memdiag.analysis.paths import retainer_path
from hookutil import (PROGRAMS, expected_walker, hook_lines, load, run_program, snap_files,
                      start, wait_file, walker_env)  # noqa: F401 (start is a fixture)

LOOP = os.path.join(PROGRAMS, "hooked_loop.py")
MODES = ["fork", "inline"]
WALKERS = ["python", "compiled"]
PY = sys.version_info[:2]


def loop(start, tmp_path, mode, objects=0, env=None):
    d = tmp_path / "snaps"
    p = start(script=LOOP, args=(d, mode, objects), env=env)
    info = p.ready()
    p.dir = str(d)
    p.walker = info["walker"]
    return p


# ------------------------------------------------------------ taking snapshots

@pytest.mark.parametrize("mode", MODES)
def test_signal_writes_numbered_snapshot_and_target_keeps_running(start, tmp_path, mode):
    p = loop(start, tmp_path, mode, objects=30000)
    p.kill(signal.SIGUSR2)
    first = wait_file(os.path.join(p.dir, f"memdiag-{p.pid}-1.snap"), proc=p)
    s = load(first)
    assert (s.meta["pid"], s.meta["seq"], s.meta["mode"]) == (p.pid, 1, mode)
    assert s.meta["walker"] == p.walker
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    assert s.n_objects > 30000
    n = p.count()
    p.wait_count_above(n)                      # still counting after the snapshot

    p.kill(signal.SIGUSR2)
    second = wait_file(os.path.join(p.dir, f"memdiag-{p.pid}-2.snap"), proc=p)
    assert load(second).meta["seq"] == 2
    time.sleep(0.2)
    assert snap_files(p.dir, p.pid) == [f"memdiag-{p.pid}-1.snap", f"memdiag-{p.pid}-2.snap"]
    assert not [n for n in os.listdir(p.dir) if n.endswith(".tmp")]
    assert p.alive() and not p.lines("EXC")
    assert hook_lines(p.stderr()) == []


def test_fork_mode_pause_is_small_and_recorded(start, tmp_path):
    # 150k objects: the walk takes a while, the fork only copies page tables.
    p = loop(start, tmp_path, "fork", objects=150000)
    p.kill(signal.SIGUSR2)
    meta = load(wait_file(os.path.join(p.dir, f"memdiag-{p.pid}-1.snap"), proc=p)).meta
    assert meta["mode"] == "fork"
    pause, walk = meta["pause_seconds"], meta["walk_seconds"]
    assert pause is not None and 0 < pause < 0.1, meta
    if p.walker == "python":
        assert pause < walk / 5, meta      # the walk did not happen in the target


@pytest.mark.parametrize("mode", MODES)
def test_snapshot_json_reports_the_walk_and_pause_of_the_snapshot(start, tmp_path, mode):
    """Issue 8: `seconds` was the CLI's polling wait; the walk and the pause
    come from the snapshot's metadata, the wait has its own name."""
    p = loop(start, tmp_path, mode, objects=30000)
    r = memdiag_json("snapshot", p.pid, "--timeout", 60)
    meta = load(r["path"]).meta
    assert sorted(r) == ["bytes", "path", "pause_seconds", "pid", "wait_seconds",
                         "walk_seconds", "walker", "walker_reason"], r
    assert (r["walker"], r["walker_reason"]) == (meta["walker"], meta["walker_reason"])
    assert (r["pid"], r["bytes"]) == (p.pid, os.path.getsize(r["path"]))
    assert r["walk_seconds"] == meta["walk_seconds"] > 0
    assert r["pause_seconds"] == meta["pause_seconds"]
    if mode == "fork":
        assert 0 < r["pause_seconds"] < r["wait_seconds"]
    else:
        assert r["pause_seconds"] is None      # in-process: the walk is the pause
    assert r["walk_seconds"] <= r["wait_seconds"]


DUMP = """
    import json, os, sys, time
    import memdiag
    path, mode = sys.argv[1], sys.argv[2]
    keep = [str(i) for i in range(1000)]
    returned = memdiag.dump(path, mode=mode)
    st = os.stat(path)                      # must be complete right now
    try:
        memdiag.dump(path, mode=mode)
        again = "overwrote"
    except Exception as e:
        again = f"{type(e).__name__}: {e}"
    print("RESULT " + json.dumps({"returned": returned, "size": st.st_size,
                                  "mode": oct(st.st_mode & 0o777), "again": again,
                                  "listing": sorted(os.listdir(os.path.dirname(path)))}))
"""


@pytest.mark.parametrize("mode", MODES)
def test_dump_writes_the_file_before_it_returns(tmp_path, mode):
    target = tmp_path / "out" / "now.snap"
    os.makedirs(target.parent)
    r = run_program(DUMP, target, mode)
    assert r["returned"] == str(target)
    assert r["size"] == os.path.getsize(target) and r["mode"] == "0o600"
    assert r["listing"] == ["now.snap"]           # no temp file left behind
    # The second dump refuses to overwrite (in fork mode the child says why on stderr).
    assert r["again"].startswith("HookError")
    assert "will not overwrite" in r["again"] + r["_stderr"]
    s = load(target)
    assert s.meta["mode"] == mode and s.meta["seq"] == 1
    assert len(s.find_type("str")) > 1000


# ------------------------------------------------------ the hook stays invisible

OWN = """
    import gc, json, os, sys, types
    mode = sys.argv[1]
    if "_memdiag_hook.hook" in sys.modules:      # started by `memdiag run`
        hook = sys.modules["_memdiag_hook.hook"]
    else:
        import memdiag
        memdiag.install(dir=sys.argv[2])
        from memdiag import hook
    gc.disable()      # leftovers of one snapshot would stay for the next to see

    def ours(name):
        return isinstance(name, str) and (name == "memdiag" or name.startswith(("memdiag.", "_memdiag")))

    class Marker:
        pass

    def main():
        keep = Marker()
        first = hook.dump(mode=mode)
        # What the hook left behind in the target: frames of its own code.
        left = [o for o in gc.get_objects() if isinstance(o, types.FrameType)
                and os.path.dirname(o.f_code.co_filename) == os.path.dirname(hook.__file__)]
        own = set()
        for name, mod in list(sys.modules.items()):
            if ours(name):
                own.update((id(mod), id(mod.__dict__)))
        for o in gc.get_objects():
            if isinstance(o, (types.FunctionType, type)) and ours(getattr(o, "__module__", None)):
                own.add(id(o))
                if isinstance(o, types.FunctionType):
                    own.add(id(o.__code__))
            elif ours(type(o).__module__):
                own.add(id(o))          # instances of memdiag's classes (_State, ...)
        o = None    # the loop variable would be this program's own reference to a hook object
        own.update(id(f) for f in left)
        second = hook.dump(mode=mode)
        print("RESULT " + json.dumps({"snaps": [first, second], "own": sorted(own),
                                      "left": [repr(f) for f in left]}))
    main()
"""


def check_invisible(r):
    own = set(r["own"])
    assert len(own) > 100                  # the check below has something to find
    assert r["left"] == []                 # the hook left none of its frames behind
    for path in r["snaps"]:
        s = load(path)
        roots = s.roots_by_object()
        modules = [d for k, d, _ in roots.values() if k == 1]
        assert "__main__" in modules and "os" in modules
        assert not [m for m in modules if m.startswith(("memdiag", "_memdiag"))]
        assert not [t for t in s.type_names if t.startswith(("memdiag.", "_memdiag"))]
        seen = own.intersection(s.addr.tolist())
        assert not seen, f"{len(seen)} of the hook's objects are in {path}"
        assert len(s.find_type("Marker")) == 1


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_hook_objects_never_in_snapshot(tmp_path, mode, walker):
    """WALK.md W9.1-W9.3: none of the hook's objects is in its snapshots."""
    r = run_program(OWN, mode, tmp_path / "snaps", env=walker_env(walker), tmp_path=tmp_path)
    check_invisible(r)


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_hook_loaded_by_run_never_in_snapshot(tmp_path, mode, walker):
    """`memdiag run` loads the hook as _memdiag_hook: that name must not show
    either (WALK.md W9.1)."""
    from memdiag.cli.run import hook_env
    env = hook_env(walker_env(walker), str(tmp_path / "snaps"), "USR2", 0, False, mode)
    r = run_program(OWN, mode, tmp_path / "unused", env=env, tmp_path=tmp_path)
    check_invisible(r)


# ---------------------------------------------- the hook imports only the stdlib

IMPORTS = """
    import json, os, sys
    if sys.argv[1] == "baseline":            # what the interpreter starts with
        print("RESULT " + json.dumps({"modules": sorted(sys.modules)}))
        sys.exit(0)
    before = set(sys.modules)
    if "_memdiag_hook.hook" in sys.modules:  # started by `memdiag run`: its boot counts
        hook = sys.modules["_memdiag_hook.hook"]
    else:
        import memdiag
        memdiag.install(dir=sys.argv[1], rss_limit="64G")
        from memdiag import hook
    hook.dump(mode="fork")
    hook.dump(mode="inline")
    boot = getattr(sys.modules.get("sitecustomize"), "__file__", None)
    print("RESULT " + json.dumps({"modules": sorted(sys.modules), "before": sorted(before),
                                  "stdlib": sorted(sys.stdlib_module_names), "boot": boot}))
"""

# memdiag's modules that run in the target: the hook's, the protocol, the
# file format and the two walkers (the pure one with its reads by address).
HOOK_SIDE = {"hook", "hook_capture", "hook_fork", "hook_inline", "hook_limits", "hook_publish",
             "hook_registry", "hook_rss", "hook_signal", "hook_state", "hook_walk",
             "protocol", "snapfile", "walker", "walker_reads", "_walker", "walker_cache"}


@pytest.mark.parametrize("how", ["install", "run"])
@pytest.mark.parametrize("walker", WALKERS)
def test_installing_the_hook_imports_only_the_standard_library(tmp_path, walker, how):
    """Installing the hook (with the RSS watcher) and taking a snapshot each
    way imports the stdlib and memdiag's hook-side modules, never memdiag's
    analysis side or its dependencies (numpy, typer, rich)."""
    env = walker_env(walker)
    before = None
    if how == "run":
        before = run_program(IMPORTS, "baseline", env=env, tmp_path=tmp_path)["modules"]
        from memdiag.cli.run import hook_env
        env = hook_env(env, str(tmp_path / "snaps"), "USR2", 0, False, "auto", "64G")
    r = run_program(IMPORTS, tmp_path / "snaps", env=env, tmp_path=tmp_path)
    new = set(r["modules"]) - set(before or r["before"])
    if how == "run":           # memdiag's boot file and its loader, which loaded the hook
        assert r["boot"] == os.path.join(ROOT, "memdiag", "_boot", "sitecustomize.py")
        new.remove("sitecustomize")
        new.remove("_memdiag_boot_loader")
    ours = {m for m in new if m.split(".")[0] in ("memdiag", "_memdiag_hook")}
    assert "threading" in new - ours                       # the RSS watcher runs
    assert [m for m in new - ours if m.split(".")[0] not in r["stdlib"]] == []
    assert not {"numpy", "typer", "rich"} & {m.split(".")[0] for m in r["modules"]}
    package = "_memdiag_hook" if how == "run" else "memdiag"
    assert package in ours
    assert {m.partition(".")[2] for m in ours - {package}} <= HOOK_SIDE, ours
    assert all(m.split(".")[0] == package for m in ours), ours


# ------------------------------------------------ failures stay in the hook

@pytest.mark.parametrize("mode", MODES)
def test_failure_is_one_stderr_line_and_never_reaches_the_target(start, tmp_path, mode):
    p = loop(start, tmp_path, mode)
    # The snapshot directory becomes a file: every write fails (root ignores
    # permission bits, so an unwritable directory would not fail here).
    for name in os.listdir(p.dir):
        os.unlink(os.path.join(p.dir, name))
    os.rmdir(p.dir)
    with open(p.dir, "w") as f:
        f.write("not a directory\n")
    n = p.count()
    p.kill(signal.SIGUSR2)
    deadline = time.monotonic() + 20
    while not hook_lines(p.stderr()) and time.monotonic() < deadline:
        time.sleep(0.02)
    p.wait_count_above(n + 5)                 # the loop went on counting
    lines = hook_lines(p.stderr())
    assert len(lines) == 1 and "failed" in lines[0], p.stderr()
    assert p.alive() and not p.lines("EXC")
    assert "Traceback" not in p.stderr()

    # `memdiag snapshot` hears about the failure instead of waiting out its timeout.
    t0 = time.monotonic()
    code, out, err = memdiag("snapshot", p.pid, "--timeout", 30)
    assert code == 5 and "could not write the snapshot" in err, (code, out, err)
    assert time.monotonic() - t0 < 10
    assert len(hook_lines(p.stderr())) == 2
    n = p.count()
    p.wait_count_above(n + 5)
    assert p.alive() and not p.lines("EXC")


# --------------------------------------------------------------- coalescing

def _writing(directory, pid, seq):
    prefix = f".memdiag-{pid}-{seq}."
    try:
        return any(n.startswith(prefix) and n.endswith(".tmp") for n in os.listdir(directory))
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_signals_during_a_snapshot_are_coalesced(start, tmp_path, mode, walker):
    # Enough objects that the walk lasts a good fraction of a second.
    objects = 60_000 if walker == "python" else 1_500_000
    p = loop(start, tmp_path, mode, objects, env=walker_env(walker))
    p.kill(signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not _writing(p.dir, p.pid, 1):       # the snapshot's temp file exists
        assert time.monotonic() < deadline and p.alive(), p.stderr()
        time.sleep(0.001)
    sent = 0
    while _writing(p.dir, p.pid, 1) and sent < 10:   # signal it again while it writes
        p.kill(signal.SIGUSR2)
        sent += 1
        time.sleep(0.01)
    wait_file(os.path.join(p.dir, f"memdiag-{p.pid}-1.snap"), proc=p)
    time.sleep(0.5)                            # a queued snapshot would start now
    assert sent >= 3, "the walk was too short to signal during it"
    assert not _writing(p.dir, p.pid, 2), "the signals started another snapshot"
    assert snap_files(p.dir, p.pid) == [f"memdiag-{p.pid}-1.snap"], sent

    p.kill(signal.SIGUSR2)                     # the next signal: the next snapshot
    wait_file(os.path.join(p.dir, f"memdiag-{p.pid}-2.snap"), proc=p)
    assert p.alive() and not p.lines("EXC") and hook_lines(p.stderr()) == []


# ------------------------------------------- reading the heap does not change it

NO_DICTS = """
    import ctypes, gc, json, sys
    import memdiag
    from memdiag import hook
    memdiag.install(dir=sys.argv[2])
    PY = sys.version_info[:2]

    class Plain:                      # 3.11+: attributes live inline, no __dict__
        def __init__(self, i):
            self.a = i
            self.b = "x"

    def dict_slot(o):
        # The managed-dict pointer sits 3 words before the object on 3.11-3.13;
        # on 3.12 the same word may hold the inline-values pointer, tagged bit 0.
        v = ctypes.c_ssize_t.from_address(id(o) - 3 * ctypes.sizeof(ctypes.c_void_p)).value
        return v != 0 and not (PY == (3, 12) and v & 1)

    def dict_referent(o):
        return any(type(r) is dict for r in gc.get_referents(o))

    objs = [Plain(i) for i in range(1000)]
    control = Plain(-1)
    control.__dict__                  # materialized: both checks must see it
    before = [sum(map(dict_slot, objs)), sum(map(dict_referent, objs))]
    path = hook.dump(mode=sys.argv[1])
    after = [sum(map(dict_slot, objs)), sum(map(dict_referent, objs))]
    print("RESULT " + json.dumps({"before": before, "after": after, "path": path,
                                  "control": [dict_slot(control), dict_referent(control)]}))
"""


@pytest.mark.skipif(PY < (3, 11), reason="instances have no inline values before 3.11")
@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_snapshot_creates_no_instance_dicts(tmp_path, mode, walker):
    r = run_program(NO_DICTS, mode, tmp_path / "snaps", env=walker_env(walker),
                    tmp_path=tmp_path)
    # The checks see a dict where there is one (3.13's tp_traverse shows the
    # inline values instead while they stay valid, so only the pointer tells;
    # 3.14 shows the dict again). WALK.md W4.13, W1.2.
    assert r["control"] == [True, PY != (3, 13)]
    assert r["before"] == [0, 0]
    assert r["after"] == [0, 0]
    s = load(r["path"])
    assert s.meta["mode"] == mode and len(s.find_type("Plain")) == 1001


GROWTH = """
    import gc, json, sys, types
    import memdiag
    from memdiag import hook
    mode = sys.argv[1]
    memdiag.install(dir=sys.argv[2])

    def objects():
        return {id(o): o for o in gc.get_objects()}

    def main():
        data = [str(i) for i in range(500)]
        gc.collect()
        gc.disable()          # garbage the hook left would stay and be counted
        hook.dump(mode=mode)
        hook.dump(mode=mode)
        n0 = len(gc.get_objects())
        for _ in range(3):
            hook.dump(mode=mode)
        n1 = len(gc.get_objects())
        print("RESULT " + json.dumps({"n0": n0, "n1": n1}))
    main()
"""


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_snapshots_leave_the_object_count_unchanged(tmp_path, mode, walker):
    """WALK.md W1.2: nothing a snapshot makes stays in the program."""
    r = run_program(GROWTH, mode, tmp_path / "snaps", env=walker_env(walker),
                    tmp_path=tmp_path)
    assert r["n1"] == r["n0"], r


FIRST = """
    import gc, json, sys
    import memdiag
    from memdiag import hook
    mode = sys.argv[1]
    memdiag.install(dir=sys.argv[2])

    def main():
        data = [str(i) for i in range(500)]
        gc.collect()
        gc.disable()
        before = set(map(id, gc.get_objects()))
        before.add(id(before))
        hook.dump(mode=mode)
        new = []
        for o in gc.get_objects():    # no comprehension: no closure objects of ours
            if id(o) not in before and o is not new:
                new.append(o)
        # Left aside: os.link's keyword-name tuple, an interpreter cache made
        # on its first call. (The hook's state has no __dict__ to create.)
        shown = []
        for o in new:
            if not (type(o) is tuple and "follow_symlinks" in o):
                shown.append(f"{type(o).__name__}: {str(o)[:80]}")
        print("RESULT " + json.dumps({"new": shown}))
    main()
"""


@pytest.mark.parametrize("walker", [
    pytest.param("python", marks=pytest.mark.xfail(
        PY < (3, 13), strict=True, raises=AssertionError,
        reason="pure-Python capture: frame.f_locals attaches a locals dict to each running "
               "function frame before 3.13 (no pure-Python way around it)")),
    "compiled"])
@pytest.mark.parametrize("mode", MODES)
def test_first_snapshot_adds_no_object_to_the_target(tmp_path, mode, walker):
    """WALK.md W1.2; W11.6 for the Python capture before 3.13."""
    r = run_program(FIRST, mode, tmp_path / "snaps", env=walker_env(walker),
                    tmp_path=tmp_path)
    assert r["new"] == []


# ------------------------------------------------------------ roots and paths

STACKS = """
    import json, sys, threading
    import memdiag
    from memdiag import hook
    memdiag.install(dir=sys.argv[2])

    class StackMarker:
        pass

    def worker(ready, release):
        held_by_thread = [StackMarker() for _ in range(50)]
        ready.set()
        release.wait()
        return held_by_thread

    ready, release = threading.Event(), threading.Event()
    t = threading.Thread(target=worker, args=(ready, release), name="stack-holder")
    t.start()
    ready.wait()
    path = hook.dump(mode=sys.argv[1])
    release.set()
    t.join()
    print("RESULT " + json.dumps({"path": path}))
"""


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_other_threads_locals_are_roots_named_by_frame_and_variable(tmp_path, mode, walker):
    """WALK.md W2.2: a thread's variables are roots, named by frame and name."""
    r = run_program(STACKS, mode, tmp_path / "snaps", env=walker_env(walker),
                    tmp_path=tmp_path)
    s = load(r["path"])
    markers = s.find_type("StackMarker")
    assert len(markers) == 50
    path = retainer_path(s, markers[0])
    assert path.root_kind == "local"
    assert path.root.startswith("<stack-holder: worker (") and path.root.endswith(")>.held_by_thread")
    assert path.text().startswith(path.root + "[")


TLS = """
    import json, sys, threading
    import memdiag
    from memdiag import hook
    memdiag.install(dir=sys.argv[2])

    class TLMarker:
        pass

    tl = threading.local()

    def worker(ready, release):
        tl.value = [TLMarker() for _ in range(7)]   # only this thread's local holds them
        ready.set()
        release.wait()

    ready, release = threading.Event(), threading.Event()
    t = threading.Thread(target=worker, args=(ready, release), name="tls-holder")
    t.start()
    ready.wait()
    path = hook.dump(mode=sys.argv[1])
    release.set()
    t.join()
    print("RESULT " + json.dumps({"path": path}))
"""


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_another_threads_thread_local_value_is_in_the_snapshot(tmp_path, mode, walker):
    """WALK.md W2.3; W11.5 for the Python capture in a fork child."""
    if mode == "fork" and walker == "python":
        pytest.skip("compiled walker only: fork clears the other threads' states in the "
                    "child (their thread locals go), and only the compiled capture keeps them")
    r = run_program(TLS, mode, tmp_path / "snaps", env=walker_env(walker), tmp_path=tmp_path)
    s = load(r["path"])
    assert len(s.find_type("TLMarker")) == 7


UNREACHED = """
    import gc, json, sys
    import memdiag
    from memdiag import hook
    memdiag.install(dir=sys.argv[2])
    gc.disable()

    class UnreachedMarker:
        pass

    class Orphan:
        def __init__(self):
            self.me = self                      # a cycle, and nothing else holds it
            self.payload = [UnreachedMarker()]

    Orphan()
    print("RESULT " + json.dumps({"path": hook.dump(mode=sys.argv[1])}))
"""


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_cycle_without_root_is_under_unreached(tmp_path, mode, walker):
    """WALK.md W2.5."""
    r = run_program(UNREACHED, mode, tmp_path / "snaps", env=walker_env(walker),
                    tmp_path=tmp_path)
    s = load(r["path"])
    markers = s.find_type("UnreachedMarker")
    assert len(markers) == 1 and len(s.find_type("Orphan")) == 1
    path = retainer_path(s, markers[0])
    assert path.root_kind == "unreached" and path.root.startswith("<unreached "), path.text()


LABELS = """
    import functools, json, sys
    import memdiag
    from memdiag import hook
    memdiag.install(dir=sys.argv[2])

    # One marker class per kind of edge; each marker has exactly one referrer.
    class MKey: pass
    class MOpaque: pass
    class MTupleKey: pass
    class MAttr: pass
    class MInline: pass
    class MSlot: pass
    class MIndex: pass
    class MCell: pass
    class MCache: pass
    class MFrame: pass

    names = {"plain_name": MKey(), "not an-identifier": MOpaque(), (1, 2): MTupleKey()}

    class Holder: pass
    holder = Holder()
    holder.__dict__                      # a real instance dict
    holder.attr_name = MAttr()

    class Inline:
        def __init__(self):
            self.inline_attr = MInline()   # 3.11+: inline values, no dict
    inline = Inline()

    class Slotted:
        __slots__ = ("slot_attr",)
    slotted = Slotted()
    slotted.slot_attr = MSlot()

    items = [None, None, MIndex()]

    def make():
        captured = MCell()
        def closure():
            return captured
        return closure
    closure = make()

    @functools.lru_cache(maxsize=None)
    def cached(k):
        return MCache()
    cached(7)

    def fail():
        frame_local = MFrame()
        raise ValueError("kept with its frame")
    try:
        fail()
    except ValueError as e:
        saved = e

    s_path = hook.dump(mode=sys.argv[1])
    from memdiag.analysis.paths import retainer_path
    from memdiag.model import Snapshot
    s = Snapshot.load(s_path)
    paths = {}
    for name in ("MKey", "MOpaque", "MTupleKey", "MAttr", "MInline", "MSlot", "MIndex",
                 "MCell", "MCache", "MFrame"):
        found = s.find_type(name)
        paths[name] = [retainer_path(s, i).text() for i in found]
    print("RESULT " + json.dumps({"paths": paths, "walker": s.meta["walker"]}))
"""

ALWAYS_LABELED = {
    "MKey": "__main__.names['plain_name']",           # identifier-like key: in full
    "MOpaque": "__main__.names[<str len 17>]",        # any other key: type and length
    "MTupleKey": "__main__.names[<tuple len 2>]",
    "MSlot": "__main__.slotted.slot_attr",             # __slots__
    "MIndex": "__main__.items[2]",                     # list index
    "MCell": "__main__.closure.__closure__[0].cell_contents",
    "MCache": "__main__.cached.__cache__[<int>]",     # functools.lru_cache
}


def labels(tmp_path, mode, walker):
    r = run_program(LABELS, mode, tmp_path / "snaps", env=walker_env(walker),
                    tmp_path=tmp_path)
    assert r["walker"] == expected_walker(walker)
    return r["paths"]


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_edge_labels_on_the_only_path_to_a_marker(tmp_path, mode, walker):
    """WALK.md W4.4 (dict keys, W5.2), W4.5, W4.10, W4.12, W4.13 (slots)."""
    paths = labels(tmp_path, mode, walker)
    for name, expected in ALWAYS_LABELED.items():
        assert paths[name] == [expected], (name, paths[name])


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_attribute_in_an_existing_instance_dict_is_labeled(tmp_path, mode, walker):
    """WALK.md W4.13, W8.3."""
    # The pure-Python walker finds an existing managed __dict__ (3.11+) by
    # reading the object's dict pointer, in the target too.
    assert labels(tmp_path, mode, walker)["MAttr"] == ["__main__.holder.attr_name"]


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_inline_attribute_and_frame_local_are_labeled(tmp_path, mode, walker):
    """WALK.md W4.13 (inline values), W4.11 (a finished frame's variables);
    W11.2: the pure-Python walker names them only in a fork child."""
    if walker == "python" and mode == "inline":
        pytest.skip("the pure-Python walker reads these names only in a fork child: in the "
                    "target it would create an instance __dict__ or frame f_locals")
    paths = labels(tmp_path, mode, walker)
    assert paths["MInline"] == ["__main__.inline.inline_attr"]
    assert paths["MFrame"] == ["__main__.saved→traceback→traceback→frame.frame_local"]


# ------------------------------------------------------------- hostile heaps

NO_THREADING = """
    import json, sys
    import memdiag
    from memdiag import hook
    memdiag.install(dir=sys.argv[2])

    class MainMarker:
        pass

    def main():
        held_in_main = MainMarker()
        before = "threading" in sys.modules
        path = hook.dump(mode=sys.argv[1])
        print("RESULT " + json.dumps({"path": path,
                                      "threading": [before, "threading" in sys.modules],
                                      "ctypes": "ctypes" in sys.modules}))
    main()
"""


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_main_thread_is_named_in_a_program_without_threading(tmp_path, mode, walker):
    """Issue 8: without the threading module the main thread showed as <thread-1399…>."""
    r = run_program(NO_THREADING, mode, tmp_path / "snaps", env=walker_env(walker),
                    tmp_path=tmp_path)
    assert r["threading"] == [False, False]     # neither the program nor the hook imported it
    # The pure-Python walker reads memory with _ctypes, not the ctypes
    # package, which imports threading on 3.14 (through sysconfig). Only on
    # 3.11 does the hook import ctypes, to call the tracemalloc lookup
    # (walker._enable_site_lookup); there it imports no threading.
    assert r["ctypes"] is (walker == "python" and sys.version_info[:2] == (3, 11))
    s = load(r["path"])
    path = retainer_path(s, s.find_type("MainMarker")[0])
    assert path.root.startswith("<MainThread: main ("), path.root
    assert path.root.endswith(")>.held_in_main"), path.root


HOSTILE = """
    import json, os, sys, threading, types
    import memdiag
    from memdiag import hook
    memdiag.install(dir=sys.argv[2])
    ARMED = []

    def trap(what):
        # Reported on stderr, which the fork child keeps, then raised.
        if ARMED:
            os.write(2, f"HOSTILE-CALL {what}\\n".encode())
            raise RuntimeError(f"hostile {what}")

    class Hostile:
        # Every way code of the target could run when something looks at it.
        def __getattribute__(self, name):
            trap(f"getattribute {name}")
            return object.__getattribute__(self, name)
        def __getattr__(self, name):
            trap(f"getattr {name}")
            raise AttributeError(name)
        def __eq__(self, other):
            trap("eq")
            return self is other
        def __lt__(self, other):
            trap("lt")
            return False
        def __hash__(self):
            trap("hash")
            return 12345
        def __bool__(self):
            trap("bool")
            return True
        def __len__(self):
            trap("len")
            return 1
        def __iter__(self):
            trap("iter")
            return iter(())
        def __repr__(self):
            trap("repr")
            return "Hostile()"
        def __str__(self):
            trap("str")
            return "Hostile"
        def __format__(self, spec):
            trap("format")
            return "Hostile"
        def __sizeof__(self):
            trap("sizeof")
            return 1 << 40

    class HostileStr(str):
        def startswith(self, *args):
            trap("str startswith")
            return False
        def __eq__(self, other):
            trap("str eq")
            return str.__eq__(self, other)
        def __hash__(self):
            trap("str hash")
            return str.__hash__(self)
        def __lt__(self, other):
            trap("str lt")
            return str.__lt__(self, other)
        def __str__(self):
            trap("str str")
            return str.__str__(self)

    class HostileModule(types.ModuleType):
        def __getattribute__(self, name):
            trap(f"module getattribute {name}")
            return super().__getattribute__(name)

    class HostileNamespace(dict):
        def __getitem__(self, key):
            trap("namespace getitem")
            return dict.__getitem__(self, key)
        def __iter__(self):
            trap("namespace iter")
            return dict.__iter__(self)
        def keys(self):
            trap("namespace keys")
            return dict.keys(self)
        def items(self):
            trap("namespace items")
            return dict.items(self)
        def __len__(self):
            trap("namespace len")
            return dict.__len__(self)

    class Meta(type):
        @classmethod
        def __prepare__(mcls, name, bases):
            return HostileNamespace()

    # sys.modules: keys that are not str, a str subclass, values that are not
    # modules, None, and names of memdiag's own that are not memdiag's modules.
    sys.modules[("a", "b")] = types.ModuleType("tuple_key")
    sys.modules[42] = Hostile()
    sys.modules[Hostile()] = types.ModuleType("hostile_key")
    sys.modules[HostileStr("hostile_str_key")] = types.ModuleType("hostile_str_key")
    sys.modules[HostileStr("memdiag.str_key")] = types.ModuleType("memdiag_str_key")
    sys.modules["hostile_value"] = Hostile()
    sys.modules["hostile_module"] = HostileModule("hostile_module")
    sys.modules["memdiag.hostile_module"] = HostileModule("memdiag.hostile_module")
    sys.modules["_memdiag_hostile_value"] = Hostile()
    sys.modules["none_value"] = None

    # Threads: one whose name is not a str, one stopped in a class body whose
    # namespace is a hostile mapping, their frames holding hostile locals.
    def hostile_locals(ready, release):
        local_hostile = Hostile()
        ready.set()
        release.wait()

    def in_class_body(ready, release):
        class Body(metaclass=Meta):
            body_hostile = Hostile()
            ready.set()
            release.wait()

    release = threading.Event()
    threads = []
    for target in (hostile_locals, in_class_body):
        ready = threading.Event()
        t = threading.Thread(target=target, args=(ready, release), daemon=True)
        t.start()
        ready.wait()
        threads.append(t)
    threads[0]._name = Hostile()

    def main():
        main_hostile = Hostile()
        ARMED.append(True)
        try:
            path = hook.dump(mode=sys.argv[1])
        finally:
            ARMED.clear()
        release.set()
        for t in threads:
            t.join()
        print("RESULT " + json.dumps({"path": path}))
    main()
"""


@pytest.mark.parametrize("walker", WALKERS)
@pytest.mark.parametrize("mode", MODES)
def test_hostile_objects_in_modules_threads_and_frames_cost_nothing(tmp_path, mode, walker):
    """Issue 8: one non-str key in sys.modules made every snapshot fail. Odd
    keys and values in sys.modules, a thread named by a non-str, a class body
    with a hostile namespace, hostile frame locals: the snapshot is written,
    holds them, and none of their code ran."""
    r = run_program(HOSTILE, mode, tmp_path / "snaps", env=walker_env(walker),
                    tmp_path=tmp_path)
    assert "HOSTILE-CALL" not in r["_stderr"], r["_stderr"]
    assert hook_lines(r["_stderr"]) == []
    s = load(r["path"])
    modules = {d for k, d, _ in s.roots_by_object().values() if k == 1}
    assert {"hostile_value", "hostile_module", "_memdiag_hostile_value"} <= modules
    assert not modules & {"none_value", "memdiag.hostile_module"}
    assert len(s.find_type("Hostile")) >= 7
    assert len(s.find_type("HostileNamespace")) == 1
    roots = {retainer_path(s, i).root for i in s.find_type("Hostile")}
    assert any(r.startswith("<MainThread: main (") and r.endswith(".main_hostile")
               for r in roots), roots
    assert any(r.startswith("<thread-") and r.endswith(".local_hostile") for r in roots), roots


# ------------------------------------------------------- forked worker processes

WORKER = """
    import os, signal, sys, time
    import memdiag
    memdiag.install(dir=sys.argv[1])

    def own_handler(signum, frame):
        print(f"GOT-USR2 {os.getpid()}", flush=True)

    if sys.argv[2] == "takeover":
        signal.signal(signal.SIGUSR2, own_handler)      # as gunicorn's arbiter does
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)   # as gunicorn's workers do
        WORKER_LEAK = []
        print(f"CHILD pid={os.getpid()}", flush=True)
        while True:
            WORKER_LEAK.append(object())
            time.sleep(0.02)
    print(f"READY pid={os.getpid()} child={pid}", flush=True)
    while True:
        time.sleep(0.02)
"""


def start_worker(start, tmp_path, how):
    d = tmp_path / "snaps"
    p = start(code=WORKER, args=(d, how))
    info = p.ready()
    child = int(info["child"])
    start.pids.append(child)
    assert p.wait_line("CHILD") == f"CHILD pid={child}"
    return p, child, str(d)


def snapshot_of(pid, directory):
    code, out, err = memdiag("snapshot", pid, "--timeout", 30)
    assert code == 0, (code, out, err)
    path = out.strip()
    assert os.path.basename(path) == f"memdiag-{pid}-1.snap"
    assert os.path.dirname(path) == directory
    s = load(path)
    assert s.meta["pid"] == pid
    return s


def test_forked_worker_that_resets_the_signal_keeps_snapshots(start, tmp_path):
    p, child, d = start_worker(start, tmp_path, "plain")
    s = snapshot_of(child, d)                  # registered under its own pid
    assert s.meta["mode"] == "fork"
    assert len(s.find_type("object")) > 0
    assert snapshot_of(p.pid, d).meta["pid"] == p.pid
    assert p.alive() and os.path.exists(f"/proc/{child}")
    assert hook_lines(p.stderr()) == []


def test_program_that_takes_the_signal_wins_and_snapshot_refuses(start, tmp_path):
    p, child, d = start_worker(start, tmp_path, "takeover")
    lines = hook_lines(p.stderr())
    assert len(lines) == 1 and "taken over" in lines[0] and str(p.pid) in lines[0], lines
    code, out, err = memdiag("snapshot", p.pid, "--timeout", 5)
    assert code == 4 and "took its memdiag hook's signal for itself" in err, (code, out, err)
    time.sleep(0.3)
    assert p.lines("GOT-USR2") == []           # the signal was not sent
    assert snap_files(d, p.pid) == []
    os.kill(p.pid, signal.SIGUSR2)             # the program's own handler has it
    p.wait_line("GOT-USR2")
    assert snap_files(d, p.pid) == [] and p.alive()


def test_worker_of_a_parent_that_took_the_signal_gets_the_hook_back(start, tmp_path):
    """gunicorn's shape: the arbiter takes SIGUSR2, its workers reset it."""
    p, child, d = start_worker(start, tmp_path, "takeover")
    s = snapshot_of(child, d)
    assert len(s.find_type("object")) > 0
    assert p.lines("GOT-USR2") == [] and os.path.exists(f"/proc/{child}")


# ------------------------------------------ the fork child holds none of its files

PEER = """
    import os, socket, sys, time
    import memdiag
    memdiag.install(dir=sys.argv[1], mode="fork")
    BALLAST = [(i, str(i)) for i in range(int(sys.argv[2]) // 3)]
    mine, peer = socket.socketpair()
    print(f"READY pid={os.getpid()}", flush=True)
    for line in sys.stdin:
        if line.strip() == "close":
            mine.close()                       # the peer should see EOF now
            peer.settimeout(30)
            t0 = time.monotonic()
            data = peer.recv(1)
            print(f"EOF {data!r} {time.monotonic() - t0:.3f}", flush=True)
"""


def test_fork_child_does_not_keep_the_targets_sockets_open(start, tmp_path):
    """A socket or pipe the target closes while a snapshot is being written
    must close for its peer then, not when the snapshot child exits."""
    d = str(tmp_path / "snaps")
    p = start(code=PEER, args=(d, 150_000), env=walker_env("python"))
    p.ready()
    p.kill(signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not _writing(d, p.pid, 1):
        assert time.monotonic() < deadline and p.alive(), p.stderr()
        time.sleep(0.001)
    p.send("close")
    line = p.wait_line("EOF", timeout=40)
    still_writing = _writing(d, p.pid, 1)
    data, seconds = line.split()[1], float(line.split()[2])
    assert data == "b''"
    assert seconds < 0.5, f"the peer saw EOF only after {seconds}s, when the child exited"
    assert still_writing, "the snapshot ended too soon for this test to mean anything"
    wait_file(os.path.join(d, f"memdiag-{p.pid}-1.snap"), proc=p)


# ------------------------------------------------------------------- registry

def test_registry_forgets_processes_that_are_gone(start, tmp_path):
    """Every hooked process registers (with `memdiag run`, every Python child
    too); one killed, or ending without uninstall(), must not stay forever."""
    from conftest import kill_pid
    # A temp dir of the test's own: another hooked process of this user (a
    # parallel CI job) would sweep a shared registry between the steps below.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    reg = os.path.join(str(tmp), f"memdiag-{os.getuid()}", "hooks")
    p = loop(start, tmp_path, "fork", env=env)
    p.kill(signal.SIGUSR2)
    wait_file(os.path.join(p.dir, f"memdiag-{p.pid}-1.snap"), proc=p)
    entries = [os.path.join(reg, f"{p.pid}.json"), os.path.join(reg, f"{p.pid}.status")]
    assert all(os.path.exists(e) for e in entries)
    kill_pid(p.pid)
    assert all(os.path.exists(e) for e in entries)     # nobody cleaned up yet
    q = loop(start, tmp_path, "fork", env=env)         # the next hooked process does
    assert not any(os.path.exists(e) for e in entries)
    assert os.path.exists(os.path.join(reg, f"{q.pid}.json"))


WARNED_ONCE = """
    import json, sys, threading, warnings
    import memdiag
    from memdiag import hook
    memdiag.install(dir=sys.argv[1])
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)      # 3.12+ warns about fork() with threads
    worker.start()

    def old_api():
        warnings.warn("old_api is deprecated", UserWarning, stacklevel=1)

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")             # each warning once per location
        old_api()
        registry_before = dict(globals().get("__warningregistry__", {}))
        path = hook.dump(mode="fork")
        old_api()                                     # already shown: not again
    stop.set()
    worker.join()
    print("RESULT " + json.dumps({
        "shown": len(shown), "path": path,
        "kept": {str(k) for k in registry_before} <= {str(k) for k in __warningregistry__}}))
"""


@pytest.mark.parametrize("warnings_env", ["", "error::DeprecationWarning"])
def test_forked_snapshot_leaves_the_programs_warnings_alone(tmp_path, warnings_env):
    """A forked snapshot changes no state of the program's warnings: a module's
    __warningregistry__ keeps what was shown (warnings.catch_warnings() around
    the fork used to empty every registry, so shown warnings showed again), and
    3.12+'s warning about fork() with threads neither shows nor, under
    -W error::DeprecationWarning, raises in the program."""
    env = dict(walker_env("compiled"), PYTHONWARNINGS=warnings_env)
    r = run_program(WARNED_ONCE, tmp_path / "snaps", env=env, tmp_path=tmp_path)
    assert r["shown"] == 1 and r["kept"], r
    assert os.path.isfile(r["path"])
    assert "multi-threaded" not in r["_stderr"], r["_stderr"]
