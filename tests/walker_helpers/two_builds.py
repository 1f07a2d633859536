"""Two builds of the compiled walker on the same heap: the same file, and how fast.

For changes to memdiag/_native/ that must not change what the walker writes
(a refactoring, a port to a new Python): build the old sources into a scratch
directory first, then

    python tests/walker_helpers/two_builds.py same OLD.so NEW.so OUTDIR
    python tests/walker_helpers/two_builds.py bench OLD.so NEW.so N [REPEAT]

`same` builds the varied heap of heapcheck.py (every kind of object and edge
the walker knows, strings and allocation sites included) plus 200,000
synthetic objects, then forks two children with byte-identical heaps
(heapcheck.raw_fork); each writes OUTDIR/old.snap or OUTDIR/new.snap with its
build, as the hook's fork child does. The two files must hold the same column
chunks, byte for byte (same values, chunk boundaries, widths and deflate
output), and the same trailer but for its metadata (timings). Prints one JSON
line: {"same": true, ...}, or the first differences; exits 1 when they differ.

`bench` builds a synthetic heap of about N objects and times the walk (fork
child, streaming to a file, as the hook does) REPEAT times per build, the two
builds interleaved, each run in a fresh fork child of the same parent. Prints
per build the median and every figure of: wall seconds, CPU seconds of the
process (the walk and its compression threads), CPU seconds of the walk's
own thread. Run it with `nice`, and more
than once on a busy machine.

Both builds must be for the running interpreter (their file names end in its
EXT_SUFFIX). OLD.so is loaded under another module name, so both can be
imported before the fork (the children's heaps hold both).
"""

import gc
import importlib.machinery
import importlib.util
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import heapcheck  # noqa: E402
from heapcheck import hook_capture, hook_walk, snapfile  # noqa: E402


BUILDS = []     # [old, new]


def load_build(path, package):
    """The extension at path, imported as package + "._walker"."""
    name = package + "._walker"
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    sys.modules[name] = mod
    return mod


def blocks(path):
    """(column blocks as raw bytes in file order, trailer without its meta)."""
    r = snapfile.Reader.open(path)
    try:
        trailer = dict(r.trailer)
        trailer.pop("meta", None)
        chunks = sorted((c.offset, c.stored_len) for cs in r.chunks.values() for c in cs)
    finally:
        r.close()
    out = []
    with open(path, "rb") as f:
        for offset, stored_len in chunks:
            f.seek(offset - snapfile.BLOCK.size)
            out.append(f.read(snapfile.BLOCK.size + stored_len))
    return out, trailer


def walk_with(k, path, capture, strings, trace):
    """heapcheck.walk_into's C walk, with BUILDS[k]. Nothing but the small int
    k (a local of running frames, which the walk does not read) tells the two
    children apart: their heaps stay the same."""
    mod = BUILDS[k]
    f = open(os.fsencode(path), "wb")
    writer = snapfile.Writer(f)
    modules = hook_walk.module_roots()
    ignore = hook_walk.ignore_seeds([capture, writer.__dict__, writer.pending, writer.counts,
                                 modules, f, writer])
    ignore.append(ignore)
    t0, c0 = time.perf_counter(), time.process_time()
    res = mod.walk(writer, modules, capture["stack_roots"], capture["thread_roots"],
                   ignore, capture["frames"], strings, trace, True)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    trailer = res["trailer"]
    trailer["types"] = [heapcheck.type_name(t) for t in res["type_objects"]]
    trailer["meta"] = {"seconds": seconds}
    writer.finish(trailer)
    f.close()
    return {"seconds": seconds, "cpu": cpu, "walk_cpu": res["stats"]["walk_cpu_seconds"]}


def fork_walk(k, path, capture, strings, trace):
    pid = heapcheck.raw_fork()
    if pid == 0:
        code = 1
        try:
            gc.disable()
            walk_with(k, path, capture, strings, trace)
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit(f"walk child failed: status {status}")


def mode_same(outdir):
    import tracemalloc
    tracemalloc.start(1)
    gc.disable()
    heapcheck.prepare_raw_fork()
    heap = heapcheck.build_heap()
    heap["exc"].__traceback__.tb_frame.f_locals
    heapcheck.synthetic_heap(200_000, garbage_every=97)
    t, event = heapcheck.start_thread()
    capture = hook_capture.capture()
    paths = {k: os.path.join(outdir, k + ".snap") for k in ("old", "new")}
    names = ["old", "new"]
    for k in range(2):      # a range iterator holds no int object: same heaps
        fork_walk(k, paths[names[k]], capture, strings=True, trace=True)
    event.set()
    t.join()
    (bo, to), (bn, tn) = blocks(paths["old"]), blocks(paths["new"])
    problems = []
    if len(bo) != len(bn):
        problems.append(f"{len(bo)} column blocks in old, {len(bn)} in new")
    for k, (x, y) in enumerate(zip(bo, bn)):
        if x != y:
            problems.append(f"column block #{k} differs (header {x[:16].hex()} / {y[:16].hex()})")
            if len(problems) > 10:
                break
    for key in sorted(set(to) | set(tn)):
        if to.get(key) != tn.get(key):
            problems.append(f"trailer[{key!r}] differs")
    print(json.dumps({"same": not problems, "python": sys.version.split()[0],
                      "objects": to["objects"], "edges": to["edges"], "blocks": len(bo),
                      "strings": to["strings"], "sites": len(to["sites"]),
                      "problems": problems}))
    return not problems


def mode_bench(n, repeat):
    gc.disable()
    heapcheck.synthetic_heap(n)
    capture = hook_capture.capture()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"two-builds-{os.getpid()}.snap")
    times = {(b, what): [] for b in ("old", "new") for what in ("seconds", "cpu", "walk_cpu")}
    objects = None
    for r in range(repeat):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            def child(k=k):
                res = walk_with(k, path, capture, strings=False, trace=False)
                rd = snapfile.Reader.open(path)
                res["objects"] = rd.trailer["objects"]
                rd.close()
                return res
            res = heapcheck._child_json(child)
            for what in ("seconds", "cpu", "walk_cpu"):
                times[("old", "new")[k], what].append(round(res[what], 4))
            objects = res["objects"]
    try:
        os.unlink(path)
    except OSError:
        pass
    out = {"python": sys.version.split()[0], "objects": objects, "repeat": repeat}
    for (b, what), v in times.items():
        out[f"median_{what}_{b}"] = statistics.median(v)
    out.update({f"{what}_{b}": v for (b, what), v in times.items()})
    print(json.dumps(out))


def main(argv):
    mode, old_path, new_path = argv[1:4]
    BUILDS.append(load_build(os.path.abspath(old_path), "memdiag_old_build"))
    BUILDS.append(load_build(os.path.abspath(new_path), "memdiag_new_build"))
    if mode == "same":
        return 0 if mode_same(argv[4]) else 1
    if mode == "bench":
        mode_bench(int(argv[4]), int(argv[5]) if len(argv) > 5 else 5)
        return 0
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
