"""Builds the compiled walker (memdiag._walker) and address matcher (memdiag._fastmatch).

They are required: without them memdiag falls back to the pure-Python walker,
which is tens of times slower and whose fork child un-shares most of the
target's memory. So a failed build stops the install with the compiler's
error and what to do, unless MEMDIAG_ALLOW_PURE=1 asks for that fallback
(then the install goes on with a warning).
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ALLOW_PURE = os.environ.get("MEMDIAG_ALLOW_PURE") == "1"


def _failure_advice(ext, error):
    version = "%d.%d" % sys.version_info[:2]
    return (f"memdiag: {ext.name} did not build for Python {version} ({error}); the compiler's "
            f"output is above.\n"
            f"  Fix: install a C compiler and this Python's headers (Debian: apt-get install gcc "
            f"python{version}-dev; pyenv and scripts/debian-python interpreters carry their "
            f"headers), then install again.\n"
            f"  Or set MEMDIAG_ALLOW_PURE=1 to install without it: memdiag then uses the "
            f"pure-Python walker (tens of times slower, and its fork child un-shares "
            f"the target's memory).")


class RequiredBuildExt(build_ext):
    """build_ext that stops with advice when an extension fails, unless the
    pure-Python fallback was asked for (MEMDIAG_ALLOW_PURE=1)."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError, LinkError, a missing compiler (OSError)
            if not ALLOW_PURE:
                # SystemExit: setuptools' own handlers would turn other errors
                # into a bare "error: command 'gcc' failed".
                raise SystemExit(_failure_advice(ext, e)) from e
            print(f"memdiag: WARNING: {ext.name} was not built ({e}); MEMDIAG_ALLOW_PURE=1, so "
                  f"memdiag installs with the pure-Python walker (tens of times slower)",
                  file=sys.stderr)


setup(
    ext_modules=[Extension("memdiag._walker", ["memdiag/_walker.c"],
                           extra_compile_args=["-O2", "-std=c11", "-Wall"]),
                 Extension("memdiag._fastmatch", ["memdiag/_fastmatch.c"],
                           extra_compile_args=["-O2", "-std=c11", "-Wall"])],
    cmdclass={"build_ext": RequiredBuildExt},
)
