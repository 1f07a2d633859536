"""Builds the compiled walker (memdiag._walker), the address matcher (memdiag._fastmatch)
and the dominator tree (memdiag._dominators), and puts memdiag-enable.pth at
the top of site-packages (MEMDIAG_ENABLE=1: memdiag/_boot/enable.py), in a
wheel and in an editable install alike.

They are required: without them memdiag falls back to the pure-Python walker,
which is tens of times slower and whose fork child un-shares most of the
target's memory. So a failed build stops the install with the compiler's
error and what to do, unless MEMDIAG_ALLOW_PURE=1 asks for that fallback
(then the install goes on with a warning).
"""

import base64
import glob
import hashlib
import os
import re
import sys
import tempfile
import zipfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

ALLOW_PURE = os.environ.get("MEMDIAG_ALLOW_PURE") == "1"
HERE = os.path.dirname(os.path.abspath(__file__))


def _short(error):
    """One line for a build error; the compiler's command line and output are above it.

    >>> _short(OSError("Command ['gcc', '-c', 'x.c'] returned non-zero exit status 1."))
    'the compiler exited with status 1'
    """
    text = (str(error).splitlines() or [type(error).__name__])[0]
    status = re.search(r"returned non-zero exit status (\d+)", text)
    if status:
        return f"the compiler exited with status {status.group(1)}"
    return text if len(text) <= 160 else text[:150] + " [...]"


class RequiredBuildExt(build_ext):
    """build_ext that stops with advice when an extension fails, unless the
    pure-Python fallback was asked for (MEMDIAG_ALLOW_PURE=1)."""

    def build_extensions(self):
        self._not_built = []
        super().build_extensions()
        # What was not built (MEMDIAG_ALLOW_PURE=1) has nothing to copy or install.
        self.extensions = [e for e in self.extensions if e not in self._not_built]

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError, LinkError, a missing compiler (OSError)
            if not ALLOW_PURE:
                # SystemExit: setuptools' own handlers would turn other errors
                # into a bare "error: command 'gcc' failed".
                raise SystemExit(self._advice(ext, e)) from e
            self._not_built.append(ext)
            # An earlier in-place build would be imported instead of the fallback.
            stale = os.path.join(HERE, self.get_ext_filename(ext.name))
            if os.path.exists(stale):
                os.unlink(stale)
            print(f"memdiag: WARNING: {ext.name} was not built ({_short(e)}); "
                  f"MEMDIAG_ALLOW_PURE=1, so memdiag installs with the pure-Python walker "
                  f"(tens of times slower)", file=sys.stderr)

    def _compiler_works(self):
        """Whether the compiler builds an empty file that includes Python.h."""
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "memdiag_probe.c")
            with open(src, "w") as f:
                f.write("#include <Python.h>\nint memdiag_probe;\n")
            try:
                self.compiler.compile([src], output_dir=d)
            except Exception:
                return False
        return True

    def _advice(self, ext, error):
        version = "%d.%d" % sys.version_info[:2]
        error = _short(error)
        if self._compiler_works():
            why = (f"The compiler works, so the errors above are in memdiag's C source: the "
                   f"compiled walker may not support Python {version} yet (or it is a bug: "
                   f"report it with the errors above).")
        else:
            why = (f"The compiler could not build even an empty file that includes Python.h. "
                   f"Install a C compiler and this Python's headers (Debian: apt-get install "
                   f"gcc python{version}-dev; pyenv and scripts/debian-python interpreters "
                   f"carry their headers), and check CC if you set it.")
        return (f"memdiag: {ext.name} did not build for Python {version}: {error}\n"
                f"  {why}\n"
                f"  To install without it, set MEMDIAG_ALLOW_PURE=1: memdiag then uses the "
                f"pure-Python walker (tens of times slower, and its fork child un-shares the "
                f"target's memory).")


# MEMDIAG_ENABLE=1 (memdiag/_boot/enable.py): this .pth file goes to the top of
# site-packages, where Python runs its one line in every process at startup.
PTH = "memdiag-enable.pth"
PTH_SOURCE = os.path.join("memdiag", "_boot", PTH)


class BuildPyWithPth(build_py):
    """build_py that also puts the .pth at the top of the build (the wheel's root,
    which installs to site-packages itself)."""

    def run(self):
        super().run()
        self.copy_file(PTH_SOURCE, os.path.join(self.build_lib, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


class EditableWheelWithPth(editable_wheel):
    """An editable install (pip install -e) builds no build_lib to copy from:
    the .pth is added to the editable wheel, and RECORD with it."""

    def run(self):
        super().run()
        for name in os.listdir(self.dist_dir):
            if name.endswith(".whl") and ".editable" in name:
                add_to_wheel(os.path.join(self.dist_dir, name), PTH, _read(PTH_SOURCE))


def _read(path):
    with open(os.path.join(HERE, path), "rb") as f:
        return f.read()


def add_to_wheel(wheel, arcname, data):
    """Add a file at the root of a wheel and list it in its RECORD."""
    with zipfile.ZipFile(wheel) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    if any(info.filename == arcname for info, _ in entries):
        return
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    line = f"{arcname},sha256={digest},{len(data)}\n".encode()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for info, content in entries:
            if info.filename.endswith(".dist-info/RECORD"):
                content = line + content
            z.writestr(info, content)
        z.writestr(arcname, data)


# The C sources live in memdiag/_native/ (their layout: the comment at the
# top of module.c), not in memdiag/ itself, where a _walker/ directory would
# shadow the extension module memdiag._walker.
NATIVE = "memdiag/_native"


def _walker_cache():
    """memdiag/walker_cache.py (stdlib only), loaded by path: it holds the
    walker's source list and flags, which `memdiag build-walker` uses too."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "memdiag_walker_cache", os.path.join(HERE, "memdiag", "walker_cache.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CACHE = _walker_cache()
WALKER_SOURCES = list(_CACHE.WALKER_SOURCES)
# every header (a change rebuilds; the sdist carries them)
HEADERS = sorted(os.path.basename(h) for h in glob.glob(f"{NATIVE}/*.h"))
CFLAGS = list(_CACHE.WALKER_CFLAGS)

setup(
    ext_modules=[Extension("memdiag._walker", [f"{NATIVE}/{s}" for s in WALKER_SOURCES],
                           depends=[f"{NATIVE}/{h}" for h in HEADERS],
                           extra_compile_args=CFLAGS),
                 Extension("memdiag._fastmatch", [f"{NATIVE}/fastmatch.c"],
                           depends=[f"{NATIVE}/hash.h"], extra_compile_args=CFLAGS),
                 Extension("memdiag._dominators", [f"{NATIVE}/dominators.c"],
                           extra_compile_args=CFLAGS)],
    cmdclass={"build_ext": RequiredBuildExt, "build_py": BuildPyWithPth,
              "editable_wheel": EditableWheelWithPth},
)
