"""memdiag report and diff --html on hand-built snapshots: what the page holds,
that names from a snapshot cannot become markup or script, that the page
can load nothing, and how the file is written. The page in a real browser:
tests/test_report_browser.py."""

import json
import os
import re
import stat
from html.parser import HTMLParser

import pytest

from conftest import SAMPLES, memdiag
from memdiag.analysis.diff import DiffResult, diff
from memdiag.analysis.report import build_report
from memdiag.analysis.retained import retained_sizes
from memdiag.analysis.results import Suspect
from memdiag.model import Snapshot
from memdiag.render.html import SCRIPT, STYLE, html_page
from memdiag.render.markup import csp_hash

from snapbuild import Graph
from test_secrets import fragments, holders  # noqa: F401  (holders: a fixture)

# Names a program may choose, made to break out of every context the page has:
# element text, attribute values, the JSON block, the style sheet, SVG.
EVIL_MODULE = "evil</script><script>window.__pwned=1</script>"
EVIL_TYPE = "<img src=x onerror=\"window.__pwned=2\">Cls"
EVIL_KEY = "k'\"><svg onload=window.__pwned=3></style>-->\u2028<!--\u202e"
EVIL_ATTR = "a</title><iframe src=\"https://example.com/\">"


def hostile_heap(n, base=0x100000):
    """EVIL_MODULE[EVIL_KEY] is a list holding n EVIL_TYPE objects, each with
    an EVIL_ATTR attribute holding a str."""
    g = Graph()
    mod = g.module(EVIL_MODULE, addr=base)
    lst = g.obj("list", "list", 88 + 8 * n, addr=base + 0x100)
    g.item(mod.dict, EVIL_KEY, lst)
    for i in range(n):
        o = g.obj(EVIL_TYPE, "instance", 56, addr=base + 0x100000 + i * 0x100)
        g.append(lst, o)
        g.attr(o, EVIL_ATTR, g.obj("str", "str", 60, 11, addr=base + 0x200000 + i * 0x100))
    return g


def write_hostile_snapshots(directory, lengths=(3, 20)):
    """Snapshots of one process whose leak is named only by hostile names."""
    paths = []
    for k, n in enumerate(lengths, 1):
        path = os.path.join(str(directory), f"evil-{k}.snap")
        hostile_heap(n).write(path, pid=4242, time=1000.0 + 60 * k, seq=k,
                              rss=(50 << 20) + (k << 20))
        paths.append(path)
    return paths


