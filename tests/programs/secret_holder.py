"""A program holding secrets the way real services do, for tests/test_secrets.py.

    python tests/programs/secret_holder.py [--install DIR [--strings]]

Makes its secrets itself (random, never on the command line or in the
environment), then prints one JSON line: {"pid", "api_key", "password",
"token", "db_bytes"} (hex for the bytes). Then it reads commands on stdin:

    dump PATH STRINGS MODE   memdiag.dump(PATH, strings=STRINGS == "1", mode=MODE)
    quit

answering each with one line ("ok PATH" or "error MESSAGE"). --install DIR
calls memdiag.install(dir=DIR) so `kill -USR2` works too; without it, start
the program with `memdiag run` for that.

Where the secrets live:
- API_KEY: a module global str;
- a password: a local variable of a function running in another thread;
- a session token: a key of the module-level dict SESSIONS;
- DB_CREDENTIALS["db"]: a bytes value.
"""

import json
import os
import secrets
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _secret(prefix, n):
    """A random secret of exactly n characters, with many digits (so no walker
    heuristic could take it for a name)."""
    while True:
        s = prefix + secrets.token_hex(n)[: n - len(prefix)]
        if sum(c.isdigit() for c in s) >= 6:
            return s


API_KEY = _secret("sk_live_", 47)
SESSIONS = {_secret("sess_", 53): {"user": "alice", "admin": False}}
DB_CREDENTIALS = {"db": _secret("pw-", 61).encode()}

_started = threading.Event()
_stop = threading.Event()
_password_box = []


def worker():
    password = _secret("Pa55-", 29)     # only this frame holds it
    _password_box.append(password.encode().hex())   # for the test, as hex bytes
    _started.set()
    _stop.wait()
    return len(password)


def main():
    if "--install" in sys.argv:
        sys.path.insert(0, ROOT)
        import memdiag
        memdiag.install(dir=sys.argv[sys.argv.index("--install") + 1],
                        strings="--strings" in sys.argv)
    t = threading.Thread(target=worker, name="secret-worker", daemon=True)
    t.start()
    _started.wait()
    token = next(iter(SESSIONS))
    sys.stdout.write(json.dumps({
        "pid": os.getpid(),
        "api_key": API_KEY.encode().hex(),
        "password": _password_box.pop(),
        "token": token.encode().hex(),
        "db_bytes": DB_CREDENTIALS["db"].hex(),
    }) + "\n")
    sys.stdout.flush()
    del token
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "dump":
            sys.path.insert(0, ROOT)
            import memdiag
            try:
                path = memdiag.dump(cmd[1], strings=cmd[2] == "1", mode=cmd[3])
                sys.stdout.write(f"ok {path}\n")
            except Exception as e:  # reported to the test, which decides
                sys.stdout.write(f"error {type(e).__name__}: {e}\n")
            sys.stdout.flush()
    _stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
