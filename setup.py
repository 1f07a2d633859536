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


setup(
    ext_modules=[Extension("memdiag._walker", ["memdiag/_walker.c"],
                           extra_compile_args=["-O2", "-std=c11", "-Wall"],
                           optional=True),
                 Extension("memdiag._fastmatch", ["memdiag/_fastmatch.c"],
                           extra_compile_args=["-O2", "-std=c11", "-Wall"],
                           optional=True),
                 Extension("memdiag._dominators", ["memdiag/_dominators.c"],
                           extra_compile_args=["-O2", "-std=c11", "-Wall"],
                           optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
