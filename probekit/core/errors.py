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


NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
READ_ONLY = (errno.EROFS,)
NO_ACCESS = (errno.EACCES, errno.EPERM)


def is_short_write(e: BaseException) -> bool:
    """numpy's ``OSError: 4608 requested and 3040 written``: a full disk that set no errno."""
    text = " ".join(map(str, getattr(e, "args", ())))  # not str(e): a file name set later changes it
    return isinstance(e, OSError) and getattr(e, "errno", None) is None and "requested and" in text \
        and "written" in text


def disk_full(e: OSError, folder: str | Path, kept: str) -> DiskFullError | None:
    """A one-line :class:`DiskFullError` for an OSError that means 'disk full', else None.

    A short write without an errno (numpy's "N requested and M written") counts as one.

    Args:
        folder: where the write went (its free space is reported).
        kept: what is still there and trusted, e.g. "finished shards are kept in ...".
    """
    if getattr(e, "errno", None) not in NO_SPACE and not is_short_write(e):
        return None
    try:
        free = f"{shutil.disk_usage(Path(folder).parent).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(f"no space left on the device writing under {folder} ({free}); the run stopped and "
                         f"nothing half-written was kept: {kept}. Free some space (or pass --artifacts DIR "
                         "on another disk) and run again.")


def os_error(e: OSError, folder: str | Path | None = None, kept: str = "") -> ProbekitError | None:
    """One line for an OSError the user can fix (full disk, read-only or forbidden path), else None.

    Args:
        folder: where the write went, when the error itself names no file.
        kept: what is still there and trusted (said for a full disk).
    """
    where = getattr(e, "filename", None) or folder
    full = disk_full(e, where or ".", kept or "the previous outputs are as they were")
    if full is not None:
        return full
    code = getattr(e, "errno", None)
    if code in READ_ONLY:
        return ProbekitError(f"{where}: the file system is read-only, so probekit cannot write there; pass "
                             "--artifacts DIR on a writable disk (or remount it read-write).")
    if code in NO_ACCESS:
        return ProbekitError(f"{where}: permission denied ({e.strerror or e}); make it readable and writable "
                             "for this user (chmod/chown) or pass --artifacts DIR.")
    return None
