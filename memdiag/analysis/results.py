"""What the analyses return: frozen values, each ranked list ordered by its
type's own `sort_key`. Nothing here reads a snapshot; memdiag.render turns
these into text, tables or JSON.

    >>> rows = [TypeStat("str", 900, 48000), TypeStat("ccap.cap.CAP", 500, 28000),
    ...         TypeStat("dict", 120, 48000)]
    >>> [t.type for t in sorted(rows, key=TypeStat.sort_key)]
    ['str', 'dict', 'ccap.cap.CAP']
    >>> [t.type for t in sorted(rows, key=TypeStat.count_sort_key)]
    ['str', 'ccap.cap.CAP', 'dict']
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TypeStat:
    """Count and bytes of one type in one snapshot.

    >>> TypeStat("ccap.cap.CAP", 500, 28000)
    TypeStat(type='ccap.cap.CAP', count=500, size=28000)
    """
    type: str
    count: int
    size: int

    def sort_key(self):
        """Most bytes first (`top`'s "Types by bytes")."""
        return (-self.size, -self.count, self.type)

    def count_sort_key(self):
        """Most objects first (`top`'s "Types by count")."""
        return (-self.count, -self.size, self.type)


@dataclass(frozen=True, slots=True)
class TypeGrowth:
    """How one type changed between the first and the last snapshot.

    >>> g = TypeGrowth("ccap.cap.CAP", 200, 700, 11200, 39200, new=500, freed=0)
    >>> g.count_delta, g.size_delta
    (500, 28000)
    """
    type: str
    count_before: int
    count_after: int
    size_before: int
    size_after: int
    new: int | None = None      # objects in the last snapshot not in the first
    freed: int | None = None    # objects in the first snapshot not in the last

    @property
    def count_delta(self):
        return self.count_after - self.count_before

    @property
    def size_delta(self):
        return self.size_after - self.size_before

    def sort_key(self):
        """Most bytes grown first."""
        return (-self.size_delta, -self.count_delta, self.type)


# A run of this many identical steps or more is shown folded, `(.next ×199,936)`,
# and paths that differ only in how long such a run is have the same shape.
RUN_FOLD = 4


@dataclass(frozen=True, slots=True)
class Step:
    """One hop of a retainer path, or `count` identical hops in a row: how
    `type` was reached from the previous hop."""
    text: str          # rendered edge, e.g. ".timer", "['reg_ary']", "[17]"
    type: str          # type name of the object reached
    folded: str        # the same with indexes and opaque keys folded to [*]
    count: int = 1     # hops in a row with this text and type


def fold_runs(pieces):
    """Text of (piece, count) pairs: consecutive equal pieces add up, and a run
    of RUN_FOLD or more is written once with its count.

    >>> fold_runs([(".head", 1), (".next", 3), (".next", 199_933), (".value", 1)])
    '.head(.next ×199,936).value'
    >>> fold_runs([("[*]", 1), ("[*]", 1), (".x", 1)])
    '[*][*].x'
    """
    out = []
    runs = []
    for piece, count in pieces:
        if runs and runs[-1][0] == piece:
            runs[-1][1] += count
        else:
            runs.append([piece, count])
    for piece, count in runs:
        if count >= RUN_FOLD and piece:
            out.append(f"({piece} ×{count:,})")
        else:
            out.append(piece * count)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class RetainerPath:
    """A path from a root to an object: root text plus steps. A step repeated
    RUN_FOLD times or more is folded into a count, so a deep chain tells its
    true depth.

    >>> p = RetainerPath("ccap.timer", "module", (Step(".timer", "dict", ".timer"),
    ...                  Step("['reg_ary']", "list", "['reg_ary']"), Step("[17]", "CAP", "[*]")))
    >>> p.text(), p.shape()
    ("ccap.timer.timer['reg_ary'][17]", "ccap.timer.timer['reg_ary'][*]")
    >>> deep = RetainerPath("app", "module", (Step(".state", "dict", ".state"),
    ...                     Step("['head']", "Node", "['head']"),
    ...                     Step(".next", "Node", ".next", 199_936)))
    >>> deep.text(), deep.depth
    ("app.state['head'](.next ×199,936)", 199938)
    """
    root: str
    root_kind: str
    steps: tuple = ()

    def runs(self, folded=False):
        """[(step text, hops)], consecutive equal texts merged."""
        out = []
        for s in self.steps:
            piece = s.folded if folded else s.text
            if out and out[-1][0] == piece:
                out[-1] = (piece, out[-1][1] + s.count)
            else:
                out.append((piece, s.count))
        return out

    def text(self, folded=False):
        return self.root + fold_runs(self.runs(folded))

    def shape(self):
        return self.text(folded=True)

    @property
    def depth(self):
        """Hops from the root (a module's `__dict__` hop not counted)."""
        return sum(s.count for s in self.steps)


def span_shape(first, last):
    """The shape of a row of paths that differ only in how long their folded
    runs are, from its shallowest and its deepest path: `(.next ×4–199,999)`.

    >>> a = RetainerPath("app", "module", (Step(".head", "N", ".head"), Step(".next", "N", ".next", 4)))
    >>> b = RetainerPath("app", "module", (Step(".head", "N", ".head"), Step(".next", "N", ".next", 9000)))
    >>> span_shape(a, b), span_shape(a, a)
    ('app.head(.next ×4–9,000)', 'app.head(.next ×4)')
    """
    ra, rb = first.runs(folded=True), last.runs(folded=True)
    if first.root != last.root or [p for p, _ in ra] != [p for p, _ in rb]:
        return first.shape()
    out = [first.root]
    for (piece, ca), (_, cb) in zip(ra, rb):
        lo, hi = min(ca, cb), max(ca, cb)
        if hi >= RUN_FOLD and piece:
            out.append(f"({piece} ×{lo:,})" if lo == hi else f"({piece} ×{lo:,}–{hi:,})")
        else:
            out.append(piece * ca)
    return "".join(out)


# How much a suspect weighs in the ranking: strong and unbounded growth first.
STRONG, BOUNDED, WEAK = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Suspect:
    """What grew between the snapshots: one container alive in every snapshot
    whose length grew (kind "container"), or a group of containers with the
    same path shape (kind "group": `path` is that shape, with [*]); or an
    object whose own size grew (`unit` "bytes": a bytearray, a BytesIO, an
    array.array, a str rebuilt ever longer at the same path).

    `lengths` (len()) and `sizes` (own bytes) have one entry per snapshot,
    summed over a group's containers. `growth` is elements added between the
    first and the last snapshot (0 for a byte suspect); `size_delta` is what
    the growth accounts for in bytes: the container's own growth plus the new
    objects below it (for a byte suspect, its own growth). `added_type` is
    the commonest type among the new elements.

    A group has `containers` members, of which `grew` grew, the most by
    `max_growth`; `example` is the path of that one. `retained_before` and
    `retained_after` are retained sizes in the first and the last snapshot
    (summed over a group's members; None when not computed). `weak`: the
    elements are held only through weak references; `bound`: the maximum
    length (deque maxlen, lru_cache maxsize) when the snapshot records one.

    >>> steady = Suspect("ccap.timer.timer['reg_ary']", "list", (100, 110, 120), 1110,
    ...                  "ccap.cap.CAP", 2)
    >>> jump = Suspect("app.jumpy", "list", (5, 5, 1005), 28000, "int", 1)
    >>> steady.growth, [s.path for s in sorted([jump, steady], key=Suspect.sort_key)]
    (20, ["ccap.timer.timer['reg_ary']", 'app.jumpy'])
    >>> spread = Suspect("app.history[*]", "list", (3000, 4000), 40000, "dict", 1,
    ...                  kind="group", containers=200, grew=197, max_growth=11)
    >>> one = Suspect("app.log", "list", (10, 60), 4000, "str", 1)
    >>> [s.path for s in sorted([one, spread], key=Suspect.sort_key)]
    ['app.history[*]', 'app.log']
    >>> weak = Suspect("app.registry.data", "dict", (10, 1010), 90000, "weakref.KeyedRef", 1,
    ...                weak=True)
    >>> [s.path for s in sorted([weak, one], key=Suspect.sort_key)]
    ['app.log', 'app.registry.data']
    """
    path: str
    type: str
    lengths: tuple
    size_delta: int
    added_type: str | None
    intervals_grown: int
    index: int = field(default=-1, compare=False)   # object index in the last snapshot
    kind: str = "container"          # "container" or "group"
    containers: int = 1
    grew: int = 1                    # containers that grew
    max_growth: int | None = None    # the largest single growth (None: this one's growth)
    unit: str = "elements"           # what grew: "elements" (length) or "bytes" (own size)
    sizes: tuple = ()
    retained_before: int | None = None
    retained_after: int | None = None
    weak: bool = False
    bound: int | None = None
    example: str = ""

    @property
    def len_before(self):
        return self.lengths[0]

    @property
    def len_after(self):
        return self.lengths[-1]

    @property
    def growth(self):
        """Elements added; 0 when what grew is the object's own size."""
        if self.unit == "bytes":
            return 0
        return self.lengths[-1] - self.lengths[0]

    @property
    def largest_growth(self):
        return self.growth if self.max_growth is None else self.max_growth

    @property
    def retained_delta(self):
        if self.retained_before is None or self.retained_after is None:
            return None
        return self.retained_after - self.retained_before

    @property
    def strength(self):
        """STRONG, BOUNDED or WEAK: how much the growth can cost in the end."""
        if self.weak:
            return WEAK
        if self.bound is not None:
            return BOUNDED
        return STRONG

    def sort_key(self):
        """Strong unbounded growth first, then bounded, then weakly held;
        within each, grew in the most intervals first (steady growth above a
        one-off jump), then what the growth accounts for in bytes (a group of
        200 lists that gained 1,000 elements above a list that gained 50),
        then elements added."""
        return (self.strength, -self.intervals_grown, -self.size_delta, -self.growth,
                self.path)


@dataclass(frozen=True, slots=True)
class RetainerChain:
    """Objects of one type that share a retainer path shape.

    `size` is their own bytes; `retained` the bytes they keep alive (each
    object counted once, also when one of them keeps another alive), None
    when not computed.
    """
    path: str
    count: int
    size: int
    example: str = ""
    site: str = ""       # commonest allocation site, when traced (--trace-frames)
    retained: int | None = None

    def sort_key(self):
        """Most bytes first."""
        return (-self.size, -self.count, self.path)


@dataclass(frozen=True, slots=True)
class Container:
    """One container of `top`'s "Largest containers", with its path."""
    path: str
    type: str
    length: int
    size: int

    def sort_key(self):
        """Longest first."""
        return (-self.length, -self.size, self.path)


# The memory verdict. The Python heap's growth is compared with RSS growth:
NATIVE_SHARE = 0.25   # under a quarter of it: "native" (Python objects do not explain it)
BOTH_SHARE = 0.5      # under half of it (and the heap grew too): "both"
# Under the native verdict a suspect whose bytes grew by less than this share
# of RSS growth explains none of it, and is not named (see analysis.diff).
NATIVE_SUSPECT_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class MemorySummary:
    """RSS and the Python heap in the first and the last snapshot.

    >>> mib = 1 << 20
    >>> MemorySummary(100 * mib, 400 * mib, 8 * mib, 9 * mib).verdict()
    'native'
    >>> MemorySummary(100 * mib, 140 * mib, 8 * mib, 20 * mib).verdict()
    'both'
    >>> MemorySummary(100 * mib, 110 * mib, 8 * mib, 16 * mib).verdict()
    'python'
    """
    rss_before: int | None
    rss_after: int | None
    python_heap_before: int
    python_heap_after: int

    @property
    def rss_delta(self):
        if self.rss_before is None or self.rss_after is None:
            return None
        return self.rss_after - self.rss_before

    @property
    def python_heap_delta(self):
        return self.python_heap_after - self.python_heap_before

    def verdict(self):
        """'python', 'native', 'both' or 'flat': which kind of memory grew.

        RSS grew when it grew by more than 4 MiB and 5%; the Python heap
        grew when it grew by more than 64 KiB and 1%. When RSS grew and the
        Python heap grew by less than a quarter of that (NATIVE_SHARE), the
        growth is native: a C library, or allocator fragmentation (seed 000).
        Less than half (BOTH_SHARE), with the heap grown too: both.
        """
        heap = self.python_heap_delta
        rss = self.rss_delta
        mib = 1 << 20
        heap_grew = heap > max(64 << 10, 0.01 * self.python_heap_before)
        rss_grew = rss is not None and rss > max(4 * mib, 0.05 * (self.rss_before or 0))
        if rss_grew and heap < NATIVE_SHARE * rss:
            return "native"
        if rss_grew and heap_grew and heap < BOTH_SHARE * rss:
            return "both"
        if heap_grew:
            return "python"
        return "flat"


@dataclass(frozen=True, slots=True)
class DiffResult:
    """What `diff` found across snapshots (oldest first)."""
    paths: tuple
    types: tuple         # TypeGrowth, by TypeGrowth.sort_key
    suspects: tuple      # Suspect, by Suspect.sort_key; none that the verdict rules out
    memory: MemorySummary
    matched: bool        # whether objects could be matched (new/freed counts, suspects)

    @property
    def verdict(self):
        return self.memory.verdict()


@dataclass(frozen=True, slots=True)
class TopResult:
    """One snapshot at a glance."""
    path: str
    totals: dict
    by_size: tuple     # TypeStat, by TypeStat.sort_key
    by_count: tuple    # TypeStat, by TypeStat.count_sort_key
    containers: tuple  # Container, by Container.sort_key


@dataclass(frozen=True, slots=True)
class RetainedObject:
    """One object and what it keeps alive.

    >>> RetainedObject("ccap.timer.timer['reg_ary']", "list", 6136, 375736, 2801, 14095)
    RetainedObject(path="ccap.timer.timer['reg_ary']", type='list', size=6136, retained=375736, objects=2801, index=14095)
    """
    path: str
    type: str
    size: int           # its own bytes
    retained: int       # bytes freed if it were freed: its own and all it dominates
    objects: int        # objects that is, itself included
    index: int = -1

    def sort_key(self):
        return (-self.retained, self.index)
