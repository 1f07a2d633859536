"""Snapshot files get copied off the machine: by default they must carry no
secret the program holds, they are private to their owner, writing them
cannot be redirected through a planted name, and loading one runs no code.

The target (tests/programs/secret_holder.py) makes its own random secrets: an
API key in a module global, a password in a local variable of a function
running in another thread, a session token as a dict key, and a bytes value.
Each snapshot is searched as raw bytes, block by block decompressed (through
the reader's payloads and independently with zlib), and in its trailer JSON.
With --strings / strings=True the str secrets must be found: the search can
fail.
"""

import json
import os
import pickle
import subprocess
import sys

import pytest

import snapcraft
from conftest import ROOT, kill_pid
from hookutil import walker_env
from safety_helpers import one_line, real_seed, run_cli, run_cli_full, snap_files, temp_files

from memdiag import protocol
from memdiag import snapfile as sf
from memdiag.cli.run import hook_env
from memdiag.model import Snapshot

PROGRAM = os.path.join(ROOT, "tests", "programs", "secret_holder.py")
STR_SECRETS = ("api_key", "password", "token")


class Holder:
    def __init__(self, proc, secrets, snapdir):
        self.proc = proc
        self.pid = proc.pid
        self.secrets = secrets          # name -> bytes
        self.dir = snapdir

    def dump(self, path, strings=False, mode="auto"):
        self.proc.stdin.write(f"dump {path} {int(strings)} {mode}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        assert line.startswith("ok "), line
        return line[3:]

    def dump_error(self, path, mode="auto"):
        self.proc.stdin.write(f"dump {path} 0 {mode}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        assert line.startswith("error "), line
        return line


@pytest.fixture
def holders(tmp_path):
    started = []

    def start(how="install", strings=False, mode="auto", umask=None, args=()):
        snapdir = str(tmp_path / f"snaps-{len(started)}")
        argv = [sys.executable, PROGRAM, *args]
        env = dict(os.environ)
        if how == "install":
            argv += ["--install", snapdir] + (["--strings"] if strings else [])
        elif how == "run":     # the environment `memdiag run [--strings]` builds
            env = hook_env(None, snapdir, "USR2", 0, strings, mode)
            env["MEMDIAG_QUIET"] = "1"
        preexec = (lambda: os.umask(umask)) if umask is not None else None
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                                preexec_fn=preexec)
        started.append(proc)
        info = json.loads(proc.stdout.readline())
        secrets = {k: bytes.fromhex(v) for k, v in info.items() if k != "pid"}
        return Holder(proc, secrets, snapdir)

    yield start
    for proc in started:
        kill_pid(proc.pid)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()


def signal_snapshot(h):
    code, out, err = run_cli_full(["snapshot", h.pid, "--timeout", 60], 90)
    assert code == 0, (code, out, err)
    return out.strip()


# ------------------------------------------------------------ the search

def fragments(secret, n=8):
    """The secret and every n-byte window of it: no part may show."""
    return [secret] + [secret[i:i + n] for i in range(len(secret) - n + 1)]


def views(path):
    """Every form the file's bytes can be read in: (name, bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    out = [("raw file", data)]
    with sf.Reader.open(path) as r:                      # the reader's own decoding
        for column in sorted(r.chunks):
            for k, (width, transform, count, raw) in enumerate(r.payloads(column)):
                out.append((f"{sf.COLUMN_NAMES[column]} chunk {k}", raw))
                values = sf.decode(raw, width, transform, count)
                out.append((f"{sf.COLUMN_NAMES[column]} chunk {k} decoded",
                            b"".join(v.to_bytes(width, "little") for v in values)))
        out.append(("trailer (parsed, re-encoded)",
                    json.dumps(r.trailer, ensure_ascii=False).encode("utf-8", "surrogatepass")))
    p = snapcraft.parse(data)                            # and independently, with zlib
    for k, blk in enumerate(p.blocks):
        out.append((f"block {k} (zlib)", blk.raw))
    out.append(("trailer JSON (zlib)", p.trailer_raw))
    return out


def found(path, secret):
    """Where any fragment of `secret` shows in the file, or []."""
    hits = []
    for name, data in views(path):
        for frag in fragments(secret):
            if frag in data:
                hits.append(name)
                break
    return hits


def assert_no_secret(h, path):
    for key, secret in h.secrets.items():
        assert found(path, secret) == [], f"{key} found in {path}"


def assert_walked(h, path):
    """The secret objects are in the snapshot (lengths, paths), their contents not:
    the search above is not vacuous because the walk missed them."""
    snap = Snapshot.load(path)
    names = snap.labels
    for var in ("API_KEY", "SESSIONS", "DB_CREDENTIALS", "password"):
        assert var in names, var
    str_t = [i for i, n in enumerate(snap.type_names) if n == "str"]
    bytes_t = [i for i, n in enumerate(snap.type_names) if n == "bytes"]
    typ, length = snap.type, snap.length
    for key, kinds in (("api_key", str_t), ("password", str_t), ("token", str_t),
                       ("db_bytes", bytes_t)):
        n = len(h.secrets[key])
        hits = [i for i in range(snap.n_objects) if length[i] == n and int(typ[i]) in kinds]
        assert hits, f"no {key}-sized object in the snapshot"
    # The password is reached as the local variable of the worker thread's frame.
    roots = snap.roots_by_object()
    local = [o for o, (kind, desc, name) in roots.items()
             if kind == sf.ROOT_LOCAL and name == "password"]
    assert local and int(length[local[0]]) == len(h.secrets["password"])
    snap.close()


# ------------------------------------------------------------ secrets

@pytest.mark.parametrize("how", ["signal", "dump-fork", "dump-inline"])
def test_default_snapshot_holds_no_secret(holders, tmp_path, how):
    h = holders("install")
    if how == "signal":
        path = signal_snapshot(h)
    else:
        path = h.dump(str(tmp_path / "d.snap"), mode=how.split("-")[1])
    assert_walked(h, path)
    assert_no_secret(h, path)


def test_memdiag_run_snapshot_holds_no_secret(holders):
    h = holders("run")
    path = signal_snapshot(h)
    assert_walked(h, path)
    assert_no_secret(h, path)


@pytest.mark.parametrize("how", ["run --strings", "install strings", "dump strings=True"])
def test_with_strings_the_secrets_do_show(holders, tmp_path, how):
    """The control: asked for string contents, the str secrets are in the file,
    inside compressed blocks only (so a raw search alone would miss them)."""
    if how == "run --strings":
        h = holders("run", strings=True)
        path = signal_snapshot(h)
    elif how == "install strings":
        h = holders("install", strings=True)
        path = signal_snapshot(h)
    else:
        h = holders("install")
        path = h.dump(str(tmp_path / "s.snap"), strings=True)
    for key in STR_SECRETS:
        where = found(path, h.secrets[key])
        assert where, f"{key} not found although strings were asked for"
        assert "raw file" not in where          # zlib hides it from a raw search
    # bytes contents are never written, not even with strings
    assert found(path, h.secrets["db_bytes"]) == []


# ---------------------------------------------------------- the command line

@pytest.mark.parametrize("strings", [False, True])
def test_command_line_arguments_only_with_strings(holders, tmp_path, strings):
    """`python app.py --password=X URL`: by default no snapshot and no registry
    entry holds X or the URL, anywhere (the walked sys.argv strs are written
    as lengths, the metadata writes `--password=<arg len N>`), and `memdiag
    top` and `memdiag report` show the redacted command; with strings, the
    metadata and the entry have the command line in full."""
    import secrets as _secrets
    password = "pw" + _secrets.token_hex(12)
    db_password = _secrets.token_hex(12)
    url = f"postgres://app:{db_password}@db.internal/prod"
    h = holders("install", strings=strings, args=[f"--password={password}", url])
    a = h.dump(str(tmp_path / "a.snap"), strings=strings)
    b = signal_snapshot(h)
    with open(protocol.entry_path(h.pid), "rb") as f:
        entry_raw = f.read()
    argv = json.loads(entry_raw)["argv"]
    for path in (a, b):
        meta = Snapshot.load(path).meta
        assert meta["argv"] == argv
    if strings:
        assert argv == [sys.executable, PROGRAM, f"--password={password}", url,
                        "--install", h.dir, "--strings"]
        for secret in (password, db_password):
            assert secret.encode() in entry_raw
            assert found(b, secret.encode())
        return
    assert argv == [sys.executable, PROGRAM, f"--password=<arg len {len(password)}>",
                    f"<arg len {len(url)}>", "--install", f"<arg len {len(h.dir)}>"]
    for secret in (password, db_password):
        for frag in fragments(secret.encode()):
            assert frag not in entry_raw, "the registry entry holds an argument"
        for path in (a, b):
            assert found(path, secret.encode()) == [], f"an argument is in {path}"
    code, out, err = run_cli_full(["top", b], 60)
    assert code == 0, err
    assert f"--password=<arg len {len(password)}>" in out and password not in out
    html = tmp_path / "report.html"
    code, err = run_cli(["report", a, b, "-o", str(html)], 120)
    assert code == 0, err
    page = html.read_text()
    assert f"--password=&lt;arg len {len(password)}&gt;" in page
    assert password not in page and db_password not in page


# ------------------------------------------------------- file permissions

def test_files_0600_and_new_directories_0700_whatever_the_umask(holders, tmp_path):
    h = holders("install", umask=0)            # the most permissive umask
    path = signal_snapshot(h)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(h.dir).st_mode & 0o777 == 0o700      # created by install()
    deep = tmp_path / "new" / "dir"
    p2 = h.dump(str(deep / "x.snap"))
    assert os.stat(p2).st_mode & 0o777 == 0o600
    for d in (deep, deep.parent):                         # created by dump(), parents too
        assert os.stat(d).st_mode & 0o777 == 0o700, d


# ---------------------------------------------------- planted names

def test_symlink_at_the_temp_name_is_not_followed(holders, tmp_path):
    """The temp file is created O_EXCL|O_NOFOLLOW: a symlink planted at its
    (predictable, in inline mode) name makes that snapshot fail; the file it
    points to is untouched; the next snapshot works."""
    h = holders("run", mode="inline")
    first = signal_snapshot(h)                           # seq 1
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.chmod(victim, 0o644)
    planted = os.path.join(h.dir, f".memdiag-{h.pid}-2.{h.pid}.tmp")
    os.symlink(victim, planted)
    code, out, err = run_cli_full(["snapshot", h.pid, "--timeout", 30], 60)
    assert code == 5, (code, out, err)
    assert "File exists" in one_line(err)
    assert victim.read_text() == "precious\n" and os.stat(victim).st_mode & 0o777 == 0o644
    assert os.path.islink(planted) and os.readlink(planted) == str(victim)
    assert snap_files(h.dir, h.pid) == [os.path.basename(first)]
    third = signal_snapshot(h)                           # seq 3: works
    assert os.path.basename(third) == f"memdiag-{h.pid}-3.snap"
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_final_name_taken_is_never_overwritten(holders, tmp_path, kind):
    """os.link() to the final name fails on an existing name: the snapshot
    takes the next free name, and an explicit path that exists is refused."""
    h = holders("install")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.makedirs(h.dir, exist_ok=True)
    taken = os.path.join(h.dir, f"memdiag-{h.pid}-1.snap")
    if kind == "file":
        with open(taken, "w") as f:
            f.write("someone else's\n")
    else:
        os.symlink(victim, taken)
    path = signal_snapshot(h)
    assert path != taken and Snapshot.load(path).n_objects > 0
    assert victim.read_text() == "precious\n"
    if kind == "file":
        with open(taken) as f:
            assert f.read() == "someone else's\n"
    else:
        assert os.readlink(taken) == str(victim)
    err = h.dump_error(taken)
    assert "exists" in err and "will not overwrite" in err, err
    assert victim.read_text() == "precious\n"
    assert temp_files(h.dir) == []


# ------------------------------------------------------ no code on load

def test_loading_never_runs_code(tmp_path):
    """A crafted file whose trailer is full of pickle/reduce-looking content and
    whose column chunk is a real pickle payload is inert data or a bad file;
    the payload's side effect never happens (the commands run in this very
    process, so code run by the loader would run here)."""
    marker = tmp_path / "pwned"
    a, b = real_seed("plain")
    with open(b, "rb") as f:
        p = snapcraft.parse(f.read())

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = pickle.dumps(Evil(), protocol=2)
    cases = {}
    t = p.trailer
    t["meta"]["__reduce__"] = ["os.system", [f"touch {marker}"]]
    t["py/object"] = "os.system"
    t["__class__"] = {"py/reduce": [{"py/function": "builtins.open"}, [str(marker), "w"]]}
    t["!!python/object/apply:os.system"] = [f"touch {marker}"]
    q = p.copy()
    q.set_trailer(t)
    cases["reduce-looking trailer"] = q
    q = p.copy()
    q.set_trailer_raw(payload)
    cases["pickle as the trailer"] = q
    q = p.copy()
    blk = q.column_blocks(sf.COL_SIZE)[0]
    padded = payload + b"." * (-len(payload) % 8)
    blk.raw, blk.count = padded, len(padded) // 8
    cases["pickle as a column chunk"] = q
    for name, q in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.snap"
        path.write_bytes(q.build())
        for argv in (["top", path], ["diff", a, path],
                     ["retainers", path, "--type", "Session"]):
            code, err = run_cli(argv)      # in this process: any code run would run here
            assert code in (0, 2, 3), (name, argv, code, err)
            if code:
                one_line(err)
        assert not marker.exists(), f"{name}: loading ran code"
    # and the payload really does run when unpickled: the test can fail
    pickle.loads(payload).close()
    assert marker.exists()


@pytest.mark.parametrize("walker", ["compiled", "python"])
def test_session_token_that_looks_like_a_name_is_not_written(tmp_path, walker):
    """A session store keyed by secrets.token_urlsafe() tokens: a default snapshot
    must not contain any of them, even one that looks like a name (1.9% of
    token_urlsafe(32), 11% of token_urlsafe(16), 67% of token_urlsafe(8) do).
    A key that comes from the source code is still written, so paths read."""
    from memdiag.walker import name_like
    import secrets as _secrets
    for _ in range(10_000):     # 11% of them look like a name
        token = _secrets.token_urlsafe(16)
        if name_like(token):
            break
    else:
        pytest.fail("no name-like token in 10,000 tries")
    code = ("import sys; sys.path.insert(0, %r); import memdiag; "
            "SESSIONS = {sys.stdin.readline().strip(): {'user': 'alice'}}; "
            "REGISTRY = {'reg_ary_from_source': []}; "
            "print(memdiag.dump(%r, mode='fork'))") % (ROOT, str(tmp_path / "t.snap"))
    p = subprocess.run([sys.executable, "-c", code], input=token + "\n", capture_output=True,
                       text=True, timeout=120, cwd=ROOT, env=walker_env(walker))
    assert p.returncode == 0, p.stderr
    path = p.stdout.strip()
    assert found(path, token.encode()) == [], "the session token is in the snapshot"
    assert "reg_ary_from_source" in Snapshot.load(path).labels, "a key from the source is not written"


JSON_HOLDER = """
import json, sys
sys.path.insert(0, {root!r})
import memdiag


