"""legacyapi -- an old API kept working with a deprecation warning.

``legacyapi.compat.fetch`` warns on every call, with the caller's item id in
the message. Python's warnings machinery remembers every (message, category,
line) it has shown in the ``__warningregistry__`` dict of the module the
warning is attributed to, so that each is shown once: with a different
message every time, that dict only grows. Nobody wrote that dict; the
interpreter made it, under a dunder name.
"""

from . import compat

__all__ = ["compat"]
