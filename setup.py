"""Builds the optional compiled walker. If it cannot be compiled (no compiler,
no Python headers), memdiag installs without it and uses the pure-Python walker."""

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as e:  # pragma: no cover - depends on the machine
            print(f"memdiag: compiled walker not built ({e}); using the pure-Python walker",
                  file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # pragma: no cover
            print(f"memdiag: compiled walker not built ({e}); using the pure-Python walker",
                  file=sys.stderr)


# The C sources live in memdiag/_native/ (their layout: the comment at the
# top of module.c), not in memdiag/ itself, where a _walker/ directory would
# shadow the extension module memdiag._walker.
NATIVE = "memdiag/_native"
WALKER_SOURCES = ["module.c", "walk.c", "unreached.c", "edges.c", "labels.c", "types.c",
                  "capture.c", "index.c", "sink.c", "encode.c", "tables.c"]
# every header (a change rebuilds; the sdist carries them)
HEADERS = sorted(os.path.basename(h) for h in glob.glob(f"{NATIVE}/*.h"))
CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden"]

setup(
    ext_modules=[Extension("memdiag._walker", [f"{NATIVE}/{s}" for s in WALKER_SOURCES],
                           depends=[f"{NATIVE}/{h}" for h in HEADERS],
                           extra_compile_args=CFLAGS, optional=True),
                 Extension("memdiag._fastmatch", [f"{NATIVE}/fastmatch.c"],
                           depends=[f"{NATIVE}/hash.h"],
                           extra_compile_args=CFLAGS, optional=True),
                 Extension("memdiag._dominators", [f"{NATIVE}/dominators.c"],
                           extra_compile_args=CFLAGS, optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
