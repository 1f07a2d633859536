"""The whole loop on the sample leaks, end to end: a real server started with
the hook, real HTTP load, `memdiag snapshot` sending a real SIGUSR2, then
`memdiag diff` and `memdiag retainers` on the files."""

import pytest

from conftest import memdiag, memdiag_json

REQUESTS = 1000


def within_one_percent(value, expected):
    return abs(value - expected) <= max(1, expected // 100)


def test_seed_004_captcha_reg_ary(sample):
    t = sample("captcha_leak.py")
    t.load("/captcha", 300)
    a = t.snapshot()
    t.load("/captcha", REQUESTS)
    b = t.snapshot()
    assert t.get("/stats")["leaked"] == 300 + REQUESTS

    d = memdiag_json("diff", a, b)
    first = d["suspects"][0]
    assert first["path"] == "ccap.timer.timer['reg_ary']"
    assert first["type"] == "list"
    assert within_one_percent(first["growth"], REQUESTS), first
    assert (first["len_before"], first["len_after"]) == (300, 300 + REQUESTS)
    assert first["added_type"] == "ccap.cap.CAP"
    caps = next(x for x in d["types"] if x["type"] == "ccap.cap.CAP")
    assert caps["count_delta"] == REQUESTS and caps["new"] == REQUESTS
    assert d["verdict"] == "python"

    r = memdiag_json("retainers", b, "--since", a, "--type", "CAP")
    assert r["objects"] == REQUESTS
    assert r["chains"][0]["path"] == "ccap.timer.timer['reg_ary'][*]"
    assert r["chains"][0]["count"] == REQUESTS
    assert t.alive()


def test_seed_003_event_ids_pile_up(sample):
    t = sample("event_backlog.py")
    t.load("/event", 300)
    a = t.snapshot()
    t.load("/event", REQUESTS)
    b = t.snapshot()

    d = memdiag_json("diff", a, b)
    first = d["suspects"][0]
    assert first["path"] == "eventbus.producer.sent_events"
    assert within_one_percent(first["growth"], REQUESTS), first
    assert first["added_type"] == "str"

    r = memdiag_json("retainers", b, "--type", "str", "--since", a)
    assert r["chains"][0]["path"] == "eventbus.producer.sent_events[*]"
    assert within_one_percent(r["chains"][0]["count"], REQUESTS)


def test_control_bounded_caches_are_not_suspects(sample):
    t = sample("bounded_cache.py")
    t.load("/item", 3000)          # fill every bounded cache
    a = t.snapshot()
    t.load("/item", REQUESTS)
    b = t.snapshot()
    d = memdiag_json("diff", a, b)
    for s in d["suspects"]:
        assert s["growth"] <= REQUESTS // 100, s


def test_seed_000_native_growth_is_called_native(sample):
    t = sample("native_growth.py")
    t.load("/render", 50)
    a = t.snapshot()
    t.load("/render", 200)         # ~50 MiB of malloc'd memory, no Python objects
    b = t.snapshot()
    d = memdiag_json("diff", a, b)
    assert d["verdict"] == "native"
    assert d["memory"]["rss_delta"] > 40 << 20
    assert d["memory"]["python_heap_delta"] < 1 << 20
    code, out, err = memdiag("diff", a, b)
    assert code == 0
    assert "outside Python objects" in out


@pytest.mark.parametrize("snapshots", [3])
def test_three_snapshots_show_all_lengths(sample, snapshots):
    t = sample("captcha_leak.py")
    paths = []
    for _ in range(snapshots):
        t.load("/captcha", 200)
        paths.append(t.snapshot())
    d = memdiag_json("diff", *paths)
    first = d["suspects"][0]
    assert first["path"] == "ccap.timer.timer['reg_ary']"
    assert first["lengths"] == [200, 400, 600]
    assert first["intervals_grown"] == 2
    code, out, _ = memdiag("diff", *paths)
    assert "200 → 400 → 600" in out
