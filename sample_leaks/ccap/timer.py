"""Module-level registry of every CAP ever created, as in ccap's timer.js::

    var timer = {timeout: 1000*60, reg_ary: [], isRunning: 0}

Because this module lives as long as the process, so does everything in
``timer['reg_ary']``.
"""

timer = {
    "timeout": 60.0,   # seconds between refreshes
    "reg_ary": [],     # every CAP the factory created; nothing removes them
    "isRunning": 0,
}


def refresh_all():
    """Regenerate every registered captcha.

    The original starts a timer that calls this every ``timeout`` seconds (so
    the leak also costs CPU: the loop gets longer with every request).  This
    sample never schedules it, to keep the process quiet.
    """
    for cap in list(timer["reg_ary"]):
        cap._timer()
