"""Label cells -> label lists -> a 0/1 matrix over the label names: the reading half of ``extract.data``.

A label cell is an id, a name, a list of either, a ``"3,17"`` string, or (``label_format =
"columns"``) one 0/1 cell per label column. :func:`read_cells` parses one split's cells into a
list per row, :func:`label_names` finds the names (given, a names file, the Hub's ClassLabel,
or the values seen) and :func:`indicator` turns the lists into a 0/1 matrix, refusing a label
the names do not have with one line naming the file, row and field. Torch-free.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from probekit.core.config import DataSection
from probekit.stages.extract.dataset import DataError

logger = logging.getLogger(__name__)

_IDS_CSV = re.compile(r"^\s*\d+(\s*,\s*\d+)*\s*$")


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _class_names(feature) -> list[str] | None:
    feature = getattr(feature, "feature", feature)  # List(ClassLabel) -> ClassLabel
    return list(feature.names) if hasattr(feature, "names") else None


def infer_format(data: DataSection, samples: list) -> str:
    """Guess the label format from the train split's label cells."""
    if len(data.label_fields) > 1:
        return "columns"
    first = samples[0]
    if isinstance(first, (list, tuple)):
        return "ids" if all(isinstance(v, (int, np.integer)) for row in samples for v in row) else "names"
    if isinstance(first, (int, np.integer, bool)):
        return "ids"
    text = [str(v) for v in samples if not is_missing(v)]
    comma = any("," in v for v in text)
    if all(_IDS_CSV.match(v) for v in text):
        return "ids_csv" if comma else "ids"
    return "names_csv" if comma else "names"


def label_names(data: DataSection, raw: dict, fmt: str, values: dict) -> list[str]:
    if data.label_names:
        return list(data.label_names)
    if data.label_names_file:
        p = Path(data.label_names_file)
        if not p.is_absolute() and data.source == "local":
            p = Path(data.path) / p
        if not p.is_file():
            raise DataError(f"[data] label_names_file: {p} not found.")
        names = [line.strip() for line in p.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        if not names:
            raise DataError(f"{p}: no label names in it (one per line).")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise DataError(f"{p}: names {twice} appear twice; each label needs its own line (one name per line).")
        return names
    if fmt == "columns":
        return list(data.label_fields)
    names = _class_names(raw["train"].features.get(data.label_fields[0]))
    if names:
        return names
    if fmt in ("names", "names_csv"):
        found = {n for vals in values.values() for row in vals for n in row}
        return sorted(found)
    top = max((i for vals in values.values() for row in vals for i in row), default=-1)
    logger.warning("no label names given ([data] label_names or label_names_file): using ids 0..%d", top)
    return [str(i) for i in range(top + 1)]


def _label_id(x) -> int:
    if isinstance(x, (bool, np.bool_)):  # JSON true would quietly become class 1
        raise ValueError(f"{x!r} is a boolean, not a label id")
    if isinstance(x, (float, np.floating)) and x != int(x):  # int(1.5) would quietly give 1
        raise ValueError(f"{x!r} is not a whole number")
    return int(x)


def _parse_row(v, fmt: str) -> list:
    """One label cell -> list of ids (int) or names (str)."""
    items = v if isinstance(v, (list, tuple)) else [v]
    if fmt in ("ids", "names") and any(is_missing(x) or (isinstance(x, str) and not x.strip()) for x in items):
        raise ValueError("an empty label in the list")
    if fmt == "ids":
        return [_label_id(x) for x in items]
    if fmt == "names":
        return [str(x).strip() for x in items]
    parts = [p.strip() for p in str(v).split(",") if p.strip()]
    return [int(p) for p in parts] if fmt == "ids_csv" else parts


def read_cells(data: DataSection, cols: dict, fmt: str, where: str) -> list[list]:
    """One split's label cells -> one list of ids or names per row.

    Raises:
        DataError: a cell that is not of ``fmt`` (file, row and field named).
    """
    rows = []
    for i in range(len(cols[data.text_field])):
        try:
            if fmt == "columns":
                row = []
                for k, name in enumerate(data.label_fields):
                    bad = name  # names the column in the error below
                    if is_missing(cols[name][i]) or float(cols[name][i]) not in (0.0, 1.0):
                        raise ValueError("a label column holds 0 or 1")
                    if float(cols[name][i]) == 1.0:
                        row.append(k)
                rows.append(row)
            else:
                bad = data.label_fields[0]
                cell = cols[bad][i]
                if is_missing(cell) or cell == "":
                    raise ValueError("empty label cell")
                rows.append(_parse_row(cell, fmt))
        except (ValueError, TypeError) as e:
            raise DataError(
                f"{where}, row {i + 1}, field {bad!r}: cannot read "
                f"{cols[bad][i]!r} as label_format '{fmt}' ({e})."
            ) from None
    return rows


def indicator(rows: list[list], names: list[str], fmt: str, where: str, field: str) -> tuple[np.ndarray,
                                                                                            np.ndarray]:
    """Label lists -> (0/1 matrix (n_rows, n_labels), whether each row named a label more than once).

    Raises:
        DataError: a label (or id) the names do not have.
    """
    index = {n: k for k, n in enumerate(names)}
    Y = np.zeros((len(rows), len(names)), dtype=np.uint8)
    repeated = np.zeros(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        repeated[i] = len(set(row)) < len(row)
        for item in row:
            k = index.get(item) if fmt in ("names", "names_csv") else item
            if k is None or not 0 <= k < len(names):
                what = "label" if fmt in ("names", "names_csv") else "label id"
                shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
                raise DataError(
                    f"{where}, row {i + 1}, field {field!r}: {what} {item!r} is not "
                    f"among the {len(names)} label names ({shown}); fix the row or the label list."
                )
            Y[i, k] = 1
    return Y, repeated
