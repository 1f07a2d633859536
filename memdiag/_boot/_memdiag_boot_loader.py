"""Loads memdiag's stdlib-only hook into a target under a private name.

Shared by `memdiag run` (sitecustomize.py, at interpreter startup) and
`memdiag attach` (the code it injects into a running process). The package
directory is loaded as `_memdiag_hook`, so only the hook's own modules
(stdlib only) are imported, never memdiag's dependencies, and never a copy
of memdiag that the program itself has installed:

    >>> import memdiag, os
    >>> hook = load_hook(os.path.dirname(memdiag.__file__))   # importing it installs nothing
    >>> hook.__name__, hook.is_installed()
    ('_memdiag_hook.hook', False)

A process that has loaded it already (an earlier `run` or `attach`) gets the
same module back: one hook state, one signal handler. This module itself is
loaded by path, and kept in sys.modules under
its own private name, by its callers (sitecustomize.py, attach's payload):
the hook leaves modules named `_memdiag*` out of snapshots, where a module
dropped after use would linger as an unreachable cycle.
"""

import importlib
import importlib.util
import os
import sys

PRIVATE_NAME = "_memdiag_hook"
LOADER_NAME = "_memdiag_boot_loader"   # what callers load this file as


def load_hook(pkg_dir):
    """The hook module of the memdiag package in pkg_dir, loaded as _memdiag_hook.hook."""
    loaded = sys.modules.get(PRIVATE_NAME + ".hook")
    if loaded is not None:
        return loaded
    if PRIVATE_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PRIVATE_NAME, os.path.join(pkg_dir, "__init__.py"),
            submodule_search_locations=[pkg_dir])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PRIVATE_NAME] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[PRIVATE_NAME]
            raise
    return importlib.import_module(PRIVATE_NAME + ".hook")
