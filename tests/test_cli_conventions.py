"""What a new user reaches for first: an example in every command's --help,
--version, and shell completion (tests/test_install.py runs the last two
from an installed wheel)."""

from __future__ import annotations

import pytest

from conftest import memdiag
from safety_helpers import run_cli_full

from memdiag.cli.main import app


def command_names():
    return [c.name or c.callback.__name__ for c in app.registered_commands]


@pytest.mark.parametrize("name", command_names())
def test_every_command_help_ends_with_a_real_example(name):
    code, out, err = memdiag(name, "--help")     # a subprocess: `run` execs
    assert code == 0, err
    lines = out.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.strip() in ("Example:", "Examples:"))
    examples = [line.strip() for line in lines[start + 1:]]
    assert examples, out
    for example in examples:     # the lines as written, not rewrapped
        assert example.split("  #")[0].split()[:2] == ["$", "memdiag"], examples
        assert example.split()[2] == name, examples


def test_version_names_memdiag_and_the_compiled_walker():
    code, out, err = run_cli_full(["--version"])
    assert code == 0 and err == "", err
    lines = out.splitlines()
    assert lines[0].startswith("memdiag ")
    assert any(line.startswith("compiled walker: ") for line in lines), out


def test_root_help_offers_version_and_completion():
    code, out, err = run_cli_full(["--help"])
    assert code == 0, err
    for option in ("--version", "--install-completion", "--show-completion"):
        assert option in out
    assert "ps " in out and "snapshot " in out