class Page(HTMLParser):
    """Every element, attribute and text run of a page, as a browser's
    tokenizer sees them."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags = []            # (tag, attrs)
        self.text = []
        self.scripts = []         # (attrs, content)
        self.styles = []
        self._in = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in = (tag, dict(attrs), [])

    def handle_endtag(self, tag):
        if self._in and tag == self._in[0]:
            kind, attrs, parts = self._in
            (self.scripts if kind == "script" else self.styles).append((attrs, "".join(parts)))
            self._in = None

    def handle_data(self, data):
        if self._in:
            self._in[2].append(data)
        else:
            self.text.append(data)

    def data_block(self):
        blocks = [c for a, c in self.scripts if a.get("type") == "application/json"]
        assert len(blocks) == 1
        return json.loads(blocks[0])


def report_of(tmp_path, paths, *args):
    out = tmp_path / "report.html"
    code, stdout, stderr = memdiag("report", *paths, "-o", out, *args)
    assert code == 0, (code, stdout, stderr)
    return out, out.read_text(encoding="utf-8")


# ------------------------------------------------------------ escaping

def test_hostile_names_stay_text(tmp_path):
    paths = write_hostile_snapshots(tmp_path)
    _, text = report_of(tmp_path, paths)
    page = Page(text)
    # Only the page's own elements: no img, iframe, svg onload, second style...
    tags = {t for t, _ in page.tags}
    assert not tags & {"img", "iframe", "object", "embed", "link", "base", "form"}, tags
    assert [t for t, _ in page.tags].count("script") == 2      # the data block, the script
    assert [t for t, _ in page.tags].count("style") == 1
    for tag, attrs in page.tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
        assert "src" not in attrs, (tag, attrs)
    # ... and the names are there, as text, whole (bidi and line separators
    # shown escaped, not obeyed)
    visible = "".join(page.text)
    shown_key = EVIL_KEY.replace("\u2028", "\\u2028").replace("\u202e", "\\u202e")
    assert f"{EVIL_MODULE}.{shown_key}" in visible        # a module global: .name
    assert EVIL_TYPE in visible
    assert f".{EVIL_ATTR}" in visible
    assert "\u2028" not in text and "\u202e" not in text
    # The JSON block gives the names back exactly.
    data = page.data_block()
    assert data["suspects"][0]["path"] == f"{EVIL_MODULE}.{EVIL_KEY}"
    assert data["suspects"][0]["added_type"] == EVIL_TYPE
    held = data["suspects"][0]["holds"]["children"][0]
    assert (held["type"], held["count"], held["new"]) == (EVIL_TYPE, 20, 17)
    assert held["children"][0]["step"] == f".{EVIL_ATTR}"


def test_json_block_cannot_end_early(tmp_path):
    paths = write_hostile_snapshots(tmp_path)
    _, text = report_of(tmp_path, paths)
    start = text.index('<script type="application/json" id="memdiag-data">')
    block = text[start:text.index("</script>", start)]
    # the block is ASCII JSON without <, > or &: no </script>, <!-- or entity inside
    assert not re.search(r"[<>&]", block.split(">", 1)[1])
    assert block.isascii()


# ------------------------------------------------------- no network at all

def test_content_security_policy_allows_only_the_inline_style_and_script(tmp_path):
    paths = write_hostile_snapshots(tmp_path)
    _, text = report_of(tmp_path, paths)
    page = Page(text)
    # the policy comes before anything that could load or run
    assert [t for t, _ in page.tags[:4]][:4] == ["html", "head", "meta", "meta"]
    csp = page.tags[3][1]
    assert csp["http-equiv"] == "Content-Security-Policy"
    policy = dict(p.strip().split(" ", 1) for p in csp["content"].split(";"))
    assert policy["default-src"] == "'none'"
    assert "unsafe" not in csp["content"]
    (_, style), = page.styles
    code = [c for a, c in page.scripts if "type" not in a]
    assert policy["style-src"] == csp_hash(style) == csp_hash(STYLE)
    assert policy["script-src"] == csp_hash(code[0]) == csp_hash(SCRIPT)
    # nothing refers outside the page: no style attributes (the hash does not
    # cover them), no src, no href but in-page anchors, no url() or @import
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert attrs.get("href", "#").startswith("#"), (tag, attrs)
    assert "url(" not in style and "@import" not in style


# ------------------------------------------------------ what the page says

def leak_heap(n, base=0x100000):
    g = Graph()
    mod = g.module("ccap.timer", addr=base)
    timer = g.obj("dict", "dict", 232, addr=base + 0x100)
    g.item(mod.dict, "timer", timer)
    reg = g.obj("list", "list", 88, addr=base + 0x200)
    g.item(timer, "reg_ary", reg)
    for i in range(n):
        cap = g.obj("ccap.cap.CAP", "instance", 56, addr=base + 0x1000000 + i * 0x100)
        g.append(reg, cap)
        g.attr(cap, "text", g.obj("str", "str", 55, 6, addr=base + 0x2000000 + i * 0x100))
        g.attr(cap, "image", g.obj("bytes", "bytes", 233, 200,
                                   addr=base + 0x3000000 + i * 0x100))
    return g


def three(tmp_path, lengths=(200, 500, 800)):
    return [Snapshot.load(leak_heap(n).write(str(tmp_path / f"{k}.snap"), pid=7, time=10.0 * k,
                                             seq=k, rss=(30 << 20) + k * (1 << 20)))
            for k, n in enumerate(lengths, 1)]


def test_report_data_suspect_path_retained_and_holds(tmp_path):
    snaps = three(tmp_path)
    report = build_report(snaps, diff(snaps))
    assert report.verdict == diff(snaps).verdict
    assert [s.python_heap for s in report.snapshots] == [s.python_heap for s in snaps]
    d = report.suspects[0]
    assert d.suspect.path == d.path.text() == "ccap.timer.timer['reg_ary']"
    assert [s.text for s in d.path.steps] == [".timer", "['reg_ary']"]
    # retained: the list and, per CAP, the CAP, its str and its bytes
    assert d.retained_after == int(retained_sizes(snaps[-1])[d.suspect.index])
    assert d.retained_after == 88 + 800 * (56 + 55 + 233)
    assert d.retained_before == 88 + 200 * (56 + 55 + 233)
    assert d.retained_delta == 600 * (56 + 55 + 233)
    caps, = d.holds.children
    assert (caps.step, caps.type, caps.count, caps.new) == ("[*]", "ccap.cap.CAP", 800, 600)
    assert (caps.size, caps.retained) == (800 * 56, 800 * (56 + 55 + 233))
    assert [(g.step, g.type, g.count) for g in caps.children] == [
        (".image", "bytes", 800), (".text", "str", 800)]
    caps_row = next(t for t in report.types if t.growth.type == "ccap.cap.CAP")
    assert caps_row.counts == (200, 500, 800)
    assert report.retained and report.groups == ()


def test_held_groups_beyond_width_are_counted(tmp_path):
    snaps = three(tmp_path)
    d = build_report(snaps, diff(snaps), width=1).suspects[0]
    caps, = d.holds.children
    (image,) = caps.children          # the largest kept, the other one counted
    assert image.step == ".image"
    assert caps.others == (1, 800, 800 * 55)


def test_grouped_suspects_have_their_section(tmp_path):
    snaps = three(tmp_path)
    result = diff(snaps)
    group = Suspect("app.USERS[*]", "list", (400, 900, 1400), 56000, "app.Event", 2,
                    kind="group", containers=200)
    grouped = DiffResult(result.paths, result.types, [group, result.suspects[0]], result.memory,
                         True)
    report = build_report(snaps, grouped)
    assert [d.suspect.path for d in report.groups] == ["app.USERS[*]"]
    page = Page(html_page(report, generated=0))
    assert "Grouped suspects" in "".join(page.text)
    assert "200 containers with this path shape" in "".join(page.text)
    assert page.data_block()["suspects"][0]["containers"] == 200
    # ungrouped results show no empty section
    plain = Page(html_page(build_report(snaps, result), generated=0))
    assert not any(a.get("id") == "groups" for _, a in plain.tags)


def test_page_numbers_match_the_diff(tmp_path):
    snaps = three(tmp_path)
    result = diff(snaps)
    page = Page(html_page(build_report(snaps, result), generated=0))
    data = page.data_block()
    assert data["memory"]["rss_delta"] == result.memory.rss_delta
    assert data["suspects"][0]["lengths"] == [200, 500, 800]
    text = "".join(page.text)
    assert "200 → 500 → 800" in text
    assert "Python objects grew" in text
    # a Python-heap column per snapshot (legend swatches are "key c-heap"); three charts
    assert sum(1 for t, a in page.tags if t == "rect" and a.get("class") == "c-heap") == 3
    assert sum(1 for t, a in page.tags if t == "svg" and a.get("class") == "chart") == 3


# ------------------------------------------------------------ the file

def test_never_overwrites_without_force(tmp_path):
    paths = write_hostile_snapshots(tmp_path)
    out = tmp_path / "report.html"
    out.write_text("mine")
    code, _, err = memdiag("report", *paths, "-o", out)
    assert code == 2 and "will not overwrite it without --force" in err
    assert out.read_text() == "mine"
    code, stdout, err = memdiag("report", *paths, "-o", out, "--force")
    assert code == 0, err
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert f"wrote {out}" in stdout and "next: open file://" in stdout
    assert sorted(os.listdir(tmp_path)) == ["evil-1.snap", "evil-2.snap", "report.html"]


def test_file_mode_is_0644_less_umask(tmp_path):
    paths = write_hostile_snapshots(tmp_path)
    out, _ = report_of(tmp_path, paths)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644 & ~current_umask()


def current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_diff_html_writes_the_same_page(tmp_path):
    paths = write_hostile_snapshots(tmp_path)
    _, text = report_of(tmp_path, paths)
    other = tmp_path / "diff.html"
    code, stdout, err = memdiag("diff", *paths, "--json", "--html", other)
    assert code == 0, err
    json.loads(stdout)                      # stdout is still the diff's JSON
    assert f"wrote {other}" in err
    assert Page(other.read_text(encoding="utf-8")).data_block() == Page(text).data_block()
    code, _, err = memdiag("diff", *paths, "--html", other)
    assert code == 2 and "--force" in err


@pytest.mark.parametrize("args, code, message", [
    (["one.snap"], 2, "at least two snapshots"),
    (["missing-1.snap", "missing-2.snap"], 3, "no such file"),
])
def test_bad_input_is_one_line(tmp_path, args, code, message):
    got, stdout, err = memdiag("report", *args, "-o", tmp_path / "r.html")
    assert got == code and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_output_into_a_missing_directory_is_one_line(tmp_path):
    paths = write_hostile_snapshots(tmp_path)
    code, _, err = memdiag("report", *paths, "-o", tmp_path / "no" / "r.html")
    assert code == 2 and "cannot write" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------ no secrets

def test_report_of_default_snapshots_holds_no_secret(holders, tmp_path):
    """A report shows what the snapshots hold: of a program holding secrets
    (tests/programs/secret_holder.py), no fragment of any of them, with
    every table as long as it gets. (The same search finds the secrets in a
    --strings snapshot: tests/test_secrets.py.)"""
    h = holders("install")
    a = h.dump(str(tmp_path / "a.snap"))
    b = h.dump(str(tmp_path / "b.snap"))
    out, _ = report_of(tmp_path, [a, b], "--top", "1000")
    data = out.read_bytes()
    for key, secret in h.secrets.items():
        assert not any(f in data for f in fragments(secret)), key


# ------------------------------------------------------ a real, traced run

def test_traced_run_shows_where_the_leaked_objects_were_allocated(sample, tmp_path):
    """seed 004 under tracemalloc (memdiag run --trace-frames 1): the tree
    says where the CAPs were made (the factory in ccap/__init__.py)."""
    t = sample("captcha_leak.py", extra_env={"MEMDIAG_TRACE_FRAMES": "1"})
    t.load("/captcha", 100)
    a = t.snapshot()
    t.load("/captcha", 300)
    b = t.snapshot()
    _, text = report_of(tmp_path, [a, b])
    page = Page(text)
    caps = page.data_block()["suspects"][0]["holds"]["children"][0]
    assert (caps["type"], caps["new"]) == ("ccap.cap.CAP", 300)
    factory = os.path.join(SAMPLES, "ccap", "__init__.py")
    with open(factory) as f:
        line = next(n for n, text in enumerate(f, 1) if "cap = CAP(" in text)
    assert caps["site"] == f"{factory}:{line}", caps["site"]
    visible = "".join(page.text)
    assert "recorded (tracemalloc)" in visible
    assert f"allocated at {caps['site']}" in visible