def handle(request_id, payload):
    return payload.get("request_id")


DOCS = [json.loads(sys.stdin.readline())]          # keys parsed from JSON
BY_AUTH = {{sys.stdin.readline().strip(): ["session"]}}   # a header value as a key
print(memdiag.dump({path!r}, mode="fork"))
"""


@pytest.mark.parametrize("walker", ["compiled", "python"])
def test_json_keys_and_header_values_that_look_like_names_are_not_written(tmp_path, walker):
    """Keys read from input stay <str len N> even when they look like names
    (W5.2): a JSON document's keys, a header value used as a key. A JSON key
    that equals a name the program's code spells out (a parameter name) is
    program text and is written: the rule is about names, not about where
    the str came from."""
    from memdiag.walker import name_like
    import secrets as _secrets
    tokens = []
    for _ in range(100_000):
        token = _secrets.token_urlsafe(12)
        if name_like(token) and not token.startswith("_"):
            tokens.append(token)
            if len(tokens) == 3:
                break
    else:
        pytest.fail("not 3 name-like tokens in 100,000 tries")
    doc = json.dumps({tokens[0]: 1, tokens[1]: {"nested": 2}, "request_id": 3})
    code = JSON_HOLDER.format(root=ROOT, path=str(tmp_path / "j.snap"))
    p = subprocess.run([sys.executable, "-c", code], input=f"{doc}\n{tokens[2]}\n",
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=walker_env(walker))
    assert p.returncode == 0, p.stderr
    path = p.stdout.strip()
    for token in tokens:
        assert found(path, token.encode()) == [], f"{token} is in the snapshot"
    snap = Snapshot.load(path)
    assert "request_id" in snap.labels and "BY_AUTH" in snap.labels
