"""Builds the optional compiled walker. If it cannot be compiled (no compiler,
no Python headers), memdiag installs without it and uses the pure-Python walker."""

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


# The C sources live in memdiag/_native/ (see the comment at the top of
# module.c): not in memdiag/ itself, where a _walker/ directory would shadow
# the extension module memdiag._walker.
NATIVE = "memdiag/_native"
WALKER_SOURCES = ["module.c", "capture.c", "edges.c", "encode.c", "index.c", "labels.c", "sink.c", "tables.c", "types.c", "unreached.c", "walk.c"]
HEADERS = ["compat.h", "encode.h", "format.h", "hash.h", "index.h", "py311.h", "py312.h", "py313.h", "sink.h", "tables.h", "walker.h"]
CFLAGS = ["-O2", "-std=c11", "-Wall", "-fvisibility=hidden"]

setup(
    ext_modules=[Extension("memdiag._walker", [f"{NATIVE}/{s}" for s in WALKER_SOURCES],
                           depends=[f"{NATIVE}/{h}" for h in HEADERS],
                           extra_compile_args=CFLAGS, optional=True),
                 Extension("memdiag._fastmatch", [f"{NATIVE}/fastmatch.c"],
                           depends=[f"{NATIVE}/hash.h"],
                           extra_compile_args=CFLAGS, optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
