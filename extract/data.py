"""Load a labelled text dataset through `datasets` and encode its labels.

Hub datasets (``[data] source = "hub"``) and local csv/tsv/jsonl/json/parquet files
(``source = "local"``, one file per split) both come back as :class:`Dataset`: texts,
ids and a label array per split, the label names, the problem type and a fingerprint
of the content, which becomes part of the feature cache key.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np

from probekit.core.config import DataSection
from probekit.core.runfolder import SPLITS
from probekit.stages.extract import datacheck
from probekit.stages.extract.dataset import OFFLINE_PRESETS, DataError, Dataset, Split

__all__ = ["DataError", "Dataset", "Split", "load"]

logger = logging.getLogger(__name__)

_BUILDERS = {"jsonl": "json", "json": "json", "csv": "csv", "tsv": "csv", "parquet": "parquet"}
_IDS_CSV = re.compile(r"^\s*\d+(\s*,\s*\d+)*\s*$")


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _local_files(data: DataSection) -> dict[str, str]:
    root = Path(data.path)
    if not data.path:
        raise DataError(
            "[data] path is empty: give the data directory, e.g. "
            "make extract CONFIG=configs/goemotions-local.toml DATA=../shared/data/goemotions (or --data DIR)."
        )
    if not root.is_dir():
        raise DataError(f"[data] path={data.path!r} is not a directory (DATA=... or --data DIR names it).")
    files = {}
    for split in SPLITS:
        p = root / f"{data.splits[split]}.{data.format}"
        if not p.is_file():
            have = ", ".join(sorted(q.name for q in root.iterdir())[:12])
            raise DataError(f"{p} not found for split '{split}' ([data] splits, format); {root} has: {have}.")
        files[split] = str(p)
    return files


def _load_raw(data: DataSection):
    """Return ({split: datasets.Dataset}, {split: where it came from})."""
    import datasets

    # Readers log their failures at ERROR before raising; probekit reports each as one line itself.
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    datasets.disable_progress_bars()
    if data.source == "hub":
        try:
            dd = datasets.load_dataset(data.path, data.name or None, revision=data.revision or None)
        except (ConnectionError, OSError) as e:
            raise DataError(
                f"[data] path={data.path!r}: cannot load it from the Hugging Face Hub (offline, unreachable "
                f"or not cached: {type(e).__name__}). Presets that work offline: {OFFLINE_PRESETS}."
            ) from None
        except ValueError as e:  # unknown configuration or split names
            raise DataError(f"[data] path={data.path!r} name={data.name!r}: {_first_line(e)}") from None
        raw, where = {}, {}
        for split in SPLITS:
            name = data.splits[split]
            if name not in dd:
                raise DataError(f"[data] splits: '{name}' is not a split of {data.path}; it has {list(dd)}.")
            raw[split], where[split] = dd[name], f"{data.path}[{name}]"
        return raw, where
    files = _local_files(data)
    for path in files.values():
        # pyarrow stores bytes that are not UTF-8 and fails only when a row is read, naming no row.
        datacheck.check_utf8(path, data.format, list(data.column_names), data.header)
        datacheck.check_surrogates(path, data.format)
    kwargs: dict = {}
    if data.format in ("csv", "tsv"):
        # Every column is read as text: pandas' per-chunk type guessing would otherwise turn
        # "27" into an int in one chunk and keep "3,17" a string in another.
        kwargs = {"keep_default_na": False, "features": None}
        if data.format == "tsv":
            kwargs.update(delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = list(data.column_names)
        if not data.header:
            if not columns:
                raise DataError("[data] header=false needs column_names, e.g. ['text', 'labels', 'id'].")
            kwargs.update(header=None, column_names=columns)
        else:
            with open(files["train"], encoding="utf-8-sig", newline="") as f:
                columns = next(csv.reader(f, delimiter="\t" if data.format == "tsv" else ","), [])
        kwargs["features"] = datasets.Features({c: datasets.Value("string") for c in columns})
    raw = {}
    for split, path in files.items():
        if Path(path).stat().st_size == 0:
            raise DataError(f"{path}: the file is empty; split '{split}' needs at least one row.")
        try:
            raw[split] = datasets.load_dataset(_BUILDERS[data.format], data_files={"x": path}, split="x", **kwargs)
        except Exception as e:  # the builders raise many types for unreadable files
            found = datacheck.diagnose(path, data.format)
            raise DataError(f"{found}." if found else
                            f"{path}: cannot be read as {data.format}: {_first_line(e)}") from None
    return raw, files


def _first_line(e: BaseException) -> str:
    """The first line of the innermost cause (datasets wraps the reader's own message)."""
    while e.__cause__ is not None or (e.__context__ is not None and not e.__suppress_context__):
        e = e.__cause__ or e.__context__
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def _class_names(feature) -> list[str] | None:
    feature = getattr(feature, "feature", feature)  # List(ClassLabel) -> ClassLabel
    return list(feature.names) if hasattr(feature, "names") else None


def _infer_format(data: DataSection, samples: list) -> str:
    """Guess the label format from the train split's label cells."""
    if len(data.label_fields) > 1:
        return "columns"
    first = samples[0]
    if isinstance(first, (list, tuple)):
        return "ids" if all(isinstance(v, (int, np.integer)) for row in samples for v in row) else "names"
    if isinstance(first, (int, np.integer, bool)):
        return "ids"
    text = [str(v) for v in samples if not _is_missing(v)]
    comma = any("," in v for v in text)
    if all(_IDS_CSV.match(v) for v in text):
        return "ids_csv" if comma else "ids"
    return "names_csv" if comma else "names"


def _label_names(data: DataSection, raw: dict, fmt: str, values: dict) -> list[str]:
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
    if fmt in ("ids", "names") and any(_is_missing(x) or (isinstance(x, str) and not x.strip()) for x in items):
        raise ValueError("an empty label in the list")
    if fmt == "ids":
        return [_label_id(x) for x in items]
    if fmt == "names":
        return [str(x).strip() for x in items]
    parts = [p.strip() for p in str(v).split(",") if p.strip()]
    return [int(p) for p in parts] if fmt == "ids_csv" else parts


def load(data: DataSection) -> Dataset:
    """Load every split named in ``[data] splits`` and encode its labels.

    Raises:
        DataError: a missing column, an empty split, a bad label or an unreachable Hub.
    """
    raw, where = _load_raw(data)
    wanted = [data.text_field, *data.label_fields] + ([data.id_field] if data.id_field else [])
    columns: dict[str, dict] = {}
    for split, ds in raw.items():
        if data.max_rows:
            ds = ds.select(range(min(data.max_rows, len(ds))))
        missing = [c for c in wanted if c not in ds.column_names]
        if missing:
            raise DataError(
                f"{where[split]}: no column {missing[0]!r}; it has {ds.column_names}. "
                "Set [data] text_field / label_fields / id_field (or column_names for header-less files)."
            )
        if len(ds) == 0:
            raise DataError(f"{where[split]}: split '{split}' is empty; every split needs at least one row.")
        columns[split] = ds.select_columns(wanted).to_dict()

    samples = columns["train"][data.label_fields[0]]
    first = samples[0]
    fmt = data.label_format if data.label_format != "auto" else _infer_format(data, samples)
    values: dict[str, list[list]] = {}
    for split, cols in columns.items():
        rows = []
        for i in range(len(cols[data.text_field])):
            try:
                if fmt == "columns":
                    row = []
                    for k, name in enumerate(data.label_fields):
                        bad = name  # names the column in the error below
                        if _is_missing(cols[name][i]) or float(cols[name][i]) not in (0.0, 1.0):
                            raise ValueError("a label column holds 0 or 1")
                        if float(cols[name][i]) == 1.0:
                            row.append(k)
                    rows.append(row)
                else:
                    bad = data.label_fields[0]
                    cell = cols[bad][i]
                    if _is_missing(cell) or cell == "":
                        raise ValueError("empty label cell")
                    rows.append(_parse_row(cell, fmt))
            except (ValueError, TypeError) as e:
                raise DataError(
                    f"{where[split]}, row {i + 1}, field {bad!r}: cannot read "
                    f"{cols[bad][i]!r} as label_format '{fmt}' ({e})."
                ) from None
        values[split] = rows

    names = _label_names(data, raw, fmt, values)
    index = {n: k for k, n in enumerate(names)}
    problem_type = data.problem_type
    if problem_type == "auto":
        scalar = fmt in ("ids", "names") and not isinstance(first, (list, tuple))
        problem_type = "single_label" if scalar else "multi_label"

    splits, fingerprints, issues = {}, {}, {}
    for split, rows in values.items():
        cols = columns[split]
        Y = np.zeros((len(rows), len(names)), dtype=np.uint8)
        repeated = 0
        for i, row in enumerate(rows):
            repeated += len(set(row)) < len(row)
            for item in row:
                k = index.get(item) if fmt in ("names", "names_csv") else item
                if k is None or not 0 <= k < len(names):
                    what = "label" if fmt in ("names", "names_csv") else "label id"
                    shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
                    raise DataError(
                        f"{where[split]}, row {i + 1}, field {data.label_fields[0]!r}: {what} {item!r} is not "
                        f"among the {len(names)} label names ({shown}); fix the row or the label list."
                    )
                Y[i, k] = 1
            if problem_type == "single_label" and Y[i].sum() != 1:
                raise DataError(
                    f"{where[split]}, row {i + 1}: {int(Y[i].sum())} labels in a single_label dataset; "
                    "set [data] problem_type = 'multi_label' if rows may carry several."
                )
        texts, counts = datacheck.clean_texts(cols[data.text_field], where[split], data.text_field)
        ids = [f"{split}-{i}" for i in range(len(texts))]
        if data.id_field:
            for i, v in enumerate(cols[data.id_field]):
                if _is_missing(v):
                    raise DataError(f"{where[split]}, row {i + 1}, field {data.id_field!r}: the id is missing.")
            ids = [str(v) for v in cols[data.id_field]]
        train_texts = set(splits["train"].texts) if split != "train" and "train" in splits else None
        counts.update(datacheck.row_issues(texts, Y, ids if data.id_field else None,
                                           problem_type == "multi_label", train_texts),
                      repeated_label=int(repeated))
        issues[split] = counts
        y = Y.argmax(axis=1).astype(np.int64) if problem_type == "single_label" else Y
        splits[split] = Split(texts=texts, ids=ids, y=y)
        fingerprints[split] = _fingerprint(texts, ids, y)

    source = {"source": data.source, "path": data.path, "name": data.name, "revision": data.revision,
              "format": data.format if data.source == "local" else "hub", "label_format": fmt, "files": where}
    logger.info("data: %s, %d labels, %s", ", ".join(f"{s} {len(v.texts)}" for s, v in splits.items()),
                len(names), problem_type)
    ds = Dataset(splits, names, problem_type, fingerprints, source, issues)
    for note in ds.issue_notes():
        logger.warning("data: %s", note)
    return ds


def _fingerprint(texts: list[str], ids: list[str], y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([ids, texts], ensure_ascii=True).encode())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(str(y.shape).encode())
    return h.hexdigest()[:16]
