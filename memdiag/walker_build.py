"""Compiling the walker for another Python (`memdiag build-walker`), and
making sure a target has one before it starts (`memdiag run`, `attach`).

The target interpreter runs once, with -I, to say its version, extension
suffix, include directories and compiler settings (sysconfig). Then the
walker's C sources (walker_cache.WALKER_SOURCES) are compiled as setuptools
would compile them for that interpreter: `CC CFLAGS CCSHARED -I... -c`, then
`LDSHARED objects -o`, with CC, CFLAGS, CPPFLAGS, LDSHARED and LDFLAGS from
the environment applied as pip applies them. The extension must import in
that interpreter before it goes into the cache, in one rename of its
directory (walker_cache has the layout and the checks the hook makes).

    >>> py = probe(sys.executable)
    >>> py.version[:2] == sys.version_info[:2], py.tag == walker_cache.abi_tag()
    (True, True)

Failures are BuildError: one line that says why, and what to do.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from . import walker_cache
from .walker_cache import PKG_DIR

# Run in the target interpreter with -I: what building for it needs.
PROBE = r"""
import importlib.machinery, json, sys, sysconfig
paths = sysconfig.get_paths()
print(json.dumps({
    "version": list(sys.version_info[:3]), "implementation": sys.implementation.name,
    "executable": sys.executable, "suffix": importlib.machinery.EXTENSION_SUFFIXES[0],
    "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "include": [paths.get("include"), paths.get("platinclude"),
                sysconfig.get_config_var("INCLUDEPY")],
    "config": {k: sysconfig.get_config_var(k) or "" for k in ("CC", "CFLAGS", "CCSHARED",
                                                               "LDSHARED")}}))
