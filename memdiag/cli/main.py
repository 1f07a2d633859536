"""The memdiag command. main(argv) -> exit code is the single entry point and
the error boundary: errors become one line on stderr, never a traceback
(set MEMDIAG_DEBUG=1 to see one)."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer
from typing import Annotated

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer depends on click
    from click import exceptions as click_exc

from .errors import (EXIT_BAD_FILE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE,
                     MemdiagError)
from .examples import EPILOGS

app = typer.Typer(
    name="memdiag", add_completion=True, no_args_is_help=True,
    pretty_exceptions_enable=False, rich_markup_mode=None,
    help="What is growing in a long-running Python process, and who is holding it.",
)


def _print_version(value: bool):
    if value:
        from .version import version_text
        print(version_text())
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[Optional[bool], typer.Option("--version", is_eager=True, callback=_print_version, help="Show the version, and for which Pythons the compiled walker is built.")] = None,
):
    """What is growing in a long-running Python process, and who is holding it."""

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
TopOpt = Annotated[int, typer.Option("--top", min=1, help="How many rows per table.")]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             epilog=EPILOGS["run"])
def run(
    command: Annotated[List[str], typer.Argument(help="The program and its arguments, after --.")],
    dir: Annotated[Optional[str], typer.Option("--dir", help="Snapshot directory (default $MEMDIAG_DIR, else /tmp/memdiag-<uid>).")] = None,
    signal: Annotated[str, typer.Option("--signal", help="Signal that triggers a snapshot.")] = "USR2",
    trace_frames: Annotated[int, typer.Option("--trace-frames", min=0, help="Record tracemalloc allocation sites with this many frames (slows the program).")] = 0,
    strings: Annotated[bool, typer.Option("--strings", help="Write str contents into snapshots (off: lengths only).")] = False,
    mode: Annotated[str, typer.Option("--mode", help="auto, fork or inline.")] = "auto",
    snapshot_at_rss: Annotated[Optional[str], typer.Option("--snapshot-at-rss", help="Take a snapshot when RSS crosses this size (1.5G) or share of the memory limit (80%: cgroup, else physical memory), before a supervisor or the OOM killer ends the process.")] = None,
    snapshot_every: Annotated[Optional[str], typer.Option("--snapshot-every", help="With --snapshot-at-rss: one more snapshot at each further growth of this size (200M) or share of the limit (5%).")] = None,
    max_snapshots: Annotated[int, typer.Option("--max-snapshots", min=1, help="Automatic snapshots kept per process: the first, and the latest others (older ones are deleted).")] = 5,
    exit_after_snapshot: Annotated[bool, typer.Option("--exit-after-snapshot", help="With --snapshot-at-rss: once the snapshot is written, the process sends itself SIGTERM and retires the way it handles SIGTERM (a gunicorn worker finishes its request; the master starts another).")] = False,
    watchable: Annotated[bool, typer.Option("--watchable", help="Let memdiag watch show the Python heap counters (one hook thread that sleeps until a watcher asks; --snapshot-at-rss implies it).")] = False,
):
    """Start a Python program with the snapshot hook installed."""
    from . import run as mod
    return mod.command(list(command), dir, signal, trace_frames, strings, mode, snapshot_at_rss,
                       snapshot_every, max_snapshots, exit_after_snapshot, watchable)


@app.command(epilog=EPILOGS["snapshot"])
def snapshot(
    pid: Annotated[Optional[int], typer.Argument(help="Process id of a program started with the hook (with --children: their parent, e.g. a gunicorn master).")] = None,
    dir: Annotated[Optional[str], typer.Option("--dir", help="Where the target writes (default: what its hook registered).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the file.")] = 60.0,
    as_json: JsonOpt = False,
    children: Annotated[bool, typer.Option("--children", help="Snapshot every hooked descendant of PID at once (the workers of a pre-fork server); one path per line.")] = False,
    every: Annotated[bool, typer.Option("--all", help="Snapshot every hooked process of this user at once.")] = False,
):
    """Make a hooked process write a snapshot; print the file's path."""
    from . import snapshot as mod
    return mod.command(pid, dir, timeout, as_json, children, every)


