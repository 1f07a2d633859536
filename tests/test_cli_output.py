"""What the analysis commands print: text and --json agree, exit codes are
distinct, rich tables hold together at a fixed width, and NO_COLOR and
MEMDIAG_PLAIN do what README says.

The snapshots are real files (snapbuild.leak_heap, the captcha leak in
miniature). The rich tests print through rich at a pinned width of 100
columns (in-process, and once through a real pseudo-terminal).
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys

import pytest

from conftest import ROOT
from safety_helpers import run_cli_full
from snapbuild import leak_heap

from memdiag.analysis.diff import diff
from memdiag.analysis.retainers import retainer_chains
from memdiag.analysis.top import top
from memdiag.cli import errors
from memdiag.model import Snapshot
from memdiag.render.blocks import print_rich
from memdiag.render.diff import SUSPECTS_TITLE, diff_blocks
from memdiag.render.retainers import retainers_blocks
from memdiag.render.top import top_blocks

MIB = 1 << 20
REG_ARY = "ccap.timer.timer['reg_ary']"
WIDTH = 100


@pytest.fixture(autouse=True)
def plain_output(monkeypatch):
    monkeypatch.setenv("MEMDIAG_PLAIN", "1")
    monkeypatch.delenv("MEMDIAG_DEBUG", raising=False)


def snaps(tmp_path, before, after, rss=(100 * MIB, 100 * MIB)):
    """Two snapshot files of one process: leak_heap(*before), then leak_heap(*after)."""
    a = leak_heap(*before).write(str(tmp_path / "a.snap"), pid=4242, time=1.0, seq=1, rss=rss[0])
    b = leak_heap(*after).write(str(tmp_path / "b.snap"), pid=4242, time=2.0, seq=2, rss=rss[1])
    return a, b


def table_rows(text, title):
    """The rows of a plain-text table: lists of cells (split on 2+ spaces),
    up to the blank line, "(none)" or the caption after them."""
    lines = text.splitlines()
    at = lines.index(title)
    rows = []
    for line in lines[at + 2:]:
        cells = re.split(r"\s{2,}", line.strip())
        if not line or line == "(none)" or len(cells) < 2:
            break
        rows.append(cells)
    return rows


def suspects_both_ways(a, b, *extra):
    """(paths in the text's Suspects table, paths in --json's suspects)."""
    code, out, err = run_cli_full(["diff", a, b, *extra])
    assert code == 0, (code, out, err)
    text = [row[1] for row in table_rows(out, SUSPECTS_TITLE)]
    code, out, err = run_cli_full(["diff", a, b, "--json", *extra])
    assert code == 0, (code, out, err)
    data = json.loads(out)
    return text, [s["path"] for s in data["suspects"]], data["verdict"]


# ------------------------------------------------ text and --json agree

def test_native_verdict_hides_the_same_suspects_in_text_and_json(tmp_path):
    # RSS +300 MiB; only app.jumpy grew (5 -> 45 ints, about 1 KiB): it explains
    # none of the growth. Neither output names it, and --exit-code finds nothing.
    a, b = snaps(tmp_path, (200, 10, 5), (200, 10, 45), rss=(100 * MIB, 400 * MIB))
    text, js, verdict = suspects_both_ways(a, b)
    assert verdict == "native"
    assert text == js == []
    assert run_cli_full(["diff", a, b, "--exit-code"])[0] == errors.EXIT_OK


def test_native_verdict_keeps_the_same_big_suspect_in_text_and_json(tmp_path):
    # RSS +10 MiB, the Python heap +1.3 MiB (under a quarter: native); reg_ary
    # grew by 1.3 MiB, more than a tenth of RSS growth, app.jumpy by 1 KiB.
    a, b = snaps(tmp_path, (200, 10, 5), (12200, 10, 45), rss=(100 * MIB, 110 * MIB))
    text, js, verdict = suspects_both_ways(a, b)
    assert verdict == "native"
    assert text == js == [REG_ARY]
    assert run_cli_full(["diff", a, b, "--exit-code"])[0] == errors.EXIT_FOUND


def test_python_verdict_names_every_suspect_in_text_and_json(tmp_path):
    a, b = snaps(tmp_path, (200, 10, 5), (1200, 10, 45))
    text, js, verdict = suspects_both_ways(a, b)
    assert verdict == "python"
    assert text == js == [REG_ARY, "app.jumpy"]


# ------------------------------------------------------------ exit codes

def test_exit_code_found_and_none(tmp_path):
    a, b = snaps(tmp_path, (200, 10, 5), (700, 10, 5))
    assert run_cli_full(["diff", a, b, "--exit-code"])[0] == errors.EXIT_FOUND == 1
    assert run_cli_full(["diff", a, b])[0] == errors.EXIT_OK
    assert run_cli_full(["diff", a, a, "--exit-code"])[0] == errors.EXIT_OK


def test_internal_error_has_its_own_exit_code(tmp_path, monkeypatch):
    """A bug (here: the analysis raising) is exit 70 and one line, never 1."""
    a, _ = snaps(tmp_path, (200, 10, 5), (700, 10, 5))
    import memdiag.cli.top as top_cmd

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(top_cmd, "analyze_top", broken)
    code, out, err = run_cli_full(["top", a])
    assert code == errors.EXIT_INTERNAL == 70
    assert err == ("memdiag: error: internal error: ZeroDivisionError: division by zero "
                   "(set MEMDIAG_DEBUG=1 for a traceback)\n")
    assert code != errors.EXIT_FOUND


def test_exit_codes_are_distinct_and_readme_lists_them():
    codes = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert len(set(codes.values())) == len(codes), codes
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    table = re.findall(r"^\| (\d+) \| ", readme.split("## JSON and exit codes", 1)[1],
                       re.MULTILINE)
    assert sorted(map(int, table)) == sorted(codes.values())
    # errors.py's docstring has the same table
    documented = re.findall(r"^ *(\d+)  ", errors.__doc__, re.MULTILINE)
    assert sorted(map(int, documented)) == sorted(codes.values())


# ------------------------------------------- rich tables at a fixed width

def rich_text(blocks):
    console = __import__("rich.console", fromlist=["Console"]).Console(
        width=WIDTH, force_terminal=True, record=True, file=io.StringIO())
    print_rich(blocks, console=console)
    return console.export_text()


def assert_table_whole(text, headers, cells):
    """The header row holds every header, unbroken, in order; each cell text
    appears whole on one line."""
    lines = text.splitlines()
    assert all(len(line.rstrip()) <= WIDTH for line in lines), text
    header_rows = [[c.strip() for c in line.split("┃")] for line in lines if "┃" in line]
    assert headers in header_rows, (headers, text)
    for cell in cells:
        assert any(cell in line for line in lines), (cell, text)


def test_rich_diff_at_fixed_width(tmp_path):
    a, b = snaps(tmp_path, (200, 10, 5), (700, 10, 45))
    result = diff([Snapshot.load(a), Snapshot.load(b)])
    text = rich_text(diff_blocks(result))
    assert_table_whole(text, ["#", "path", "type", "before", "after", "growth", "added",
                              "bytes"], [REG_ARY, "app.jumpy", "ccap.cap.CAP"])
    assert_table_whole(text, ["type", "before", "after", "delta", "new", "freed", "bytes"],
                       ["ccap.cap.CAP"])


def test_rich_diff_of_three_snapshots_at_fixed_width(tmp_path):
    paths = [leak_heap(n, 10, 5).write(str(tmp_path / f"{k}.snap"), pid=1, time=k, seq=k)
             for k, n in enumerate((100, 1100, 12100))]
    result = diff([Snapshot.load(p) for p in paths])
    text = rich_text(diff_blocks(result))
    assert_table_whole(text, ["#", "path", "type", "lengths", "growth", "added", "bytes"],
                       [REG_ARY, "100 → 1,100 → 12,100"])
    assert_table_whole(text, ["#", "path", "before", "after", "delta"],
                       [REG_ARY, "10.9 KiB", "+1.3 MiB"])


def test_rich_top_at_fixed_width(tmp_path):
    _, b = snaps(tmp_path, (200, 10, 5), (700, 10, 5))
    text = rich_text(top_blocks(top(Snapshot.load(b))))
    assert_table_whole(text, ["type", "count", "bytes"], ["ccap.cap.CAP"])
    assert_table_whole(text, ["path", "type", "length", "bytes"], [REG_ARY, "app.cache"])


def test_rich_retainers_at_fixed_width(tmp_path):
    a, b = snaps(tmp_path, (200, 10, 5), (700, 10, 5))
    old, new = Snapshot.load(a), Snapshot.load(b)
    chains, total = retainer_chains(new, "CAP", since=old)
    text = rich_text(retainers_blocks(b, "ccap.cap.CAP", chains, total, since=a))
    assert_table_whole(text, ["#", "path", "objects", "bytes", "retained"],
                       [REG_ARY + "[*]", f"example: {REG_ARY}[200]"])


# ----------------------------------- a real terminal: NO_COLOR, MEMDIAG_PLAIN

COLOUR = re.compile(r"\x1b\[[0-9;]*?(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")
ESCAPE = re.compile(r"\x1b\[")


def in_terminal(args, **env_changes):
    """Run the CLI with stdout on a pseudo-terminal 100 columns wide: its output."""
    import fcntl
    import struct
    import termios
    env = {k: v for k, v in os.environ.items()
           if k not in ("MEMDIAG_PLAIN", "NO_COLOR", "FORCE_COLOR", "MEMDIAG_DEBUG")}
    env.update(TERM="xterm-256color", COLUMNS=str(WIDTH), LINES="50", **env_changes)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, WIDTH, 0, 0))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "memdiag.cli.main", *map(str, args)],
                                stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=subprocess.PIPE, env=env, cwd=ROOT)
    finally:
        os.close(slave)
    out = bytearray()
    try:
        while len(out) < 1 << 20:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:      # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        try:
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == 0, (proc.returncode, err)
    return out.decode("utf-8", "replace").replace("\r\n", "\n")


def test_terminal_gets_rich_colour_no_color_and_plain(tmp_path):
    # A native verdict: its warning is bold yellow in colour.
    a, b = snaps(tmp_path, (200, 10, 5), (12200, 10, 45), rss=(100 * MIB, 110 * MIB))
    coloured = in_terminal(["diff", a, b])
    assert "━" in coloured and COLOUR.search(coloured), coloured
    no_color = in_terminal(["diff", a, b], NO_COLOR="1")
    assert "━" in no_color and ESCAPE.search(no_color), no_color   # tables, bold
    assert not COLOUR.search(no_color), no_color
    empty_no_color = in_terminal(["diff", a, b], NO_COLOR="")       # empty: not set
    assert COLOUR.search(empty_no_color), empty_no_color
    plain = in_terminal(["diff", a, b], MEMDIAG_PLAIN="1")
    assert not ESCAPE.search(plain) and "━" not in plain, plain
    assert [r[1] for r in table_rows(plain, SUSPECTS_TITLE)] == [REG_ARY]
    # the rich table, 100 columns wide, keeps the path and the headers whole
    plain_text = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    assert_table_whole(plain_text, ["#", "path", "type", "before", "after", "growth", "added",
                                    "bytes"], [REG_ARY])
