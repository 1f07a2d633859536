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


@dataclass(frozen=True, slots=True)
class Step:
    """One hop of a retainer path: how `type` was reached from the previous hop."""
    text: str          # rendered edge, e.g. ".timer", "['reg_ary']", "[17]"
    type: str          # type name of the object reached
    folded: str        # the same with indexes and opaque keys folded to [*]


@dataclass(frozen=True, slots=True)
class RetainerPath:
    """A path from a root to an object: root text plus steps.

    >>> p = RetainerPath("ccap.timer", "module", (Step(".timer", "dict", ".timer"),
    ...                  Step("['reg_ary']", "list", "['reg_ary']"), Step("[17]", "CAP", "[*]")))
    >>> p.text(), p.shape()
    ("ccap.timer.timer['reg_ary'][17]", "ccap.timer.timer['reg_ary'][*]")
    """
    root: str
    root_kind: str
    steps: tuple = ()
    truncated: bool = False

    def text(self, folded=False):
        parts = [self.root]
        if self.truncated:
            parts.append("…")
        for s in self.steps:
            parts.append(s.folded if folded else s.text)
        return "".join(parts)

    def shape(self):
        return self.text(folded=True)


@dataclass(frozen=True, slots=True)
class Suspect:
    """A container alive in every snapshot whose length grew.

    `lengths` has one entry per snapshot; `growth` is elements added between
    the first and the last; `added_type` is the commonest type among them;
    `size_delta` is the container's own growth plus the bytes of the new
    objects below it.

    >>> steady = Suspect("ccap.timer.timer['reg_ary']", "list", (100, 110, 120), 1110,
    ...                  "ccap.cap.CAP", 2)
    >>> jump = Suspect("app.jumpy", "list", (5, 5, 1005), 28000, "int", 1)
    >>> steady.growth, [s.path for s in sorted([jump, steady], key=Suspect.sort_key)]
    (20, ["ccap.timer.timer['reg_ary']", 'app.jumpy'])
    """
    path: str
    type: str
    lengths: tuple
    size_delta: int
    added_type: str | None
    intervals_grown: int
    index: int = field(default=-1, compare=False)   # object index in the last snapshot

    @property
    def len_before(self):
        return self.lengths[0]

    @property
    def len_after(self):
        return self.lengths[-1]

    @property
    def growth(self):
        return self.lengths[-1] - self.lengths[0]

    def sort_key(self):
        """Grew in the most intervals first (steady growth above a one-off
        jump), then most elements added."""
        return (-self.intervals_grown, -self.growth, -self.size_delta, self.path)


@dataclass(frozen=True, slots=True)
class RetainerChain:
    """Objects of one type that share a retainer path shape."""
    path: str
    count: int
    size: int
    example: str = ""
    site: str = ""       # commonest allocation site, when traced (--trace-frames)

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
