"""One writer per run folder: an advisory lock, so two runs never write the same outputs at once.

    with run_lock(cfg.run_dir, "extract"):       # waits up to PROBEKIT_LOCK_TIMEOUT seconds
        run_extract(cfg)

The lock is ``flock`` on ``<run_dir>/.probekit.lock`` (POSIX). The operating system drops it
when its process ends, ``kill -9`` included, so a crashed run never leaves a stale lock.
The file records who holds it (pid, command, host, start time), so a run that has to wait
says what it waits for; the holder removes it when done. A second run waits up to ``timeout`` seconds (default 60, or
``PROBEKIT_LOCK_TIMEOUT`` in the environment; 0 refuses at once), then stops with one line.
Under torchrun only global rank 0 takes the lock: it stands for the whole process group.
The holder first removes temporary files that killed runs left in the folder
(``runfolder.remove_stale_temp``). A folder this process may not write (a read-only file
system, no permission) gets no lock: the run goes on with a warning, so a stage that only
reads (extract with a finished cache) works, and one that must write stops at its first
write with one line. Torch-free: classify and analysis use it too.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from probekit.core.errors import NO_ACCESS, READ_ONLY, ProbekitError, os_error
from probekit.core.runfolder import remove_stale_temp

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no lock, as before
    fcntl = None

logger = logging.getLogger(__name__)

LOCK_NAME = ".probekit.lock"
TIMEOUT_ENV = "PROBEKIT_LOCK_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
_POLL_S = 0.2


class RunLockedError(ProbekitError):
    """Another probekit process holds the run folder's lock."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"pid {info['pid']} on {info['host']}, 'probekit {info['command']}' since {info['since']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def default_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ProbekitError(f"{TIMEOUT_ENV}={raw!r} must be a number of seconds.") from None


@contextmanager
def run_lock(run_dir: str | Path, command: str, timeout: float | None = None) -> Iterator[Path | None]:
    """Hold the run folder's lock for the duration of the block.

    Args:
        run_dir: the run folder (created if missing).
        command: what this process does, shown to a run that waits ("extract", "classify", ...).
        timeout: seconds to wait for another holder; None: ``default_timeout()``.

    Raises:
        RunLockedError: still held by another process after `timeout` seconds.
    """
    if fcntl is None or int(os.environ.get("RANK", "0") or 0) != 0:
        yield None
        return
    timeout = default_timeout() if timeout is None else timeout
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # Opened without truncating: the holder's record must survive a waiter opening the file.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno not in (*READ_ONLY, *NO_ACCESS) or not run_dir.is_dir():
            raise (os_error(e) or e) from None
        logger.warning("%s is not writable (%s): running without the run-folder lock; a stage that must "
                       "write there will stop", run_dir, e.strerror)
        yield None
        return
    deadline, told = time.monotonic() + timeout, False
    while True:
        if fd is None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RunLockedError(
                            f"{run_dir} is in use by {_holder(path)}; waited {timeout:g}s. Let it finish, or "
                            f"write elsewhere (--set run.name=NAME or --artifacts DIR); {TIMEOUT_ENV}=SECONDS "
                            "waits longer."
                        ) from None
                    if not told:
                        logger.warning("%s is in use by %s; waiting up to %gs", run_dir, _holder(path), timeout)
                        told = True
                    time.sleep(_POLL_S)
        except BaseException:
            os.close(fd)
            raise
        # The holder removes the file when it is done: a lock taken on a removed file guards
        # nothing, so take the one now at `path` instead.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
        fd = None
    try:
        record = {"pid": os.getpid(), "command": command, "host": socket.gethostname(),
                  "since": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode() + b"\n", 0)
        remove_stale_temp(run_dir)  # this process is the folder's only writer now
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)  # removed while still locked: the run folder keeps only outputs
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
