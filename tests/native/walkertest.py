"""Builds and loads _walkertest, the compiled walker's test-only entry points
(tests/native/walkertest.c with the sink's sources from memdiag/_native/),
for the running interpreter. memdiag does not ship it: setup.py never builds
it; the tests do, on first use.

    sys.path.insert(0, "tests/native"); import walkertest
    mod = walkertest.load()      # builds tests/native/build/_walkertest-<hash>*.so if needed

The file name carries a hash of the sources and headers, so an edit to any
of them builds a new one. The build runs in a child process with the same
interpreter (setuptools' build_ext, memdiag's own compiler flags); a failure
raises RuntimeError with the compiler's output.
"""

import glob
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NATIVE = os.path.join(ROOT, "memdiag", "_native")
SOURCES = [os.path.join(HERE, "walkertest.c")] + [
    os.path.join(NATIVE, name) for name in ("sink.c", "encode.c", "tables.c")]
BUILD = os.path.join(HERE, "build")
NAME = "_walkertest"


def _digest():
    h = hashlib.sha256(sys.version.encode())
    for path in SOURCES + sorted(glob.glob(os.path.join(NATIVE, "*.h"))):
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


def path():
    """Where the module built from the current sources is (or goes)."""
    return os.path.join(BUILD, f"{NAME}-{_digest()}{sysconfig.get_config_var('EXT_SUFFIX')}")


def build(out):
    """Compile the module into out (replaced atomically)."""
    from setuptools import Distribution, Extension
    with tempfile.TemporaryDirectory() as tmp:
        ext = Extension(NAME, SOURCES, include_dirs=[NATIVE],
                        extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra",
                                            "-fvisibility=hidden"])
        dist = Distribution({"name": NAME, "ext_modules": [ext]})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib = os.path.join(tmp, "lib")
        cmd.build_temp = os.path.join(tmp, "temp")
        cmd.ensure_finalized()
        cmd.run()
        built = cmd.get_ext_fullpath(NAME)
        os.makedirs(BUILD, exist_ok=True)
        part = f"{out}.{os.getpid()}.part"
        shutil.copyfile(built, part)
        os.replace(part, out)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for old in glob.glob(os.path.join(BUILD, f"{NAME}-*{suffix}")):
        if old != out:
            os.unlink(old)


def load():
    """The _walkertest module, built first if the sources changed."""
    if NAME in sys.modules:
        return sys.modules[NAME]
    out = path()
    if not os.path.exists(out):
        r = subprocess.run([sys.executable, __file__, "build", out], capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"tests/native/walkertest.c did not build:\n{r.stdout[-3000:]}"
                               f"\n{r.stderr[-3000:]}")
    loader = importlib.machinery.ExtensionFileLoader(NAME, out)
    spec = importlib.util.spec_from_file_location(NAME, out, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    sys.modules[NAME] = mod
    return mod


if __name__ == "__main__":
    if sys.argv[1:2] == ["build"]:
        build(sys.argv[2])
    else:
        print(load().__file__)
