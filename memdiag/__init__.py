"""memdiag: what is growing in a long-running Python process, and who holds it.

In the target (stdlib only, nothing runs on import)::

    import memdiag
    memdiag.install()            # kill -USR2 <pid> now writes a snapshot
    memdiag.dump("/tmp/a.snap")  # or write one right now

On your side: ``memdiag diff a.snap b.snap``.
"""

__version__ = "0.1.0"


def install(*args, **kwargs):
    from .hook import install as _install
    return _install(*args, **kwargs)


def uninstall():
    from .hook import uninstall as _uninstall
    return _uninstall()


def dump(path=None, **kwargs):
    from .hook import dump as _dump
    return _dump(path, **kwargs)


def load(path):
    """Load a snapshot file for analysis (needs numpy)."""
    from .model import Snapshot
    return Snapshot.load(path)
