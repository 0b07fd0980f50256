"""The errors a user can cause: the CLI prints their message as one line and exits 2."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class ProbekitError(Exception):
    """An error in the user's input: the CLI prints its message as one line and exits 2."""


class ConfigError(ProbekitError, ValueError):
    """A bad preset, key or value."""


class CacheError(ProbekitError):
    """A cache that exists but cannot be trusted (wrong schema, shape, dtype or checksum)."""


class DiskFullError(ProbekitError):
    """A write failed for lack of space (or quota); nothing half-written was kept."""


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def disk_full(e: OSError, folder: str | Path, kept: str) -> DiskFullError | None:
    """A one-line :class:`DiskFullError` for an OSError that means 'disk full', else None.

    Args:
        folder: where the write went (its free space is reported).
        kept: what is still there and trusted, e.g. "finished shards are kept in ...".
    """
    if getattr(e, "errno", None) not in NO_SPACE:
        return None
    try:
        free = f"{shutil.disk_usage(Path(folder).parent).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(f"no space left on the device writing under {folder} ({free}); the run stopped and "
                         f"nothing half-written was kept: {kept}. Free some space (or pass --artifacts DIR "
                         "on another disk) and run again.")
