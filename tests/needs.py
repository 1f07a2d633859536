"""What a test needs from the machine, and what happens when it is missing.

A skip must never hide something CI should meet. CI runs as root, with the
compiled walker built, so there each of these is a failure; elsewhere the
test skips and says why.

- `compiled_walker_missing(what)`: memdiag._walker or memdiag._fastmatch is
  not built for this interpreter. Fails, saying how to build it, unless
  MEMDIAG_ALLOW_PURE=1 asked for the pure-Python fallback: then it skips.
- `tool_missing(why)`: a debugger, Chromium or another Python that `make
  test` installs is missing. Fails with MEMDIAG_REQUIRE_TOOLS=1 (CI), else
  skips.
- `needs_root(why)`: the test must run as root (to start programs as uid
  65534, mount a tmpfs, chown a file to another user). As another user it
  skips, saying so; as root it returns.
- `root_refused(what)`: something root may do was refused (no CAP_SYS_ADMIN
  in a container, no setpriv). As root that fails; as another user it skips.

Example, at the top of a test that runs a program as uid 65534:

    needs_root("runs the CLI as uid 65534")
"""

from __future__ import annotations

import os
import sys

import pytest

ALLOW_PURE = os.environ.get("MEMDIAG_ALLOW_PURE") == "1"
IS_ROOT = os.geteuid() == 0
REQUIRE_TOOLS = os.environ.get("MEMDIAG_REQUIRE_TOOLS") == "1"
VERSION = "%d.%d" % sys.version_info[:2]


def compiled_walker_missing(what):
    """Fail (or, with MEMDIAG_ALLOW_PURE=1, skip): `what` is not built."""
    if ALLOW_PURE:
        pytest.skip(f"{what} is not built for Python {VERSION} (MEMDIAG_ALLOW_PURE=1: "
                    f"testing the pure-Python fallback)")
    pytest.fail(f"{what} is not built for Python {VERSION}, and the tests require it: build it "
                f"(scripts/mkvenv, or `python setup.py build_ext --inplace`, which shows the "
                f"compiler's error), or set MEMDIAG_ALLOW_PURE=1 to test the pure-Python "
                f"fallback with the compiled-walker tests skipped", pytrace=False)


def tool_missing(why):
    """A tool the project's setup installs (a debugger, Chromium, another
    Python) is missing: a failure with MEMDIAG_REQUIRE_TOOLS=1 (CI, where
    `make test` installed it), a skip saying why otherwise."""
    if REQUIRE_TOOLS:
        pytest.fail(f"{why}, although MEMDIAG_REQUIRE_TOOLS=1 (CI): `make test` installs it",
                    pytrace=False)
    pytest.skip(why)


def needs_root(why):
    """Skip unless running as root, saying what root is needed for."""
    if not IS_ROOT:
        pytest.skip(f"needs root: {why} (runs as uid {os.geteuid()}; CI runs it as root)")


def root_refused(what):
    """`what` (one line) was refused: a failure as root, a skip otherwise."""
    if IS_ROOT:
        pytest.fail(f"{what}, although the tests run as root: this test must run where CI "
                    f"runs (root with CAP_SYS_ADMIN, util-linux's mount and setpriv)",
                    pytrace=False)
    pytest.skip(f"needs root: {what} (runs as uid {os.geteuid()})")
