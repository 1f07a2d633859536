"""Build small, real snapshot files from a hand-written object graph.

    g = Graph()
    mod = g.module("ccap.timer")
    d = g.obj("dict", kind="dict"); g.attr_dict(mod, d)
    lst = g.obj("list", kind="list", length=2); g.item(d, "reg_ary", lst)
    ...
    g.write(path, pid=1, time=1.0)

Objects get addresses you choose (to control matching between snapshots);
the builder numbers them breadth-first from the roots like the walkers do and
writes every column through snapfile.Writer.
"""

from __future__ import annotations

import itertools
from collections import deque

from memdiag import snapfile as sf


class Obj:
    def __init__(self, addr, type_name, kind, size, length):
        self.addr = addr
        self.type_name = type_name
        self.kind = kind
        self.size = size
        self.length = length
        self.edges = []      # [(Obj, (kind, payload_or_name))]


class Graph:
    def __init__(self):
        self.objs = []
        self.roots = []      # [(Obj, root_kind, desc, name)]
        self.bounds = []     # [(Obj, bound)]: the trailer's "bounds" table
        self._addr = itertools.count(0x10000, 0x40)

    def obj(self, type_name, kind="instance", size=56, length=0, addr=None):
        o = Obj(next(self._addr) if addr is None else addr, type_name, kind, size, length)
        self.objs.append(o)
        return o

    def module(self, name, addr=None):
        m = self.obj("module", "module", 72, 0, addr)
        self.roots.append((m, sf.ROOT_MODULE, name, ""))
        d = self.obj("dict", "dict", 1000, 0, None if addr is None else addr + 8)
        m.edges.append((d, ("attr", "__dict__")))
        m.dict = d
        return m

    def local(self, desc, name, o):
        self.roots.append((o, sf.ROOT_LOCAL, desc, name))

    def item(self, d, key, value):
        """d[key] = value with a name-like key (a key str object is made too)."""
        k = self.obj("str", "str", 49 + len(key), len(key))
        d.edges.append((k, ("key", None)))
        d.edges.append((value, ("item", key)))
        d.length += 1

    def opaque_item(self, d, key_obj, value):
        d.edges.append((key_obj, ("key", None)))
        d.edges.append((value, ("opaque", key_obj)))
        d.length += 1

    def append(self, lst, value):
        lst.edges.append((value, ("index", len(lst.edges))))
        lst.length += 1

    def attr(self, o, name, value):
        o.edges.append((value, ("attr", name)))

    def bound(self, o, maxlen):
        """Record o's bound (a deque's maxlen, an lru_cache's maxsize) in the trailer."""
        self.bounds.append((o, maxlen))

    def write(self, path, pid=1, time=1.0, seq=1, rss=None):
        labels = {s: i for i, s in enumerate(sf.WELL_KNOWN_LABELS)}

        def label(s):
            return labels.setdefault(s, len(labels))
        types = {}
        index = {}
        order = []
        parent = {}
        plabel = {}
        self._check_unique()
        # BFS in phases like the walkers: all module roots, walked to the end;
        # then local-variable roots; then the rest.
        root_rows = []
        edges_out = {}
        q = deque()
        for phase in sorted({r[1] for r in self.roots}):
            for o, kind, desc, name in self.roots:
                if kind != phase:
                    continue
                if id(o) not in index:
                    index[id(o)] = len(order)
                    order.append(o)
                    parent[id(o)] = 0
                    plabel[id(o)] = 0
                    q.append(o)
                root_rows.append((index[id(o)], kind, label(desc), label(name)))
            while q:
                o = q.popleft()
                rows = []
                for t, (k, p) in o.edges:
                    code = self._code(k, p, label, index)
                    if id(t) not in index:
                        index[id(t)] = len(order)
                        order.append(t)
                        parent[id(t)] = index[id(o)] + 1
                        plabel[id(t)] = code
                        q.append(t)
                    rows.append((index[id(t)], code))
                edges_out[id(o)] = rows
        with open(path, "wb") as f:
            w = sf.Writer(f)
            heap = 0
            for o in order:
                t = types.setdefault(o.type_name, (len(types), o.kind))[0]
                w.add(sf.COL_ADDR, (o.addr,))
                w.add(sf.COL_TYPE, (t,))
                w.add(sf.COL_SIZE, (o.size,))
                w.add(sf.COL_LENGTH, (o.length,))
                rows = edges_out.get(id(o), [])
                w.add(sf.COL_NEDGES, (len(rows),))
                w.add(sf.COL_PARENT, (parent[id(o)],))
                w.add(sf.COL_PLABEL, (plabel[id(o)],))
                if rows:
                    w.add(sf.COL_ETARGET, [r[0] for r in rows])
                    w.add(sf.COL_ELABEL, [r[1] for r in rows])
                heap += o.size
            for r in root_rows:
                w.add(sf.COL_ROOT_OBJ, (r[0],))
                w.add(sf.COL_ROOT_KIND, (r[1],))
                w.add(sf.COL_ROOT_DESC, (r[2],))
                w.add(sf.COL_ROOT_NAME, (r[3],))
            names = sorted(types, key=lambda n: types[n][0])
            extra = {}
            if self.bounds:
                extra["bounds"] = [[index[id(o)], b] for o, b in self.bounds if id(o) in index]
            w.finish({
                **extra,
                "objects": len(order), "edges": sum(len(v) for v in edges_out.values()),
                "roots": len(root_rows), "strings": 0, "string_bytes": 0,
                "types": names, "type_kinds": [types[n][1] for n in names],
                "labels": sorted(labels, key=labels.get), "sites": [],
                "python_heap": heap,
                "meta": {"pid": pid, "argv": ["test"], "time": time, "seq": seq,
                         "rss": rss, "python_heap": heap, "mode": "inline",
                         "walker": "test"},
            })
        return path

    def _check_unique(self):
        addrs = [o.addr for o in self.objs]
        assert len(addrs) == len(set(addrs)), "two objects share an address"

    @staticmethod
    def _code(k, p, label, index):
        if k == "attr":
            return sf.L_ATTR | label(p) << 3
        if k == "item":
            return sf.L_ITEM | label(p) << 3
        if k == "index":
            return sf.L_INDEX | p << 3
        if k == "key":
            return sf.L_KEY
        if k == "opaque":
            return sf.L_ITEM_OPAQUE | index[id(p)] << 3
        return sf.L_NONE


