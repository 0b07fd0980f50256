"""What the config sections share: the split names, the run-name rule and the choice check."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from probekit.core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout (configs/, the demo data)
PROBLEM_TYPES = ("multi_label", "single_label")
LOCAL_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
LABEL_FORMATS = ("auto", "ids", "names", "ids_csv", "names_csv", "columns")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _choice(section: str, key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"[{section}] {key}={value!r} is not one of {', '.join(map(repr, allowed))}.")
