"""The benchmark's heap: a small order service's, after some hours of traffic.

    >>> import shop
    >>> shop.build(100_000)           # doctest: +SKIP
    100003
    >>> shop.grow_leak(1_000)         # doctest: +SKIP
    999

`build(n)` creates `n` live objects (it returns the exact count; a few more
at most) that stay reachable from this module: orders in a dict keyed by id,
customers in a list, and an append-only audit log, the leak. `grow_leak(n)`
appends about `n` objects' worth to the log, as a leaking request handler
would between two snapshots. Per order:

    Order      plain instance (inline values on 3.11+)          1
    Line       plain instance, 1 to 4 per order                 1-4
    Stamp      instance with __slots__                          1
    int        order id (also the dict key), time, a price
               per line                                         2 + lines
    str        note (2-12 words), coupon code                   2
    list       the order's lines                                1
    tuple      tags (shared str items)                          1
    dict       attributes, 1 to 4 keys, values str or int       1 + 1-4

and every fourth order a new Customer (plain instance; id and zip int, name
and email str, a list of addresses holding one (str, int) tuple: 8 objects).

Like a service that has run a while, orders are also closed and dropped as
new ones arrive (about one in four), so new objects reuse freed memory and
addresses do not follow creation order. Everything comes from a seeded
random.Random: two processes building the same `n` get the same heap.
"""

from __future__ import annotations

import random

__all__ = ["build", "grow_leak", "ORDERS", "CUSTOMERS", "AUDIT_LOG"]

CUSTOMER_OBJECTS = 8        # objects created per new customer
AUDIT_OBJECTS = 3           # AuditEntry, its time (int) and its message (str)
LEAK_SHARE = 0.01           # part of `n` the audit log holds after build()
DROP_SHARE = 0.25           # orders dropped per order added, while building

CHANNELS = ("web", "app", "phone", "partner")
STATUSES = ("open", "paid", "shipped")
TAGS = tuple((a, b) for a in ("gift", "bulk", "promo", "repeat") for b in ("eu", "us", "apac"))
SKUS = tuple(f"SKU-{k:05d}" for k in range(2000))
WORDS = ("please", "deliver", "before", "noon", "leave", "at", "door", "gift", "wrap",
         "call", "on", "arrival", "fragile", "second", "floor", "no", "invoice", "thanks")
ATTR_KEYS = ("channel", "coupon", "campaign", "referrer")

ORDERS: dict = {}           # order id -> Order
CUSTOMERS: list = []        # every Customer
AUDIT_LOG: list = []        # append-only: the leak between snapshots


class Customer:
    def __init__(self, cid, name, email, zip_code, addresses):
        self.cid = cid
        self.name = name
        self.email = email
        self.zip_code = zip_code
        self.addresses = addresses


class Order:
    def __init__(self, oid, customer, lines, note, created, tags, attrs, stamp):
        self.oid = oid
        self.customer = customer
        self.lines = lines
        self.note = note
        self.created = created
        self.tags = tags
        self.attrs = attrs
        self.stamp = stamp
        self.status = STATUSES[oid % 3]


class Line:
    def __init__(self, sku, qty, price):
        self.sku = sku
        self.qty = qty
        self.price = price


class Stamp:
    __slots__ = ("by", "seq", "flags")

    def __init__(self, by, seq, flags):
        self.by = by
        self.seq = seq
        self.flags = flags


class AuditEntry:
    """What the leaking handler appends to AUDIT_LOG and never removes."""

    def __init__(self, at, message):
        self.at = at
        self.message = message


class _Builder:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.orders = 0
        self.audits = 0
        self.clock = 1_700_000_000

    def order(self):
        """Add one order; return the number of objects it created."""
        rng = self.rng
        i = self.orders
        self.orders += 1
        made = 0
        if i % 4 == 0:
            c = len(CUSTOMERS)
            CUSTOMERS.append(Customer(1_000_000_000 + c, f"customer {c}", f"c{c}@example.com",
                                      10_000 + c, [(f"{c} Main St", c % 100)]))
            made += CUSTOMER_OBJECTS
        oid = 3_000_000_000 + i
        self.clock += rng.randrange(1, 5000)
        lines = [Line(SKUS[rng.randrange(len(SKUS))], rng.randrange(1, 9),
                      rng.randrange(100, 10_000_000)) for _ in range(rng.randrange(1, 5))]
        note = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 13)))
        attrs = {"channel": CHANNELS[rng.randrange(4)], "coupon": f"C{rng.getrandbits(40):x}"}
        for key in ATTR_KEYS[2:2 + rng.randrange(3)]:
            attrs[key] = rng.randrange(1000, 1_000_000)
        tag = TAGS[rng.randrange(len(TAGS))]
        ORDERS[oid] = Order(oid, CUSTOMERS[-1], lines, note, self.clock, (tag[0], tag[1]),
                            attrs, Stamp(CHANNELS[i % 4], i & 127, rng.randrange(256)))
        # Order, Stamp, oid, time, note, list, tuple, attrs dict and its coupon,
        # then a Line and a price per line, an int per extra attribute.
        return made + 9 + 2 * len(lines) + (len(attrs) - 2)

    def drop(self):
        """Close a random older order; return the number of objects freed."""
        if self.orders < 2:
            return 0
        oid = 3_000_000_000 + self.rng.randrange(self.orders - 1)
        order = ORDERS.pop(oid, None)
        if order is None:
            return 0
        return 9 + 2 * len(order.lines) + (len(order.attrs) - 2)

    def audit(self):
        k = self.audits
        self.audits += 1
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randrange(1, 6)))
        AUDIT_LOG.append(AuditEntry(1_800_000_000 + k, f"request {k}: {words}"))
        return AUDIT_OBJECTS


_builder = _Builder(seed=3)


def grow_leak(n):
    """Append about n objects' worth of AuditEntry to AUDIT_LOG; return the count."""
    made = 0
    while made + AUDIT_OBJECTS <= n:
        made += _builder.audit()
    return made


def build(n):
    """Create n live objects (the exact count is returned), 1% of them in the leak."""
    made = grow_leak(int(n * LEAK_SHARE))
    drop_every = round(1 / DROP_SHARE)
    k = 0
    while made < n:
        made += _builder.order()
        k += 1
        if k % drop_every == 0:
            made -= _builder.drop()
    return made
