"""ccap -- a tiny captcha library, modelled on the npm package of seed 004.

``ccap(style)`` is a factory: it builds a ``CAP`` and *registers* it in the
module-level registry ``ccap.timer.timer['reg_ary']`` so that the library's
refresh timer can regenerate every captcha once a minute.  Nothing ever
unregisters a CAP, so the factory is meant to be called once, at import time
of the application.  Calling it once per request leaks one CAP per request.

The registry is deliberately not re-exported here, so the only module-level
name that holds it is ``ccap.timer.timer``.
"""

from . import timer  # the module; the registry is timer.timer['reg_ary']
from .cap import CAP

__all__ = ["CAP", "ccap", "instance_count"]

instance_count = 0


def ccap(style=None):
    """Create a CAP and register it with the refresh timer (never unregistered)."""
    global instance_count
    cap = CAP(style or {})
    instance_count += 1
    timer.timer["reg_ary"].append(cap)  # registered for the refresh timer, never removed
    return cap