"""
# Run in the target interpreter with -I: the built extension imports.
CHECK = r"""
import importlib.machinery as m, importlib.util as u, sys
loader = m.ExtensionFileLoader("_walker", sys.argv[1])
module = u.module_from_spec(u.spec_from_file_location("_walker", sys.argv[1], loader=loader))
loader.exec_module(module)
assert hasattr(module, "walk"), "no walk() in the module"
"""
PROBE_TIMEOUT = 60.0
COMPILE_TIMEOUT = 600.0
STALE_BUILD_SECONDS = 86400.0


class BuildError(Exception):
    """The walker was not built. kind: "python" (not a usable interpreter),
    "compiler", "headers", "unsupported" (memdiag's sources do not build for
    that Python), "cache" (the cache directory is not safe), "failed"."""

    def __init__(self, message, kind):
        super().__init__(message)
        self.kind = kind


@dataclass
class Interpreter:
    """A Python to build for, as it describes itself (probe())."""
    path: str
    version: Tuple[int, int, int]
    implementation: str
    executable: str
    suffix: str
    gil_disabled: bool
    include: List[str]
    config: dict

    @property
    def tag(self):
        return walker_cache.abi_tag(self.suffix)

    @property
    def short(self):
        return "%d.%d" % self.version[:2]


@dataclass
class Plan:
    """Which walker a target on `python` will use: `path`, the compiled one it
    will load (origin "package", "cache" or "built"), or None and `reason`,
    one line with what to do."""
    python: Optional[Interpreter]
    path: Optional[str] = None
    origin: Optional[str] = None
    reason: Optional[str] = None


def probe(python) -> Interpreter:
    """Run `python` to read what building for it needs; BuildError(kind="python")."""
    try:
        p = subprocess.run([python, "-I", "-c", PROBE], capture_output=True, text=True,
                           timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        why = e.strerror if isinstance(e, OSError) else f"no answer within {PROBE_TIMEOUT:g}s"
        raise BuildError(f"cannot run {python}: {why}", "python") from None
    try:
        d = json.loads(p.stdout.strip().splitlines()[-1])
        include = [i for i in dict.fromkeys(d["include"]) if i and os.path.isdir(i)]
        return Interpreter(path=python, version=tuple(d["version"]),
                           implementation=d["implementation"], executable=d["executable"],
                           suffix=d["suffix"], gil_disabled=d["gil_disabled"],
                           include=include or [i for i in d["include"][:1] if i],
                           config=d["config"])
    except (ValueError, IndexError, KeyError, TypeError):
        last = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        raise BuildError(f"{python} is not a Python 3 interpreter memdiag can build for "
                         f"({last})", "python") from None


def find(py: Interpreter, pkg_dir=PKG_DIR, root=None, uid=None):
    """(path, origin) of the compiled walker a target on py loads: next to the
    hook ("package") or in the cache ("cache"); walker_cache.Unavailable
    (Missing or Refused) if none."""
    local = os.path.join(pkg_dir, "_walker" + py.suffix)
    if os.path.isfile(local):
        return local, "package"
    return walker_cache.locate(root, pkg_dir, py.suffix, uid), "cache"


def refusal(py: Interpreter):
    """Why no compiled walker can exist for py at all, or None."""
    if py.implementation != "cpython":
        return (f"the compiled walker is for CPython, and {py.path} is "
                f"{py.implementation} {py.short}")
    if py.gil_disabled:
        return (f"the compiled walker needs the default (GIL) build of CPython, and "
                f"{py.path} is the free-threaded build of {py.short}")
    return None


def advice(py: Interpreter):
    return f"then run `memdiag build-walker --python {py.path}`"


# ------------------------------------------------------------------ building

def toolchain(py: Interpreter, environ=None, pkg_dir=PKG_DIR):
    """(compile command, link command) without files, as setuptools makes them."""
    env = os.environ if environ is None else environ
    cfg = py.config
    cc = env.get("CC") or cfg["CC"] or "cc"
    ldshared = env.get("LDSHARED") or cfg["LDSHARED"] or f"{cc} -shared"
    if env.get("CC") and not env.get("LDSHARED") and cfg["CC"] and \
            ldshared.startswith(cfg["CC"]):
        ldshared = env["CC"] + ldshared[len(cfg["CC"]):]
    cflags = " ".join(filter(None, [cfg["CFLAGS"], env.get("CFLAGS"), env.get("CPPFLAGS"),
                                    cfg["CCSHARED"]]))
    native = os.path.join(pkg_dir, walker_cache.NATIVE)
    includes = [f"-I{d}" for d in [native, *py.include]]
    compile_cmd = (shlex.split(cc) + shlex.split(cflags) + includes
                   + list(walker_cache.WALKER_CFLAGS))
    link_cmd = shlex.split(ldshared) + shlex.split(env.get("LDFLAGS", ""))
    return compile_cmd, link_cmd


def build(py: Interpreter, pkg_dir=PKG_DIR, root=None, force=False, environ=None,
          say: Optional[Callable[[str], None]] = None):
    """Compile the walker for py into the cache; returns its path. An entry
    that is there already is kept (force: replaced). BuildError says why not;
    `say` gets one line once a compiler and the headers are found, before
    the compiler runs."""
    why = refusal(py)
    if why:
        raise BuildError(why, "unsupported")
    root = root or walker_cache.cache_root(environ)
    try:
        digest = walker_cache.source_hash(pkg_dir)
    except OSError as e:
        raise BuildError(f"memdiag's C sources are not installed with it ({e.filename}); "
                         f"reinstall memdiag", "failed") from None
    final = os.path.join(root, walker_cache.entry_name(py.tag, digest))
    compile_cmd, link_cmd = toolchain(py, environ, pkg_dir)
    _check_toolchain(py, compile_cmd)
    make_root(root)
    _sweep(root)
    if say:
        say(f"memdiag: building the compiled walker for Python {py.short} into {root} "
            f"(once for this Python and this memdiag)")
    tmp = tempfile.mkdtemp(prefix=".build-", dir=root)
    try:
        so = _compile(py, pkg_dir, tmp, compile_cmd, link_cmd, root)
        _check_import(py, so)
        _write_info(tmp, py, digest)
        if force and os.path.lexists(final):
            aside = tempfile.mkdtemp(prefix=".old-", dir=root)
            os.rename(final, os.path.join(aside, "entry"))
            shutil.rmtree(aside, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # Another build finished first: keep its entry (checked below).
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        return walker_cache.locate(root, pkg_dir, py.suffix, digest=digest)
    except walker_cache.Unavailable as e:
        raise BuildError(f"{e}; remove it, or run `memdiag build-walker --force --python "
                         f"{py.path}`", "cache") from None


def make_root(root):
    """Create the cache directory (each missing level 0700) and check it as the
    hook will; BuildError(kind="cache")."""
    missing = []
    d = root
    while not os.path.lexists(d) and os.path.dirname(d) != d:
        missing.append(d)
        d = os.path.dirname(d)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise BuildError(f"cannot create the walker cache {d}: {e.strerror}", "cache") from None
    try:
        walker_cache.check_ancestors(root, os.geteuid())
        walker_cache.check_private(root, os.geteuid(), "dir")
    except walker_cache.Refused as e:
        raise BuildError(f"refusing the walker cache: {e}; make it yours alone (chmod go-w), "
                         f"or name another with MEMDIAG_WALKER_CACHE", "cache") from None


def _sweep(root):
    """Remove what builds killed midway left (older than a day)."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        path = os.path.join(root, name)
        if name.startswith((".build-", ".old-")):
            try:
                if time.time() - os.lstat(path).st_mtime > STALE_BUILD_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass


