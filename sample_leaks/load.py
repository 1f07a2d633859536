"""Load generator for the sample servers (stdlib only).

CLI:
    python sample_leaks/load.py --port P --path /captcha --requests N
        [--concurrency 4] [--max-seconds 120] [--host 127.0.0.1] [--json]
        [--count-header X-Worker-Pid]

Sends exactly N GET requests (fewer only if --max-seconds runs out) from C
worker threads, each with its own keep-alive ``http.client.HTTPConnection``
(reconnecting after an error).  A ``{i}`` in the path is replaced by the
request number (0..N-1), e.g. ``--path '/item?id={i}'``.  Prints ok, failed,
elapsed and p50/p99 latency; exit status 0 if no request failed, else 1.
With ``--count-header NAME``, also how many good responses carried each value
of that header (``by_header``): which worker of a pre-fork server served what.

In-process:
    sys.path.insert(0, "sample_leaks"); from load import run_load
    run_load(port, "/captcha", 500) -> {"ok", "failed", "unsent", "elapsed",
                                        "p50_ms", "p99_ms"}
    run_load(port, "/leak", 300, count_header="X-Worker-Pid")["by_header"]
        -> {"4243": 120, "4244": 95, "4245": 85}
Errors are counted as failures, never raised.
"""

import argparse
import http.client
import json
import math
import sys
import threading
import time


def _percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def run_load(port, path, requests, concurrency=4, max_seconds=120.0,
             host="127.0.0.1", timeout=10.0, count_header=None):
    """Send `requests` GETs to host:port/path; return a summary dict."""
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "failed": 0}
    by_header = {}
    latencies = []
    start = time.monotonic()
    deadline = start + max_seconds

    def take_ticket():
        with lock:
            if state["next"] >= requests or time.monotonic() >= deadline:
                return None
            state["next"] += 1
            return state["next"] - 1

    def worker():
        conn = None
        mine = []
        try:
            while True:
                i = take_ticket()
                if i is None:
                    break
                t0 = time.monotonic()
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(host, port, timeout=timeout)
                    conn.request("GET", path.replace("{i}", str(i)))
                    resp = conn.getresponse()
                    resp.read()
                    good = resp.status == 200
                    value = resp.getheader(count_header) if count_header and good else None
                    if value is not None:
                        with lock:
                            by_header[value] = by_header.get(value, 0) + 1
                    if resp.will_close:
                        conn.close()
                        conn = None
                except Exception:
                    good = False
                    if conn is not None:
                        conn.close()
                    conn = None
                mine.append((time.monotonic() - t0) * 1000.0)
                with lock:
                    state["ok" if good else "failed"] += 1
        finally:
            if conn is not None:
                conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(max(1, int(concurrency)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    latencies.sort()
    summary = {
        "ok": state["ok"],
        "failed": state["failed"],
        "unsent": requests - state["ok"] - state["failed"],
        "elapsed": round(elapsed, 3),
        "p50_ms": round(_percentile(latencies, 0.50), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
    }
    if count_header:
        summary["by_header"] = by_header
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description="GET load for the sample servers")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--count-header", help="count good responses by this header's value")
    args = parser.parse_args(argv)
    result = run_load(args.port, args.path, args.requests, args.concurrency,
                      args.max_seconds, host=args.host, count_header=args.count_header)
    if args.json:
        print(json.dumps(result))
    else:
        print("ok={ok} failed={failed} unsent={unsent} elapsed={elapsed}s "
              "p50={p50_ms}ms p99={p99_ms}ms".format(**result))
        if args.count_header:
            print(f"by {args.count_header}: {json.dumps(result['by_header'], sort_keys=True)}")
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
