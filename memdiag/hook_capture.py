"""Every thread's stack, captured in the target before any fork.

A fork keeps only the thread that forked, so the other threads' frames are
read here, in the signal handler: their local variables become roots named
`<thread: function (file:line)>.variable`, and the frames running now are
listed, so that the walk never enters them (their locals are roots already).
The hook's own frames are left out. Thread names are read without calling
into the threading module or running code of a Thread subclass.

    >>> c = capture()
    >>> any(d.startswith("MainThread: ") for d, _, _ in c["stack_roots"]), len(c["frames"]) > 0
    (True, True)
    >>> release(c)
"""

from __future__ import annotations

import os
import sys

from . import hook_walk
from .hook_walk import dict_descriptor, is_module, module_dict, plain_attr

HERE = os.path.dirname(os.path.abspath(__file__))   # the hook's code: frames skipped
CO_OPTIMIZED = 0x0001


def capture():
    """{"stack_roots": [(frame description, variable name, object)],
    "thread_roots": [(thread description, thread state dict)],
    "frames": [every frame running now, in any thread]}; the compiled
    capture adds "keepalive" (objects the thread dicts need kept alive).

    Only the compiled capture reads the threads' state dicts (thread
    locals); the pure-Python one gives none.
    """
    names = thread_names()
    main_tid = main_thread_id()
    if hook_walk.compiled():
        return hook_walk.cwalker.capture(names, main_tid, HERE)
    stack_roots = []
    running = []
    frames = sys._current_frames()
    order = sorted(frames)
    order.sort(key=main_tid.__ne__)            # the main thread first
    for tid in order:
        f = frames[tid]
        tname = names.get(tid) or f"thread-{tid}"
        while f is not None:
            code = f.f_code
            running.append(f)
            if os.path.dirname(code.co_filename) != HERE:
                desc = f"{tname}: {code.co_name} ({code.co_filename}:{f.f_lineno})"
                if code.co_flags & CO_OPTIMIZED:
                    for name, value in list(f.f_locals.items()):
                        stack_roots.append((desc, name, value))
                elif f.f_locals is not f.f_globals:
                    stack_roots.append((desc, "<locals>", f.f_locals))
            f = f.f_back
    del frames
    return {"stack_roots": stack_roots, "thread_roots": [], "frames": running}


def release(captured):
    """Let go of what a capture holds. Its frame list holds the frames of the
    hook's own calls, whose locals hold the list: a cycle that, in a target
    running with gc disabled, would keep those frames and the target's
    locals of that moment alive for good."""
    for v in list(captured.values()):
        if isinstance(v, list):
            v.clear()
    captured.clear()


def thread_names():
    """{thread id: name} of the threads the threading module knows, and
    "MainThread" for the main thread, also in a program that never imported
    threading. No threading.enumerate(): it takes a lock the interrupted
    code may hold. Only exact-str names of int ids count; a thread named by
    anything else shows as thread-<id>."""
    names = {}
    namespace, descriptor = _threading()
    if descriptor is not None:
        table = dict.get(namespace, "_active")
        if type(table) is dict:
            for tid, t in list(table.items()):
                name = plain_attr(t, descriptor, "_name")
                if type(tid) is int and type(name) is str:
                    names[tid] = name
    names.setdefault(main_thread_id(), "MainThread")
    return names


def main_thread_id():
    """The main thread's id, read without calling into the threading module."""
    import _thread
    get_main = getattr(_thread, "_get_main_thread_ident", None)   # 3.13+
    if get_main is not None:
        return get_main()
    namespace, descriptor = _threading()
    if descriptor is not None:
        ident = plain_attr(dict.get(namespace, "_main_thread"), descriptor, "_ident")
        if type(ident) is int:
            return ident
    # Without threading there is no other thread to tell it from, and Python
    # runs signal handlers in the main thread.
    return _thread.get_ident()


def _threading():
    """(namespace of the threading module, __dict__ descriptor of its Thread),
    or (None, None) when threading was never imported."""
    threading = sys.modules.get("threading")
    if not is_module(threading):
        return None, None
    namespace = module_dict(threading)
    if type(namespace) is not dict:
        return None, None
    thread_cls = dict.get(namespace, "Thread")
    if not issubclass(type(thread_cls), type):
        return namespace, None
    return namespace, dict_descriptor(thread_cls)