def _check_toolchain(py, compile_cmd):
    """A compiler on PATH, and the interpreter's Python.h."""
    if shutil.which(compile_cmd[0]) is None:
        raise BuildError(f"no C compiler: {compile_cmd[0]} is not found (CC, or what Python "
                         f"{py.short} was built with); install one (Debian: apt-get install "
                         f"gcc python{py.short}-dev), {advice(py)}", "compiler")
    if not any(os.path.isfile(os.path.join(d, "Python.h")) for d in py.include):
        raise BuildError(f"Python {py.short} has no headers (no Python.h in "
                         f"{' or '.join(py.include) or 'its include directory'}); install them "
                         f"(Debian: apt-get install python{py.short}-dev), {advice(py)}",
                         "headers")


def _run(cmd, log):
    """Start a compiler command; it and its output go to the log file."""
    log.write(" ".join(map(shlex.quote, cmd)) + "\n")
    log.flush()
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _compile(py, pkg_dir, tmp, compile_cmd, link_cmd, root):
    native = os.path.join(pkg_dir, walker_cache.NATIVE)
    log_path = os.path.join(tmp, "build.log")
    objects = []
    pending = []
    with open(log_path, "w") as log:
        try:
            # The first unit alone: a Python the sources do not support fails here, fast.
            jobs = max(1, min(4, os.cpu_count() or 1))
            for i, unit in enumerate(walker_cache.WALKER_SOURCES):
                obj = os.path.join(tmp, unit[:-2] + ".o")
                objects.append(obj)
                cmd = compile_cmd + ["-c", os.path.join(native, unit), "-o", obj]
                pending.append((unit, _run(cmd, log)))
                if i == 0 or len(pending) >= jobs:
                    _wait(pending.pop(0), py, tmp, compile_cmd, log_path, root)
            while pending:
                _wait(pending.pop(0), py, tmp, compile_cmd, log_path, root)
            so = os.path.join(tmp, "_walker" + py.suffix)
            pending.append(("linking", _run(link_cmd + objects + ["-o", so], log)))
            _wait(pending.pop(), py, tmp, compile_cmd, log_path, root)
        finally:
            for _, proc in pending:       # after a failure: the units still compiling
                proc.kill()
                proc.wait()
    for obj in objects:
        os.unlink(obj)
    os.unlink(log_path)
    os.chmod(so, 0o700)
    return so