@app.command(epilog=EPILOGS["ps"])
def ps(as_json: JsonOpt = False):
    """List the processes of this user that have the hook: pid, parent, command, RSS, Python heap, snapshots."""
    from . import ps as mod
    return mod.command(as_json)


@app.command(epilog=EPILOGS["watch"])
def watch(
    pids: Annotated[Optional[List[int]], typer.Argument(help="Processes to watch (any process; the hook adds Python heap counters and snapshots).")] = None,
    children: Annotated[Optional[int], typer.Option("--children", help="Watch this process and all its descendants (e.g. a gunicorn master and its workers), as they come and go.")] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between two readings.")] = 2.0,
    count: Annotated[int, typer.Option("--count", min=0, help="Stop after this many readings (0: until q, Ctrl-C, or the processes exit).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per reading on stdout (the default when stdout is not a terminal).")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for a snapshot (key s).")] = 60.0,
):
    """Watch RSS, its growth per minute and the Python heap live; s snapshots, d diffs the last two, q quits."""
    from . import watch as mod
    return mod.command(list(pids or []), children, interval, count, as_json, timeout)


@app.command(epilog=EPILOGS["attach"])
def attach(
    pid: Annotated[int, typer.Argument(help="Process id of a running Python program (3.11-3.15) started without memdiag.")],
    dir: Annotated[Optional[str], typer.Option("--dir", help="Snapshot directory (default: the target's /tmp/memdiag-<uid>).")] = None,
    signal: Annotated[str, typer.Option("--signal", help="Signal that triggers a snapshot.")] = "USR2",
    strings: Annotated[bool, typer.Option("--strings", help="Write str contents into snapshots (off: lengths only).")] = False,
    snapshot: Annotated[bool, typer.Option("--snapshot", help="Take one snapshot right after attaching; print its path.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the target to reach a safe point.")] = 30.0,
    as_json: JsonOpt = False,
):
    """Install the snapshot hook into a running Python process."""
    from . import attach as mod
    return mod.command(pid, dir, signal, strings, snapshot, timeout, as_json)


@app.command("build-walker", epilog=EPILOGS["build-walker"])
def build_walker(
    python: Annotated[str, typer.Option("--python", help="The interpreter the programs run (a path, or a name on PATH such as python3.13).")],
    force: Annotated[bool, typer.Option("--force", help="Build again even if the cache has one (replaces it).")] = False,
    as_json: JsonOpt = False,
):
    """Compile the walker for another Python than memdiag's own, into the user's cache (memdiag run and attach use it)."""
    from . import walkers as mod
    return mod.command(python, force, as_json)


@app.command(epilog=EPILOGS["top"])
def top(
    snapshot: Annotated[str, typer.Argument(help="A .snap file.")],
    top: TopOpt = 10,
    as_json: JsonOpt = False,
    retained: Annotated[bool, typer.Option("--retained", help="Also the objects that keep the most memory alive (retained size, through the dominator tree).")] = False,
):
    """Totals, types by bytes and count, and the largest containers with their paths."""
    from . import top as mod
    return mod.command(snapshot, top, as_json, retained)


@app.command(epilog=EPILOGS["diff"])
def diff(
    snapshots: Annotated[List[str], typer.Argument(help="Two or more .snap files of one process, or the files of several workers of one service (each one's own are compared, then summarized).")],
    top: TopOpt = 10,
    as_json: JsonOpt = False,
    min_growth: Annotated[int, typer.Option("--min-growth", min=1, help="Ignore containers that grew by fewer elements.")] = 1,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 1 if there is a suspect, 0 if none (for scripts and CI).")] = False,
    retained: Annotated[Optional[bool], typer.Option("--retained/--no-retained", help="Retained sizes of the suspects in the first and the last snapshot (two dominator trees: at 3M objects, about 0.6 s and twice the memory). Default: on when the compiled extension is built.", show_default=False)] = None,
    html: Annotated[Optional[str], typer.Option("--html", help="Also write the HTML report to this file (as memdiag report -o).")] = None,
    force: Annotated[bool, typer.Option("--force", help="With --html: replace the file if it exists.")] = False,
):
    """Rank growing types and name suspects: containers and groups of containers that grew, and objects whose own size grew, with their paths."""
    from . import diff as mod
    return mod.command(snapshots, top, as_json, min_growth, exit_code, retained, html, force)


@app.command(epilog=EPILOGS["report"])
def report(
    snapshots: Annotated[List[str], typer.Argument(help="Two or more .snap files of one process.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="The HTML file to write (default memdiag-<pid>-report.html). Mode 0644: a report is meant to be shared.")] = None,
    top: TopOpt = 10,
    force: Annotated[bool, typer.Option("--force", help="Replace the output file if it exists.")] = False,
    min_growth: Annotated[int, typer.Option("--min-growth", min=1, help="Ignore containers that grew by fewer elements.")] = 1,
):
    """Write one self-contained HTML page: memory chart, growing types, suspects with their retainer trees."""
    from . import report as mod
    return mod.command(snapshots, output, top, force, min_growth)


@app.command(epilog=EPILOGS["retainers"])
def retainers(
    snapshot: Annotated[str, typer.Argument(help="A .snap file.")],
    type_name: Annotated[str, typer.Option("--type", help="Type name, e.g. str or ccap.cap.CAP (a suffix like CAP works).")],
    since: Annotated[Optional[str], typer.Option("--since", help="Only objects new since this older snapshot.")] = None,
    top: TopOpt = 10,
    as_json: JsonOpt = False,
    retained: Annotated[Optional[bool], typer.Option("--retained/--no-retained", help="Bytes each chain keeps alive (a dominator tree of the snapshot). Default: on when the compiled extension is built.", show_default=False)] = None,
):
    """Show how objects of a type are held: shortest paths to roots, merged by shape."""
    from . import retainers as mod
    return mod.command(snapshot, type_name, since, top, as_json, retained)


@app.command(epilog=EPILOGS["demo"])
def demo(
    sample: Annotated[str, typer.Option("--sample", help="captcha, events, control, native, spread, buffer or weak.")] = "captcha",
    requests: Annotated[int, typer.Option("--requests", min=1, help="Requests between the two snapshots.")] = 500,
    out: Annotated[str, typer.Option("--out", help="Directory for the demo's snapshots.")] = "demo-out",
):
    """Run a sample leak, take two snapshots, and diff them."""
    from . import demo as mod
    return mod.command(sample, requests, out_dir=out)


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = app(args=args, prog_name="memdiag", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except MemdiagError as e:
        _error(str(e))
        return e.exit_code
    except click_exc.NoArgsIsHelpError as e:
        sys.stderr.write((e.ctx.get_help() if e.ctx else "") + "\n")
        return EXIT_USAGE
    except click_exc.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "memdiag"
        _error(f"{e.format_message()} (see: {cmd} --help)")
        return EXIT_USAGE
    except (typer.Exit, getattr(click_exc, "Exit", typer.Exit)) as e:
        return e.exit_code
    except (typer.Abort, getattr(click_exc, "Abort", typer.Abort), KeyboardInterrupt):
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except Exception as e:  # the error boundary: one line, no traceback
        if _bad_file(e):
            # A column found damaged when first decoded, after loading succeeded.
            _error(str(e))
            return EXIT_BAD_FILE
        if os.environ.get("MEMDIAG_DEBUG"):
            raise
        text = str(e).strip().splitlines()
        _error(f"internal error: {type(e).__name__}: {text[0] if text else ''} "
               f"(set MEMDIAG_DEBUG=1 for a traceback)")
        return EXIT_INTERNAL


def _bad_file(e):
    """Whether e is a SnapshotError (memdiag.model is loaded if one was raised;
    importing it here would load numpy for every command)."""
    model = sys.modules.get("memdiag.model")
    return model is not None and isinstance(e, model.SnapshotError)


def _error(message):
    sys.stderr.write(f"memdiag: error: {message}\n")


def _quiet_stdout():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def run_main():
    sys.exit(main())


if __name__ == "__main__":
    run_main()
