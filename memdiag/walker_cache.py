"""Compiled walkers for other Pythons: where they are kept, and loading one safely.

memdiag installed on one Python (pipx on 3.11) often watches programs that
run another (3.13): the compiled walker built with the install,
`_walker.cpython-311-*.so` next to the hook, does not load there. `memdiag
build-walker --python PATH` (walker_build.py; `memdiag run` and `attach` call
it as needed) compiles the walker's C sources for that interpreter into the
user's cache:

    $XDG_CACHE_HOME/memdiag/walkers/         0700 (default ~/.cache/memdiag/walkers;
                                             $MEMDIAG_WALKER_CACHE names another)
        <abi>-<sources>/                     0700, made whole by one rename
            _walker.<abi>.so                 0700, the extension
            build.json                       0600, {"python", "abi", "sources", ...}

<abi> is the interpreter's extension tag (cpython-313-x86_64-linux-gnu, the
same tag pip gives `_walker` next to the hook), <sources> the first 16 hex
digits of source_hash(): the SHA-256 of the walker's C sources, its headers
and its compiler flags. Another memdiag (older or newer sources) uses
another directory, and build.json's full hash must equal the hook's own
before anything loads.

The target runs the native code it finds there, so load() refuses, with
one line that says why, an entry or file that is a symlink, is owned by
another user than the target's (root excepted), or is writable by group
or others; the same for the cache directory, and for every directory above
it a write by another user (a sticky directory such as /tmp excepted).
Stdlib only: the hook imports this module in the target.

    >>> abi_tag(".cpython-313-x86_64-linux-gnu.so"), python_of("cpython-313-x86_64-linux-gnu")
    ('cpython-313-x86_64-linux-gnu', '3.13')
    >>> entry_name("cpython-313-x86_64-linux-gnu", "0123456789abcdef" * 4)
    'cpython-313-x86_64-linux-gnu-0123456789abcdef'
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import stat
import sys

# The compiled walker's C units, in memdiag/_native/: setup.py builds
# memdiag._walker from this list, and walker_build.py the cached walkers.
# fastmatch.c and dominators.c are other extensions' (memdiag._fastmatch,
# memdiag._dominators).
WALKER_SOURCES = ("module.c", "walk.c", "unreached.c", "edges.c", "labels.c", "types.c",
                  "capture.c", "index.c", "sink.c", "encode.c", "tables.c")
# Flags added after the interpreter's own (setup.py and walker_build.py).
WALKER_CFLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden")
NATIVE = "_native"
BUILD_INFO = "build.json"
MAX_INFO_BYTES = 1 << 16
PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class Unavailable(Exception):
    """No usable compiled walker in the cache; the message is one line."""


class Missing(Unavailable):
    """No entry for this Python and these sources."""


class Refused(Unavailable):
    """An entry exists but is not safe to load (or not from these sources)."""


def abi_tag(suffix=None):
    """The tag in an extension suffix (default: this interpreter's)."""
    suffix = suffix or importlib.machinery.EXTENSION_SUFFIXES[0]
    return suffix.strip(".").rsplit(".", 1)[0]


def python_of(tag):
    """'3.13' for a tag cpython-313-..., else the tag itself."""
    m = re.match(r"cpython-(\d)(\d+)", tag)
    return f"{m.group(1)}.{m.group(2)}" if m else tag


def source_hash(pkg_dir=PKG_DIR):
    """The SHA-256 (hex) of what the walker is built from: WALKER_SOURCES, every
    header in _native/ and WALKER_CFLAGS. OSError if a file is missing."""
    import hashlib
    native = os.path.join(pkg_dir, NATIVE)
    names = list(WALKER_SOURCES) + sorted(n for n in os.listdir(native) if n.endswith(".h"))
    h = hashlib.sha256(" ".join(WALKER_CFLAGS).encode() + b"\0")
    for name in names:
        with open(os.path.join(native, name), "rb") as f:
            data = f.read()
        h.update(b"%s\0%d\0" % (name.encode(), len(data)) + data)
    return h.hexdigest()


def entry_name(tag, digest):
    return f"{tag}-{digest[:16]}"


def cache_root(environ=None):
    """$MEMDIAG_WALKER_CACHE, else $XDG_CACHE_HOME/memdiag/walkers, else
    ~/.cache/memdiag/walkers (relative values are ignored, as XDG says)."""
    environ = os.environ if environ is None else environ
    named = environ.get("MEMDIAG_WALKER_CACHE")
    if named and os.path.isabs(named):
        return named
    base = environ.get("XDG_CACHE_HOME")
    if not (base and os.path.isabs(base)):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "memdiag", "walkers")


# ------------------------------------------------------------------ trust