def _wait(job, py, tmp, compile_cmd, log_path, root):
    unit, proc = job
    try:
        code = proc.wait(COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = "timeout"
    if code == 0:
        return
    error = _first_error(log_path) or (f"no answer within {COMPILE_TIMEOUT:g}s"
                                       if code == "timeout" else f"exit status {code}")
    kept = _keep_log(log_path, root, py)
    where = f"; its output: {kept}" if kept else ""
    if _compiler_works(compile_cmd, tmp):
        raise BuildError(f"memdiag's compiled walker does not build for Python {py.short} "
                         f"({unit}: {error}{where}); a newer memdiag may support it",
                         "unsupported")
    raise BuildError(f"the C compiler ({compile_cmd[0]}) fails even on an empty file that "
                     f"includes Python.h ({error}{where}); check CC, and that a compiler and "
                     f"Python {py.short}'s headers are installed (Debian: apt-get install gcc "
                     f"python{py.short}-dev), {advice(py)}", "compiler")


def _first_error(log_path):
    """The first compiler error in the log, without its file position:
    `#error "..."` lines give their text."""
    try:
        with open(log_path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        m = re.search(r"\berror:\s*(.*)", line)
        if m:
            text = m.group(1).strip()
            hashed = re.match(r'#error\s+"?(.*?)"?$', text)
            return hashed.group(1) if hashed else text[:300]
    return None


def _keep_log(log_path, root, py):
    """Move a failed build's log next to the entries (one per Python), 0600."""
    kept = os.path.join(root, f"build-{py.tag}.log")
    try:
        os.replace(log_path, kept)
        os.chmod(kept, 0o600)
        return kept
    except OSError:
        return None


def _compiler_works(compile_cmd, tmp):
    """Whether the compiler builds an empty file that includes Python.h."""
    src = os.path.join(tmp, "memdiag_probe.c")
    with open(src, "w") as f:
        f.write("#include <Python.h>\nint memdiag_probe;\n")
    try:
        p = subprocess.run(compile_cmd + ["-c", src, "-o", src[:-2] + ".o"],
                           capture_output=True, timeout=COMPILE_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


def _check_import(py, so):
    try:
        p = subprocess.run([py.path, "-I", "-c", CHECK, so], capture_output=True, text=True,
                           timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"the walker built for Python {py.short} could not be checked: {e}",
                         "failed") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        raise BuildError(f"the walker built for Python {py.short} does not import in "
                         f"{py.path} ({last}); report it as a bug", "failed")


def _write_info(tmp, py, digest):
    info = {"python": ".".join(map(str, py.version)), "abi": py.tag, "sources": digest,
            "executable": py.executable, "built": time.time()}
    fd = os.open(os.path.join(tmp, walker_cache.BUILD_INFO),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)


# ------------------------------------------------------------ for a target

def plan(python, pkg_dir=PKG_DIR, root=None, uid=None,
         say: Optional[Callable[[str], None]] = None, build_missing=True) -> Plan:
    """Which walker a target started with (or running) `python` will use,
    building it into the cache if it is missing and build_missing; `say`
    gets the one line announcing a build (build()). Never raises BuildError: a failure
    is the Plan's reason."""
    try:
        py = probe(python)
    except BuildError as e:
        return Plan(None, reason=str(e))
    why = refusal(py)
    if why:
        return Plan(py, reason=why)
    try:
        path, origin = find(py, pkg_dir, root, uid)
        return Plan(py, path=path, origin=origin)
    except walker_cache.Missing:
        pass
    except walker_cache.Refused as e:
        return Plan(py, reason=f"{e}; remove it and run `memdiag build-walker --force "
                               f"--python {py.path}`")
    except walker_cache.Unavailable as e:
        return Plan(py, reason=str(e))
    if not build_missing:
        return Plan(py, reason=f"no compiled walker for Python {py.short} next to memdiag "
                               f"or in its cache; {advice(py)}")
    try:
        return Plan(py, path=build(py, pkg_dir, root, say=say), origin="built")
    except BuildError as e:
        return Plan(py, reason=str(e))