def leak_heap(n_leaked, cache_len, jump_len, addr_base=0x100000):
    """The captcha leak in miniature (sample_leaks/captcha_leak.py):
    ccap.timer.timer['reg_ary'] holds n_leaked ccap.cap.CAP objects (each
    with a 6-character .text); app.cache is a dict of cache_len bytes values
    under token-like (opaque) keys; app.jumpy a list of jump_len ints.
    The same arguments give the same addresses, so two calls with a bigger
    n_leaked are two snapshots of one leaking process."""
    g = Graph()
    mod = g.module("ccap.timer", addr=addr_base)
    timer = g.obj("dict", "dict", 232, addr=addr_base + 0x100)
    g.item(mod.dict, "timer", timer)
    reg = g.obj("list", "list", 88, addr=addr_base + 0x200)
    g.item(timer, "reg_ary", reg)
    for i in range(n_leaked):
        cap = g.obj("ccap.cap.CAP", "instance", 56, addr=addr_base + 0x1000000 + i * 0x100)
        g.append(reg, cap)
        g.attr(cap, "text", g.obj("str", "str", 55, 6, addr=addr_base + 0x2000000 + i * 0x100))
    app = g.module("app", addr=addr_base + 0x300)
    cache = g.obj("dict", "dict", 4696, addr=addr_base + 0x400)
    g.item(app.dict, "cache", cache)
    for i in range(cache_len):
        # a token-like key: opaque
        key = g.obj("str", "str", 81, 32, addr=addr_base + 0x3000000 + i * 0x100)
        g.opaque_item(cache, key, g.obj("bytes", "bytes", 100, 67,
                                        addr=addr_base + 0x4000000 + i * 0x100))
    jumpy = g.obj("list", "list", 88, addr=addr_base + 0x500)
    g.item(app.dict, "jumpy", jumpy)
    for i in range(jump_len):
        g.append(jumpy, g.obj("int", "int", 28, 0, addr=addr_base + 0x5000000 + i * 0x20))
    return g
