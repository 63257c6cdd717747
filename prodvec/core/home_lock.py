"""One writer at a time per family of a home, and for the home's Feast state.

An advisory `flock` on a small file (`snapshots/<family>/.lock`,
`feast/.lock`). The kernel releases it when its holder dies, however it dies
(kill -9 included), so a lock of a dead process never has to be broken by
hand: the next run simply gets it. The file also records who holds it (PID,
command, since when) for the message the second writer sees.

Locks are re-entrant within a process: the training loop holds its family's
lock and the validation gate it calls updates the same family's cards.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

# How long a second writer waits for the lock before giving up [seconds].
WAIT_ENV = "PRODVEC_LOCK_WAIT"

_held: dict[str, list[int]] = {}  # lock file -> [fd, depth]
_guard = threading.Lock()


class HomeLocked(RuntimeError):
    """Another live process holds the lock; the message says which and since when."""


def owner_alive(pid: int) -> bool:
    """Whether a process with this PID exists (temporary files of a dead one are orphans)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"PID {info.get('pid')} ({info.get('command', '?')}) since {info.get('since', '?')}"


@contextmanager
def locked(path: Path, what: str, wait: float | None = None):
    """Hold the lock file `path` for the block; `what` names the thing locked in the message."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield
        finally:
            with _guard:
                entry[1] -= 1
        return
    wait = float(os.environ.get(WAIT_ENV, "0")) if wait is None else wait
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise HomeLocked(f"{what} is locked by {_holder(path)}; wait until it finishes "
                                 f"(or set {WAIT_ENV}=SECONDS to wait). A lock of a process that died "
                                 f"is released by itself.") from None
            time.sleep(0.2)
    record = {"pid": os.getpid(), "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))[:200],
              "since": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    with _guard:
        _held[key] = [fd, 1]
    try:
        yield
    finally:
        with _guard:
            _held.pop(key, None)
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
