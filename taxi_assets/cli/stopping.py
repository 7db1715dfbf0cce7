"""Ctrl-C and SIGTERM stop a command within seconds, print one line, and leave no process behind.

Why not let Python raise ``KeyboardInterrupt`` and unwind: a terminal's Ctrl-C reaches the whole process
group, so Prefect's ephemeral API server (a child process) dies at once while the flow engine, unwinding,
keeps reporting its crash to that dead API with retries and back-off (minutes), and prints their tracebacks;
a SIGTERM sent to the command alone kills it without ``atexit``, leaving the API server and the Dask workers
running under PID 1. So the command stops itself: it names the signal, terminates every process it started
(the API server, Dask nannies and workers; SIGKILL for those still there after a grace), and exits with
128 + the signal number (130 for SIGINT, 143 for SIGTERM).

The data stays whole because every month is one atomic Delta commit per table: files written for a month
that was not committed are not part of any table version, and the next run rebuilds that month. Its
concurrency slot is released by the next run (the holder's pid is gone, see orchestration/month_lock.py).

The stop runs on a watcher thread woken through ``signal.set_wakeup_fd``, so it happens even while the main
thread is inside a long native call that delays Python-level signal handlers; the handler does the same
when it gets to run. Only the main thread of a process can install handlers: elsewhere (a command called
from a test's worker thread) nothing is installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Final

import psutil

STOPPING_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS: Final = 3.0  # children get SIGTERM, then SIGKILL after this


def end_children(grace: float = GRACE_SECONDS) -> list[int]:
    """Terminate every descendant of this process (SIGTERM, then SIGKILL after ``grace``); their pids."""
    try:
        kids = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    for kid in kids:
        with contextlib.suppress(psutil.Error):
            kid.terminate()
    _, alive = psutil.wait_procs(kids, timeout=grace)
    for kid in alive:
        with contextlib.suppress(psutil.Error):
            kid.kill()
    psutil.wait_procs(alive, timeout=grace)
    return [k.pid for k in kids]


# What a stop leaves behind, by command (a command not named changes nothing).
_MONTHS_LEFT: Final = (
    "nothing partial was committed (a month still being written is in no table version); run the command again to "
    "finish"
)
LEFT_BEHIND: Final = {
    "run": _MONTHS_LEFT,
    "materialize": _MONTHS_LEFT,
    "demo": _MONTHS_LEFT,
    "synth": "every month file written so far is whole (each appears at once); run the command again to finish",
    "report": "no report was written (it appears whole or not at all); run the command again",
}
NOTHING_CHANGED: Final = "nothing was changed"


class _Stopper:
    def __init__(self, prog: str, left_behind: str) -> None:
        self.prog = prog
        self.left_behind = left_behind
        self.once = threading.Lock()

    def stop(self, signum: int) -> None:
        if not self.once.acquire(blocking=False):
            return  # a second Ctrl-C while stopping: the stop already under way finishes
        name = signal.Signals(signum).name
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
            if sys.stdout.isatty():
                os.write(1, b"\x1b[?25h\n")  # a progress bar hid the cursor
            err = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # what the teardown says in this process (Dask's nanny "restarting worker") is noise
            os.dup2(devnull, 2)
        end_children()
        with contextlib.suppress(Exception):
            line = f"{self.prog}: stopped by {name}: {self.left_behind}\n"
            os.write(err, line.encode())
        os._exit(128 + signum)

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.stop(signum)

    def watch(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 64)
            except BlockingIOError:
                continue
            except OSError:
                return  # closed: the command ended normally
            if not data:
                return
            for signum in data:
                if signum in {int(s) for s in STOPPING_SIGNALS}:
                    self.stop(signum)


@contextlib.contextmanager
def stop_on_signals(prog: str = "taxi-assets", command: str = "") -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM stop the command as described above; handlers restored after.

    ``command`` chooses the line's second half: what a stop of that command leaves behind (:data:`LEFT_BEHIND`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopper = _Stopper(prog, LEFT_BEHIND.get(command, NOTHING_CHANGED))
    previous = {sig: signal.getsignal(sig) for sig in STOPPING_SIGNALS}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=stopper.watch, args=(read_fd,), name="signal-watcher", daemon=True)
    watcher.start()
    for sig in STOPPING_SIGNALS:
        signal.signal(sig, stopper.handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        signal.set_wakeup_fd(old_wakeup)
        os.close(write_fd)  # the watcher's read returns b"" and it ends
        watcher.join(timeout=1)
        os.close(read_fd)
