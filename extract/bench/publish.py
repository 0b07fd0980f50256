"""What every bench does at its end: the JSON written, the table printed (bench-extract, bench-finetune)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from probekit.core.runfolder import write_json_atomic


def publish(result: dict, out: Path, format_table: Callable[[dict], str]) -> dict:
    """Write `result` to `out` (atomically, its folder made), print its table and where it went; return it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    sys.stdout.write(format_table(result) + f"\nwritten: {out}\n")
    sys.stdout.flush()
    return result
