"""A celery app whose task leaks, with a broker that needs no server: kombu's
filesystem transport (messages are files in a directory). Needs celery.

    CELERY_FS_DIR=/tmp/q celery -A celery_leak worker -P prefork -c 2 --without-mingle --without-gossip
    CELERY_FS_DIR=/tmp/q python celery_leak.py send 300      # queue 300 tasks

The task `remember(n)` records a `Job` in the module-level list
`celery_leak.finished_jobs` and never drops it (a "recent jobs" list for a
status page nobody bounded), so each pool process that runs it keeps one Job
per task. Expected report: **`celery_leak.finished_jobs`** grows by one
`celery_leak.Job` per task in every pool process that ran some.
"""

import os
import sys
import time

from celery import Celery

FOLDER = os.environ.get("CELERY_FS_DIR") or "/tmp/celery-fs"

app = Celery("celery_leak")
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={"data_folder_in": FOLDER, "data_folder_out": FOLDER,
                              "processed_folder": os.path.join(FOLDER, "processed"),
                              "control_folder": os.path.join(FOLDER, "control"),
                              "store_processed": False, "polling_interval": 0.05},
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)

finished_jobs = []


class Job:
    __slots__ = ("n", "pid", "at", "payload")

    def __init__(self, n):
        self.n = n
        self.pid = os.getpid()
        self.at = time.time()
        self.payload = os.urandom(64)


@app.task
def remember(n):
    finished_jobs.append(Job(n))
    print(f"JOB {n} pid={os.getpid()} kept={len(finished_jobs)}", flush=True)
    return len(finished_jobs)


def main(argv):
    if len(argv) == 3 and argv[1] == "send":
        os.makedirs(os.path.join(FOLDER, "processed"), exist_ok=True)
        for n in range(int(argv[2])):
            remember.delay(n)
        return 0
    print("usage: celery_leak.py send N", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
