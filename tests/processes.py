"""Every process a test or a benchmark starts is stopped, however its parent ends.

    process = spawn([...], env=..., stdout=...)   # its own session: a process group of its own
    terminate(process)    # SIGTERM to it (a warm shutdown), then SIGKILL to whatever is left of its group
    terminate_all([...])  # the same for several, with one common timeout
    kill(process)         # SIGKILL to the whole group at once (a worker and its pool children)
    handle_termination()  # SIGTERM/SIGHUP/SIGINT raise in the main thread, so `finally` blocks run

Whatever is still registered when the interpreter exits (normal end, an exception, Ctrl-C,
a SIGTERM turned into an exception by `handle_termination`) is stopped by an `atexit`
handler: SIGTERM to every group, a grace period, then SIGKILL. A child in a session of its
own does not see the Ctrl-C of the terminal: its parent stops it.

No Django here: benchmarks, tests/rabbitmq_node.py and tests/support.py use it alike.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
import time

_live: dict[int, subprocess.Popen] = {}  # process group id (the leader's pid) -> its leader
_lock = threading.Lock()
_stopping = False
_atexit_registered = False


def spawn(argv: list[str], **popen) -> subprocess.Popen:
    """subprocess.Popen in a new session (so its group id is its pid), stopped at exit at the latest."""
    global _atexit_registered
    popen["start_new_session"] = True
    process = subprocess.Popen(argv, **popen)
    with _lock:
        _live[process.pid] = process
        if not _atexit_registered:
            atexit.register(stop_all)
            _atexit_registered = True
    return process


def running() -> list[subprocess.Popen]:
    """The registered processes whose group still has a member."""
    with _lock:
        return [p for pgid, p in _live.items() if _group_alive(pgid, p)]


def _group_alive(pgid: int, process: subprocess.Popen) -> bool:
    process.poll()  # reap the leader if it has exited
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_groups(pgids: dict[int, subprocess.Popen], timeout: float) -> dict[int, subprocess.Popen]:
    """Wait until no member of these groups is left, or `timeout`; return the groups still alive."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {pgid: p for pgid, p in pgids.items() if _group_alive(pgid, p)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _forget(process: subprocess.Popen) -> None:
    with _lock:
        _live.pop(process.pid, None)


def terminate(process: subprocess.Popen, timeout: float = 30.0, *, whole_group: bool = False,
              signalled: bool = False) -> int | None:
    """SIGTERM (to the leader, or to its whole group), wait up to `timeout`, then SIGKILL the group.

    A Celery worker's warm shutdown wants SIGTERM to its main process only: its pool
    children finish the task in hand and are stopped by it. Whatever of the group is still
    there after the leader has gone (or after `timeout`) is killed. Returns the exit code.
    `signalled`: the SIGTERM has been sent already, only wait.
    """
    pgid = process.pid
    if process.poll() is None:
        try:
            if signalled:
                pass
            elif whole_group:
                os.killpg(pgid, signal.SIGTERM)
            else:
                process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(pgid, signal.SIGKILL)
    _wait_groups({pgid: process}, 10)
    _forget(process)
    return process.poll()


def terminate_all(group: list[subprocess.Popen], timeout: float = 60.0) -> None:
    """`terminate` several at once: SIGTERM to every leader, one common `timeout`, then SIGKILL."""
    for process in group:
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for process in group:
        terminate(process, max(0.0, deadline - time.monotonic()), signalled=True)


def kill(process: subprocess.Popen) -> None:
    """SIGKILL to the whole process group (the leader and every child it started)."""
    _signal_group(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    _wait_groups({process.pid: process}, 10)
    _forget(process)


def mark() -> frozenset[int]:
    """The processes registered now: `stop_all(keep=mark())` later stops only those started since."""
    with _lock:
        return frozenset(_live)


def stop_all(grace: float = 20.0, *, keep: frozenset[int] = frozenset()) -> None:
    """SIGTERM to every registered group still alive (but those in `keep`), `grace` seconds, then SIGKILL.

    Called at exit with no `keep`; a block that started processes calls it with the `mark()`
    it took before starting them.
    """
    global _stopping
    if not keep:
        _stopping = True
    with _lock:
        groups = {pgid: p for pgid, p in _live.items() if pgid not in keep}
    groups = {pgid: p for pgid, p in groups.items() if _group_alive(pgid, p)}
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    for pgid in _wait_groups(groups, grace):
        _signal_group(pgid, signal.SIGKILL)
    _wait_groups(groups, 10)
    with _lock:
        for pgid in groups:
            _live.pop(pgid, None)


def handle_termination(exception: type[BaseException] = SystemExit,
                       signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)) -> None:
    """Turn the first of `signals` into an exception in the main thread; ignore the ones after it.

    SIGINT raises KeyboardInterrupt, the others `exception` (SystemExit(128 + signal) by
    default), so every `finally` and `with` block on the way out runs, and then `stop_all`.
    A second signal while that cleanup runs is ignored, so the cleanup is not cut short.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def ignore(signum, frame):
        pass

    def first(signum, frame):
        for sig in signals:
            signal.signal(sig, ignore)
        if _stopping:
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if exception is SystemExit:
            raise SystemExit(128 + signum)
        raise exception(f"signal {signal.Signals(signum).name}")

    for sig in signals:
        signal.signal(sig, first)