def check_private(path, uid, kind):
    """path must be a `kind` ("dir" or "file"), not a symlink, owned by uid or
    root, writable by no one else; Refused says why. Returns its lstat."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise Refused(f"cannot read {path}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise Refused(f"{path} is a symlink")
    if not (stat.S_ISDIR if kind == "dir" else stat.S_ISREG)(st.st_mode):
        raise Refused(f"{path} is not a {'directory' if kind == 'dir' else 'regular file'}")
    if st.st_uid not in (uid, 0):
        raise Refused(f"{path} is owned by uid {st.st_uid}, not by uid {uid} (or root)")
    if st.st_mode & 0o022:
        who = {0o002: "others", 0o020: "its group", 0o022: "its group and others"}
        raise Refused(f"{path} is writable by {who[st.st_mode & 0o022]} "
                      f"(mode {stat.S_IMODE(st.st_mode):04o})")
    return st


def check_ancestors(path, uid):
    """No directory above path (its real path) may be changed by another user
    than uid or root, except a sticky one (/tmp): otherwise that user could
    put another directory in its place. Refused says which."""
    d = os.path.realpath(path)
    while True:
        parent = os.path.dirname(d)
        if parent == d:
            return
        try:
            st = os.stat(parent)
        except OSError as e:
            raise Refused(f"cannot read {parent}: {e.strerror}") from None
        if st.st_uid not in (uid, 0):
            raise Refused(f"{parent}, above {path}, is owned by uid {st.st_uid}")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise Refused(f"{parent}, above {path}, is writable by group or others "
                          f"(mode {stat.S_IMODE(st.st_mode):04o})")
        d = parent


def read_info(path, uid):
    """build.json of an entry, checked like the extension; Refused if unreadable."""
    # imported here, not at the top: setup.py loads this module by path,
    # outside the package, for WALKER_SOURCES and WALKER_CFLAGS
    from . import protocol
    check_private(path, uid, "file")
    try:
        return protocol.read_json_object(path, MAX_INFO_BYTES)
    except OSError as e:
        raise Refused(f"cannot read {path}: {e.strerror}") from None
    except ValueError:
        raise Refused(f"{path} is not a build record") from None


def locate(root=None, pkg_dir=PKG_DIR, suffix=None, uid=None, digest=None):
    """The extension in the cache built for this Python (suffix: its extension
    suffix) from pkg_dir's sources, checked: its path. Missing if there is
    none, Refused if there is one that must not load."""
    root = root or cache_root()
    suffix = suffix or importlib.machinery.EXTENSION_SUFFIXES[0]
    uid = os.geteuid() if uid is None else uid
    if digest is None:
        try:
            digest = source_hash(pkg_dir)
        except OSError as e:
            raise Unavailable(f"memdiag's C sources are not next to it ({e.filename}), so a "
                              f"cached walker cannot be checked against them") from None
    entry = os.path.join(root, entry_name(abi_tag(suffix), digest))
    if not os.path.lexists(entry):
        raise Missing(f"no compiled walker for this Python and this memdiag in {root}")
    check_ancestors(root, uid)
    check_private(root, uid, "dir")
    check_private(entry, uid, "dir")
    info = read_info(os.path.join(entry, BUILD_INFO), uid)
    if info.get("sources") != digest:
        raise Refused(f"{entry} was built from other sources than this memdiag's "
                      f"(sources {str(info.get('sources'))[:16]}, expected {digest[:16]})")
    so = os.path.join(entry, "_walker" + suffix)
    check_private(so, uid, "file")
    return so


def load(package, root=None, pkg_dir=PKG_DIR):
    """Import the cached walker for this interpreter as `<package>._walker`
    (the hook's package: memdiag or _memdiag_hook); Unavailable says why not."""
    so = locate(root, pkg_dir)
    import importlib.util
    name = package + "._walker"
    loader = importlib.machinery.ExtensionFileLoader(name, so)
    spec = importlib.util.spec_from_file_location(name, so, loader=loader)
    try:
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except Exception as e:
        text = str(e).strip().splitlines()
        raise Refused(f"{so} did not load: {text[0] if text else type(e).__name__}") from None
    sys.modules[name] = module
    return module


# --------------------------------------------------------------- listing

def available_walkers(pkg_dir=PKG_DIR, root=None):
    """[(python version, path)] of the compiled walkers this memdiag can use:
    built with the install (next to it), then those in the cache built from
    its sources that pass load()'s checks, by version.

        >>> available_walkers()                              # doctest: +SKIP
        [('3.11', '/opt/pipx/venvs/memdiag/.../memdiag/_walker.cpython-311-x86_64-linux-gnu.so'),
         ('3.13', '/home/me/.cache/memdiag/walkers/cpython-313-x86_64-linux-gnu-3f1c.../_walker.cpython-313-x86_64-linux-gnu.so')]
    """
    found = []
    try:
        names = sorted(os.listdir(pkg_dir))
    except OSError:
        names = []
    for name in names:
        m = re.match(r"_walker\.(.+)\.so$", name)
        if m:
            found.append((python_of(m.group(1)), os.path.join(pkg_dir, name)))
    root = root or cache_root()
    try:
        digest = source_hash(pkg_dir)
        entries = sorted(os.listdir(root))
    except OSError:
        entries = []
    for name in entries:
        tag, _, short = name.rpartition("-")
        if not tag or short != digest[:16]:
            continue
        try:
            found.append((python_of(tag), locate(root, pkg_dir, f".{tag}.so", digest=digest)))
        except Unavailable:
            continue
    return sorted(found, key=lambda item: _version_key(item[0]))


def _version_key(version):
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))
