"""eventbus -- a tiny producer/consumer event library, modelled on seed 003.

When a process both produces and consumes, the library must skip the events
it sent itself, so ``producer.send`` remembers every sent id in the
module-level list ``eventbus.producer.sent_events`` and ``producer.consume``
removes the id again when the event comes back.  A producer-only service
never consumes, so the list only grows.

The list is deliberately not re-exported here, so the only module-level name
that holds it is ``eventbus.producer.sent_events``.
"""

from . import producer

__all__ = ["producer"]
