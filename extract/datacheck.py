"""Checks on messy input: bytes that are not UTF-8, cells that are not text, duplicates.

``extract.data`` calls these while loading. Each problem is either handled and counted
(the counts go to the manifest's ``data_issues``; see ``extract.dataset.ISSUE_NOTES``) or refused with a
:class:`~extract.dataset.DataError` of one line that names the file, the row and the field.

    check_utf8("data/train.jsonl", "jsonl", where="data/train.jsonl")   # raises on the first bad byte
    texts, counts = clean_texts(raw_texts, "data/train.jsonl", "text")

Torch-free.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from probekit.stages.extract.dataset import DataError

_SURROGATE = re.compile("[\ud800-\udfff]")
# Zero-width and bidirectional controls: kept in the text (the tokenizer drops or maps them),
# counted because they are how hostile text hides or reorders what a reader sees.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

TEXT_FORMATS = ("jsonl", "json", "csv", "tsv")


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _cells(line: str, fmt: str, columns: list[str]) -> dict:
    """Best effort: the cells of one file line, by column name (for naming the field of an error)."""
    if fmt == "jsonl":
        try:
            obj = json.loads(line)
        except ValueError:
            return {}
        return obj if isinstance(obj, dict) else {}
    if fmt in ("csv", "tsv"):
        kw = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
        row = next(csv.reader([line.rstrip("\r\n")], **kw), [])
        return dict(zip(columns, row))
    return {}


def _first_field(cells: dict, bad: Callable[[str], bool]) -> str:
    for name, value in cells.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and bad(v) for v in values):
            return f", field {name!r}"
    return ""


def _data_row(line_no: int, fmt: str, header: bool) -> str:
    if fmt in ("csv", "tsv") and header:
        return f"row {line_no - 1} (line {line_no})"
    return f"row {line_no}" if fmt == "jsonl" else f"line {line_no}"


def check_utf8(path: str | Path, fmt: str, columns: list[str] = (), header: bool = True) -> None:
    """Refuse a text file that is not valid UTF-8 (e.g. a lone surrogate written as bytes).

    One pass with an incremental decoder; only when it fails is the file read again line by
    line to name the row and field.

    Raises:
        DataError: ``<path>, row R (line L), field 'text': not valid UTF-8 ...``.
    """
    if fmt not in TEXT_FORMATS:
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                decoder.decode(block)
        decoder.decode(b"", final=True)
        return
    except UnicodeDecodeError:
        pass
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                cols = list(columns)
                if not cols and header and fmt in ("csv", "tsv"):
                    with open(path, encoding="utf-8-sig", errors="replace") as h:
                        cols = list(_cells(h.readline(), fmt, [str(i) for i in range(999)]).values())
                text = raw.decode("utf-8", "replace")
                where = _first_field(_cells(text, fmt, cols), lambda v: "\ufffd" in v)
                raise DataError(
                    f"{path}, {_data_row(n, fmt, header)}{where}: not valid UTF-8 ({e.reason}: "
                    f"{raw[e.start:e.start + 4]!r} at byte {e.start + 1} of the line); save the file as UTF-8."
                ) from None


def check_surrogates(path: str | Path, fmt: str) -> None:
    """Refuse a JSON file with a lone surrogate escape (``"\\ud800"`` without its pair).

    pyarrow refuses such a file, and the fallback reader of `datasets` then drops the escape
    without a word ("a\\ud800b" becomes "ab"): a silently changed text. A fast byte search
    finds candidates; only then is the file parsed here to confirm and name the row and field.

    Raises:
        DataError: ``<path>, row R, field 'text': a lone surrogate escape ...``.
    """
    if fmt not in ("jsonl", "json"):
        return
    candidate = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
    with open(path, "rb") as f:
        tail, hit = b"", False
        for block in iter(lambda: f.read(1 << 20), b""):
            if candidate.search(tail + block):  # the tail: an escape split across two blocks
                hit = True
                break
            tail = block[-6:]
    if not hit:
        return
    found = diagnose(path, fmt)
    if found:
        raise DataError(f"{found}.")


def diagnose(path: str | Path, fmt: str) -> str | None:
    """Why `datasets` could not read a jsonl file: the first bad row and field, or None.

    Called only after the reader failed (pyarrow's messages name neither row nor field).
    """
    if fmt == "json":
        try:
            with open(path, encoding="utf-8-sig") as f:
                records = json.load(f)
        except ValueError as e:
            return f"{path}: not valid JSON ({e})"
        rows = enumerate(records, 1) if isinstance(records, list) else ()
    elif fmt == "jsonl":
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
        rows = []
        for n, line in lines:
            try:
                rows.append((n, json.loads(line)))
            except ValueError as e:
                return f"{path}, row {n}: not valid JSON ({e})"
    else:
        return None
    for n, obj in rows:
        if not isinstance(obj, dict):
            return f"{path}, row {n}: a JSON {type(obj).__name__}, not an object of fields"
        where = _first_field(obj, lambda v: bool(_SURROGATE.search(v)))
        if where:
            return (f"{path}, row {n}{where}: a lone surrogate escape (\\ud800-\\udfff without its pair) "
                    "is not valid Unicode; remove it or write the character it was meant to be")
    return None


def clean_texts(values: Iterable, where: str, field: str) -> tuple[list[str], dict[str, int]]:
    """Texts of one split as strings, with counts of what was handled.

    Raises:
        DataError: a missing text (None/NaN), a list or object where a text belongs, or a
            lone surrogate (not valid Unicode).
    """
    texts: list[str] = []
    counts = dict.fromkeys(("empty_text", "whitespace_text", "non_string_text", "invisible_chars"), 0)
    for i, t in enumerate(values):
        if _is_missing(t):
            raise DataError(f"{where}, row {i + 1}, field {field!r}: the text is missing.")
        if not isinstance(t, str):
            if isinstance(t, (int, float, np.integer, np.floating)):
                counts["non_string_text"] += 1
                t = str(t)
            else:
                raise DataError(f"{where}, row {i + 1}, field {field!r}: expected a text, got a "
                                f"{type(t).__name__} ({str(t)[:60]!r}).")
        if _SURROGATE.search(t):
            raise DataError(f"{where}, row {i + 1}, field {field!r}: a lone surrogate "
                            f"({_SURROGATE.search(t).group()!r}) is not valid Unicode; fix the text.")
        if not t:
            counts["empty_text"] += 1
        elif not t.strip():
            counts["whitespace_text"] += 1
        if _INVISIBLE.search(t):
            counts["invisible_chars"] += 1
        texts.append(t)
    return texts, counts


def row_issues(texts: list[str], Y: np.ndarray, ids: list[str] | None, multi_label: bool,
               train_texts: set[str] | None) -> dict[str, int]:
    """Duplicates, rows without a label, and (for validation/test) texts also in train."""
    counts = dict.fromkeys(("duplicate_row", "conflicting_duplicate", "duplicate_id", "no_label"), 0)
    seen: dict[str, bytes] = {}
    for text, row in zip(texts, Y):
        labels = row.tobytes()
        first = seen.setdefault(text, labels)
        if first is not labels:
            counts["duplicate_row" if first == labels else "conflicting_duplicate"] += 1
    if ids is not None:
        counts["duplicate_id"] = len(ids) - len(set(ids))
    if multi_label:
        counts["no_label"] = int(np.count_nonzero(Y.sum(axis=1) == 0))
    if train_texts is not None:
        counts["text_in_train"] = sum(t in train_texts for t in texts)
    return counts
