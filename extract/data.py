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
from pathlib import Path

import numpy as np

from probekit.core.config import DataSection
from probekit.core.runfolder import SPLITS
from probekit.stages.extract import datacheck, labelgroups
from probekit.stages.extract.dataset import OFFLINE_PRESETS, DataError, Dataset, Split
from probekit.stages.extract.labelread import (
    _class_names,  # noqa: F401  (tests/test_data.py reads it here)
    indicator,
    infer_format,
    is_missing,
    label_names,
    read_cells,
)

__all__ = ["DataError", "Dataset", "Split", "load"]

logger = logging.getLogger(__name__)

_BUILDERS = {"jsonl": "json", "json": "json", "csv": "csv", "tsv": "csv", "parquet": "parquet"}


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


def load(data: DataSection) -> Dataset:
    """Load every split named in ``[data] splits`` and encode its labels.

    With ``keep_rows`` or ``label_groups`` set, each split's rows are filtered and its labels derived
    from the source labels (``extract.labelgroups``) before anything is counted or fingerprinted.

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
    fmt = data.label_format if data.label_format != "auto" else infer_format(data, samples)
    values = {split: read_cells(data, cols, fmt, where[split]) for split, cols in columns.items()}
    names = label_names(data, raw, fmt, values)
    problem_type = data.problem_type
    if problem_type == "auto":
        scalar = fmt in ("ids", "names") and not isinstance(first, (list, tuple))
        problem_type = "single_label" if scalar or data.keep_rows == "single_label" else "multi_label"
    derived = labelgroups.active(data)
    grouping = labelgroups.Grouping.build(data, names)
    labelgroups.check_positive(data, grouping.names, problem_type)

    splits, fingerprints, issues, kept = {}, {}, {}, {}
    for split, rows in values.items():
        cols = columns[split]
        Y, repeated = indicator(rows, names, fmt, where[split], data.label_fields[0])
        keep = np.ones(len(Y), dtype=bool)
        if derived:
            keep, Y, kept[split] = labelgroups.derive(data, grouping, Y, problem_type == "single_label")
        row_numbers = np.flatnonzero(keep) + 1  # the file's rows, for errors
        if problem_type == "single_label":
            bad = np.flatnonzero(Y.sum(axis=1) != 1)
            if bad.size:
                raise DataError(
                    f"{where[split]}, row {row_numbers[bad[0]]}: {int(Y[bad[0]].sum())} labels in a single_label "
                    "dataset; set [data] problem_type = 'multi_label' if rows may carry several"
                    + (" (or keep_rows = 'single_label')." if not derived else ".")
                )
        texts, counts = datacheck.clean_texts(cols[data.text_field], where[split], data.text_field)
        ids = [f"{split}-{i}" for i in range(len(texts))]
        if data.id_field:
            for i, v in enumerate(cols[data.id_field]):
                if is_missing(v):
                    raise DataError(f"{where[split]}, row {i + 1}, field {data.id_field!r}: the id is missing.")
            ids = [str(v) for v in cols[data.id_field]]
        if derived:
            if not keep.any():
                raise DataError(f"{where[split]}: no row left in split '{split}' after [data] keep_rows / "
                                "label_groups; check them against the data.")
            texts, ids = [t for t, k in zip(texts, keep) if k], [v for v, k in zip(ids, keep) if k]
        train_texts = set(splits["train"].texts) if split != "train" and "train" in splits else None
        counts.update(datacheck.row_issues(texts, Y, ids if data.id_field else None,
                                           problem_type == "multi_label", train_texts),
                      repeated_label=int(np.count_nonzero(repeated[keep])))
        issues[split] = counts
        y = Y.argmax(axis=1).astype(np.int64) if problem_type == "single_label" else Y
        splits[split] = Split(texts=texts, ids=ids, y=y)
        fingerprints[split] = _fingerprint(texts, ids, y, labelgroups.spec(data))

    source = {"source": data.source, "path": data.path, "name": data.name, "revision": data.revision,
              "format": data.format if data.source == "local" else "hub", "label_format": fmt, "files": where}
    if derived:  # recorded in the manifest's "dataset"
        source["derived_labels"] = {**labelgroups.spec(data), "source_label_names": names, "rows": kept}
        logger.info("data: %s", labelgroups.summary(data, len(names), grouping.names, kept))
        dropped = {s: c["no_group"] for s, c in kept.items() if c.get("no_group")}
        if dropped:
            logger.warning("data: rows whose labels are all in no group of data.label_groups, dropped: %s",
                           ", ".join(f"{s} {n}" for s, n in dropped.items()))
    logger.info("data: %s, %d labels, %s", ", ".join(f"{s} {len(v.texts)}" for s, v in splits.items()),
                len(grouping.names), problem_type)
    ds = Dataset(splits, grouping.names, problem_type, fingerprints, source, issues)
    for note in ds.issue_notes():
        logger.warning("data: %s", note)
    return ds


def _fingerprint(texts: list[str], ids: list[str], y: np.ndarray, derivation: dict | None = None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([ids, texts], ensure_ascii=True).encode())
    if derivation:  # labels derived by keep_rows / label_groups: never the cache of the labels as they were
        h.update(json.dumps(derivation, sort_keys=True).encode())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(str(y.shape).encode())
    return h.hexdigest()[:16]
