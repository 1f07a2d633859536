"""Snapshot: one snapshot file, read-only and numpy-backed, read column by
column through named accessors. The analyses' result types live in
memdiag.analysis.results.

    >>> snap = Snapshot.load("b.snap")
    >>> snap.n_objects, snap.meta["pid"]
    (1437, 4242)
    >>> caps = snap.find_type("CAP")
    >>> len(caps), snap.type_name_of(caps[0]), int(snap.size[caps[0]])
    (700, 'ccap.cap.CAP', 56)
    >>> reg = snap.parent_at(caps[0]) - 1          # the list that discovered it
    >>> snap.type_name_of(reg), snap.length_at(reg), len(snap.edges_of(reg)[0])
    ('list', 700, 700)

Columns are decoded on first use, so a `diff` never decodes the edge arrays.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from . import snapfile as sf

_DTYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


class SnapshotError(Exception):
    """A snapshot that cannot be used; the message is one line for a human."""


# Metadata the analyses and renderers compute with, and what each must be.
_META_COUNTS = ("pid", "seq", "rss", "python_heap")     # int, 0 <= v < 2**63
_META_TEXTS = ("python", "mode", "walker")
_MAX_TIME = 253402300799                                # 9999-12-31, for localtime


def _bad_meta(meta):
    """The first metadata field of the wrong type or range, or None."""
    for key in _META_COUNTS:
        v = meta.get(key)
        if v is not None and (type(v) is not int or not 0 <= v < 1 << 63):
            return f"'{key}' in the metadata"
    v = meta.get("time")
    if v is not None and (type(v) not in (int, float) or not 0 <= v <= _MAX_TIME):
        return "'time' in the metadata"
    for key in _META_TEXTS:
        v = meta.get(key)
        if v is not None and not isinstance(v, str):
            return f"'{key}' in the metadata"
    v = meta.get("argv")
    if v is not None and not (isinstance(v, list) and all(isinstance(a, str) for a in v)):
        return "'argv' in the metadata"
    return None


def _read_bounds(table, n_objects):
    """The trailer's "bounds" table, [[object index, bound], ...], as a dict
    (the first pair for an object wins); {} when absent; None when it is not
    a list of pairs of ints in range (the file is then corrupted).

    >>> _read_bounds([[3, 4096], [7, 100]], 10), _read_bounds(None, 10)
    ({3: 4096, 7: 100}, {})
    >>> _read_bounds([[12, 5]], 10), _read_bounds([[1, True]], 10), _read_bounds({}, 10)
    (None, None, None)
    """
    if table is None:
        return {}
    if not isinstance(table, list) or len(table) > n_objects:
        return None
    out = {}
    for pair in table:
        if not (isinstance(pair, list) and len(pair) == 2
                and type(pair[0]) is int and type(pair[1]) is int
                and 0 <= pair[0] < n_objects and 0 <= pair[1] < 1 << 63):
            return None
        out.setdefault(pair[0], pair[1])
    return out


def decode_chunk(width, transform, count, raw):
    """One encoded column chunk back to a numpy array.

    A shuffled column without delta coding comes back in the narrowest
    unsigned type that holds its values (byte planes that are all zero are
    skipped), so sizes and lengths take 2 or 4 bytes an object, not 8.
    """
    dt = _DTYPES[width]
    if transform & sf.T_SHUFFLE and width > 1:
        planes = np.frombuffer(raw, np.uint8).reshape(width, count)
        if not transform & sf.T_DELTA:
            used = [k for k in range(width) if planes[k].any()]
            top = used[-1] + 1 if used else 1
            out_dt = _DTYPES[1 if top == 1 else 2 if top == 2 else 4 if top <= 4 else 8]
            a = planes[0].astype(out_dt)
            for k in used:
                if k:
                    a |= planes[k].astype(out_dt) << out_dt(8 * k)
            return a
        a = np.ascontiguousarray(planes.T).view(dt).reshape(count)
    else:
        a = np.frombuffer(raw, dt)
    if transform & sf.T_DELTA:
        if transform & sf.T_ZIGZAG:
            a = (a >> dt(1)) ^ (dt(0) - (a & dt(1)))
        a = np.cumsum(a, dtype=dt)
    return a


def _join(parts):
    """np.concatenate(parts), letting go of each part once it is copied: the
    pages of the result are touched only as they are filled, so the peak is
    about one column, not two."""
    if len(parts) <= 1:
        return parts[0] if parts else np.zeros(0, np.uint32)
    out = np.empty(sum(len(p) for p in parts), np.result_type(*parts))
    pos = 0
    for k in range(len(parts)):
        n = len(parts[k])
        out[pos:pos + n] = parts[k]
        parts[k] = None
        pos += n
    return out


def decode_side_by_side(snaps, columns):
    """Decode these columns, named as Snapshot's accessors ("addr", "type",
    ...), of several snapshots, one thread per snapshot.

    zlib and numpy release the GIL while they work, so two snapshots decode
    in about the time of one on two cores. Each snapshot is touched by one
    thread only (its reader's file position is its own). A SnapshotError in
    any of them is raised here.
    """
    def work(snap):
        for name in columns:
            getattr(snap, name)

    if len(snaps) < 2 or (os.cpu_count() or 1) < 2:
        for snap in snaps:
            work(snap)
        return
    import threading
    errors = []

    def guarded(snap):
        try:
            work(snap)
        except Exception as e:  # re-raised in the calling thread
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(snap,), daemon=True) for snap in snaps[1:]]
    for t in threads:
        t.start()
    guarded(snaps[0])
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class Snapshot:
    """One snapshot file, loaded lazily, column by column.

    Object indexes are BFS discovery order: `parent[i] < i` for every object
    that is not a root, and following `parent` leads to a root along a
    shortest path.
    """

    def __init__(self, reader, path, progress=None):
        self._reader = reader
        self.path = str(path)
        self.progress = progress
        t = reader.trailer
        self.trailer = t
        self.meta = t.get("meta", {})
        self.n_objects = t["objects"]
        self.n_edges = t["edges"]
        self.n_roots = t["roots"]
        self.type_names = list(t.get("types", []))
        self.type_kinds = list(t.get("type_kinds", []))
        self.labels = list(t.get("labels", [])) or list(sf.WELL_KNOWN_LABELS)
        self.sites = t.get("sites", [])
        self._cols = {}
        self._chunks = OrderedDict()
        self._name_ids = None
        self._bounds = {}
        # What analyses compute once per snapshot and share (the dominator tree).
        self.derived = {}

    @classmethod
    def load(cls, path, progress=None):
        """Open and validate a snapshot; raises SnapshotError with one line."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise SnapshotError(f"{path} is a directory, not a snapshot file")
        if os.path.exists(path) and not os.path.isfile(path):
            # Opening a FIFO would wait for a writer forever; a device never ends.
            raise SnapshotError(f"{path} is not a regular file, not a snapshot file")
        try:
            reader = sf.Reader.open(path)
        except FileNotFoundError:
            raise SnapshotError(f"{path}: no such file") from None
        except PermissionError:
            raise SnapshotError(f"{path}: permission denied") from None
        except IsADirectoryError:
            raise SnapshotError(f"{path} is a directory, not a snapshot file") from None
        except sf.SnapshotFormatError as e:
            raise SnapshotError(f"{path}: {e}") from None
        except OSError as e:
            raise SnapshotError(f"{path}: {e.strerror or e}") from None
        snap = cls(reader, path, progress)
        snap._validate_tables()
        return snap

    def close(self):
        self._reader.close()

    # -------------------------------------------------------------- columns
    # A column is decoded whole on first use (`column`), or chunk by chunk
    # where a command needs a few values (`_at`, `_take`): a diff reads the
    # parents and edges of a handful of containers, not of every object.
    # The analyses read columns through the named accessors further down.

    CHUNK_CACHE = 64

    def column(self, col):
        """A whole column by its snapfile id (COL_*), decoded and checked once.

        For tools and tests that read the format itself; the analyses use
        the named accessors (`parent`, `edge_targets`, `parent_at`, ...).
        """
        a = self._cols.get(col)
        if a is not None:
            return a
        if not self._reader.has(col):
            n = self.n_objects if sf.COLUMN_COUNT_KEY[col] == "objects" else 0
            a = np.zeros(n, np.uint32)
        else:
            parts = [self._chunk(col, k, cache=False)
                     for k in range(len(self._reader.chunks[col]))]
            a = _join(parts)
            if col == sf.COL_NEDGES and int(a.sum(dtype=np.uint64)) != self.n_edges:
                self._corrupt("edge counts do not add up")
        a.flags.writeable = False
        self._cols[col] = a
        for key in [k for k in self._chunks if k[0] == col]:
            del self._chunks[key]
        return a

    def _starts(self, col):
        starts = self._cols.get(("starts", col))
        if starts is None:
            counts = [c.count for c in self._reader.chunks.get(col, [])]
            starts = np.zeros(len(counts) + 1, np.int64)
            np.cumsum(counts, out=starts[1:])
            self._cols[("starts", col)] = starts
        return starts

    def _chunk(self, col, k, cache=True):
        key = (col, k)
        part = self._chunks.get(key)
        if part is not None:
            self._chunks.move_to_end(key)
            return part
        c = self._reader.chunks[col][k]
        try:
            raw = self._reader.read_chunk(c)
        except sf.SnapshotFormatError as e:
            raise SnapshotError(f"{self.path}: {e}") from None
        part = decode_chunk(c.width, c.transform, c.count, raw)
        if self.progress:
            self.progress(len(raw))
        self._check(col, part, int(self._starts(col)[k]))
        if cache:
            self._chunks[key] = part
            if len(self._chunks) > self.CHUNK_CACHE:
                self._chunks.popitem(last=False)
        return part

    def _at(self, col, i):
        """One value of a column, decoding only its chunk."""
        full = self._cols.get(col)
        if full is not None:
            return int(full[i])
        starts = self._starts(col)
        if not 0 <= i < starts[-1]:
            raise IndexError(i)
        k = int(np.searchsorted(starts, i, "right")) - 1
        return int(self._chunk(col, k)[i - starts[k]])

    def _take(self, col, idx):
        """Values of a column at many indexes, decoding only the chunks they fall in."""
        full = self._cols.get(col)
        idx = np.asarray(idx, dtype=np.int64)
        if full is not None:
            return full[idx]
        if not len(idx):
            return np.zeros(0, np.uint64)
        starts = self._starts(col)
        if idx.min() < 0 or idx.max() >= starts[-1]:
            raise IndexError("index out of range")
        ks = np.searchsorted(starts, idx, "right") - 1
        # Group the indexes by chunk once (not one scan of idx per chunk).
        order = np.argsort(ks, kind="stable")
        chunks, firsts = np.unique(ks[order], return_index=True)
        bounds = np.append(firsts, len(order))
        out = None
        few = len(chunks) <= self.CHUNK_CACHE // 2
        for n, k in enumerate(chunks.tolist()):
            sel = order[bounds[n]:bounds[n + 1]]
            part = self._chunk(col, k, cache=few)
            vals = part[idx[sel] - starts[k]]
            if out is None or out.dtype.itemsize < vals.dtype.itemsize:
                out = np.zeros(len(idx), vals.dtype) if out is None else out.astype(vals.dtype)
            out[sel] = vals
        return out

    def _check(self, col, a, base=0):
        """Values that index other arrays must be in range: corrupt files fail here."""
        n = self.n_objects
        bad = None
        if not len(a):
            return
        if col == sf.COL_TYPE and int(a.max()) >= len(self.type_names):
            bad = "type index out of range"
        elif col in (sf.COL_ETARGET, sf.COL_ROOT_OBJ) and int(a.max()) >= n:
            bad = "object index out of range"
        elif col == sf.COL_PARENT:
            if np.any(a.astype(np.int64) > np.arange(base, base + len(a), dtype=np.int64)):
                bad = "parent index out of order"
        elif col in (sf.COL_ROOT_DESC, sf.COL_ROOT_NAME) and int(a.max()) >= len(self.labels):
            bad = "label index out of range"
        elif col == sf.COL_SITE and int(a.max()) > len(self.sites):
            bad = "site index out of range"   # 1-based; np.bincount sizes by the max
        if bad:
            self._corrupt(bad)

    def _corrupt(self, why):
        raise SnapshotError(f"{self.path}: corrupted snapshot ({why})")

    def _validate_tables(self):
        if self.n_objects and not self.type_names:
            raise SnapshotError(f"{self.path}: corrupted snapshot (no type table)")
        bad = _bad_meta(self.meta)
        if bad is None and not isinstance(self.sites, list):
            bad = "'sites' table"
        if bad is None:
            self._bounds = _read_bounds(self.trailer.get("bounds"), self.n_objects)
            if self._bounds is None:
                bad = "'bounds' table"
        if bad:
            raise SnapshotError(f"{self.path}: corrupted snapshot (bad {bad})")

    def bounds(self):
        """{object index: bound}: the maximum length the walker read for a
        bounded container (deque maxlen, lru_cache maxsize, an int `maxsize`
        or `maxlen` attribute), from the trailer's optional "bounds" table
        (docs/FORMAT.md); empty when the snapshot records none."""
        return self._bounds

    # ------------------------------------------------------------ accessors
    # Whole columns, one value per object in index (BFS discovery) order,
    # decoded on first use and kept: read-only numpy arrays of unsigned
    # integers (sizes, lengths, types and labels in as few bytes as their
    # values need). Widen (astype(np.int64)) before arithmetic that can go
    # negative.

    @property
    def addr(self):
        """id() of each object in the process it was taken from."""
        return self.column(sf.COL_ADDR)

    @property
    def type(self):
        """Index into `type_names` / `type_kinds`."""
        return self.column(sf.COL_TYPE)

    @property
    def size(self):
        """Bytes of the object itself (not of what it refers to); see README."""
        return self.column(sf.COL_SIZE)

    @property
    def length(self):
        """len() of dicts, lists, tuples, sets, deques, str and bytes; else 0."""
        return self.column(sf.COL_LENGTH)

    @property
    def nedges(self):
        """Outgoing edges recorded per object (they sit in `edge_targets` in
        object order)."""
        return self.column(sf.COL_NEDGES)

    @property
    def parent(self):
        """Index + 1 of the object whose edge discovered each object, 0 for a
        root: `parent[i] - 1 < i`, and following it is a shortest path to a root."""
        return self.column(sf.COL_PARENT)

    @property
    def plabel(self):
        """Label code of that discovering edge: (payload << 3) | snapfile.L_* kind."""
        return self.column(sf.COL_PLABEL)

    @property
    def site(self):
        """1-based index into `sites` (see site_text), 0 where unknown; all 0
        unless the snapshot was taken with --trace-frames."""
        return self.column(sf.COL_SITE)

    # Per edge, grouped by source object: object i's edges are at
    # edge_range(i) (edges_of(i) reads only those).

    @property
    def edge_targets(self):
        """Object index each edge points to."""
        return self.column(sf.COL_ETARGET)

    @property
    def edge_labels(self):
        """Label code of each edge, as in `plabel`."""
        return self.column(sf.COL_ELABEL)

    # Per root entry (an object may be a root more than once); roots_by_object()
    # is the same as a dict with the labels resolved.

    @property
    def root_objects(self):
        """Object index of each root entry."""
        return self.column(sf.COL_ROOT_OBJ)

    @property
    def root_kinds(self):
        """snapfile.ROOT_* kind of each root entry (ROOT_UNREACHED: no root reached it)."""
        return self.column(sf.COL_ROOT_KIND)

    # A few values, decoding only the chunks that hold them.

    def parent_at(self, i):
        """parent[i] (index + 1, 0 for a root)."""
        return self._at(sf.COL_PARENT, i)

    def plabel_at(self, i):
        """plabel[i]."""
        return self._at(sf.COL_PLABEL, i)

    def length_at(self, i):
        """length[i]."""
        return self._at(sf.COL_LENGTH, i)

    def parents_at(self, idx):
        """parent[idx] for an array of indexes."""
        return self._take(sf.COL_PARENT, idx)

    def plabels_at(self, idx):
        """plabel[idx] for an array of indexes."""
        return self._take(sf.COL_PLABEL, idx)

    def edge_range(self, i):
        """(first, end) positions of object i's edges in the edge columns."""
        bases = self._cols.get("edge_bases")
        if bases is None:
            nchunks = len(self._reader.chunks.get(sf.COL_NEDGES, []))
            sums = [int(self._chunk(sf.COL_NEDGES, k, cache=False).sum(dtype=np.uint64))
                    for k in range(nchunks)]
            bases = np.zeros(nchunks + 1, np.int64)
            np.cumsum(sums, out=bases[1:])
            if int(bases[-1]) != self.n_edges:
                self._corrupt("edge counts do not add up")
            self._cols["edge_bases"] = bases
        starts = self._starts(sf.COL_NEDGES)
        if not 0 <= i < self.n_objects:
            raise IndexError(i)
        k = int(np.searchsorted(starts, i, "right")) - 1
        part = self._chunk(sf.COL_NEDGES, k)
        j = i - int(starts[k])
        first = int(bases[k]) + int(part[:j].sum(dtype=np.uint64))
        return first, first + int(part[j])

    def edges_of(self, i):
        """(targets, labels) of object i's outgoing edges.

        Only the chunks holding them are decoded, so looking at a few
        containers does not decode every edge of a big snapshot.
        """
        lo, hi = self.edge_range(int(i))
        return self._slice(sf.COL_ETARGET, lo, hi), self._slice(sf.COL_ELABEL, lo, hi)

    def _slice(self, col, lo, hi):
        full = self._cols.get(col)
        if full is not None:
            return full[lo:hi]
        if hi <= lo:
            return np.zeros(0, np.uint32)
        starts = self._starts(col)
        if hi > starts[-1]:
            self._corrupt("edge counts do not add up")
        first = int(np.searchsorted(starts, lo, "right")) - 1
        last = int(np.searchsorted(starts, hi - 1, "right")) - 1
        parts = [self._chunk(col, k) for k in range(first, last + 1)]
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
        base = int(starts[first])
        return joined[lo - base:hi - base]

    # --------------------------------------------------------------- tables

    @property
    def rss(self):
        return self.meta.get("rss")

    @property
    def python_heap(self):
        v = self.meta.get("python_heap")
        if v is None:
            v = int(self.size.sum(dtype=np.uint64))
        return v

    def name_ids(self):
        """Per type index, an id shared by all types with the same name."""
        if self._name_ids is None:
            uniq = {}
            self._name_ids = np.array([uniq.setdefault(n, len(uniq)) for n in self.type_names],
                                      dtype=np.int64)
            self._unique_names = list(uniq)
        return self._name_ids, self._unique_names

    def type_name_of(self, i):
        return self.type_names[int(self.type[i])]

    def kind_of(self, i):
        return self.type_kinds[int(self.type[i])]

    def matching_type_names(self, name):
        """The type names `name` stands for: itself, or those ending in '.' + name.

        >>> Snapshot.load("b.snap").matching_type_names("CAP")
        ['ccap.cap.CAP']
        """
        return sorted({n for n in self.type_names if n == name or n.endswith("." + name)})

    def find_type(self, name):
        """Indexes of all objects whose type name is `name` (or ends with '.' + name)."""
        names = set(self.matching_type_names(name))
        ids = [k for k, n in enumerate(self.type_names) if n in names]
        if not ids:
            return np.zeros(0, np.int64)
        # int64: an index above the column's narrowed dtype matches nothing
        return np.flatnonzero(np.isin(self.type, np.array(ids, dtype=np.int64)))

    def site_text(self, site):
        """'app.py:42' for a 1-based site index (most recent frame), '' if unknown."""
        if not 0 < site <= len(self.sites):
            return ""
        frames = self.sites[site - 1]
        if not frames or not isinstance(frames[0], list) or len(frames[0]) != 2:
            return ""
        filename, lineno = frames[0]
        return f"{filename}:{lineno}"

    def label(self, i):
        if 0 <= i < len(self.labels):
            return self.labels[i]
        return "?"

    def roots_by_object(self):
        """{object index: (kind, desc, name)} for the first root entry of each object."""
        r = self._cols.get("roots")
        if r is None:
            objs = self.root_objects
            kinds = self.root_kinds
            descs = self.column(sf.COL_ROOT_DESC)
            names = self.column(sf.COL_ROOT_NAME)
            r = {}
            for o, k, d, n in zip(objs.tolist(), kinds.tolist(), descs.tolist(), names.tolist()):
                if o not in r:
                    r[o] = (k, self.label(d), self.label(n))
            self._cols["roots"] = r
        return r
