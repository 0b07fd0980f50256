"""The feature cache: the on-disk contract between ``extract`` and everything after it.

Layout of ``<artifacts>/<run>/features/`` (see README, "The feature cache"):

    manifest.json              written last: no manifest means an unfinished cache
    <split>.X.npy              float32 (n_rows, hidden_size): the default pooling
    <split>.X.<pooling>.npy    float32 (n_rows, poolings[pooling].hidden_size): every other pooling
    <split>.y.npy          int64 (n_rows,) single-label, or uint8 (n_rows, n_labels) multi-hot
    <split>.texts.jsonl        {"id": str, "text": str} per row, in row order

Readable with numpy and json alone. A cache is built in a sibling temporary folder and
swapped in with renames, so a crash never leaves a half-written cache under the real name.
Feature files can be written block by block (:meth:`CacheWriter.add_features`), so
assembling a cache never holds a whole split in memory. This module is torch-free.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from probekit.core.errors import CacheError
from probekit.core.runfolder import (
    MANIFEST_NAME,
    TEXTS_SUFFIX,
    Y_SUFFIX,
    git_commit,
    sha256_file,
    write_json_atomic,
    x_name,
)

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CacheWriter:
    """Stage a cache in ``<final>.tmp-<pid>/`` and publish it with :meth:`commit`.

    Used as a context manager, an exception discards the staged folder.
    """

    def __init__(self, final_dir: str | Path):
        self.final_dir = Path(final_dir)
        self.final_dir.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        self.tmp_dir = self.final_dir.with_name(f"{self.final_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir()
        self.files: dict[str, dict] = {}
        self.splits: dict[str, int] = {}

    def _remove_stale(self) -> None:
        """Delete folders left by runs that died (their pid is gone)."""
        for p in self.final_dir.parent.glob(f"{self.final_dir.name}.*-*"):
            kind, _, pid = p.name[len(self.final_dir.name) + 1:].partition("-")
            if kind in ("tmp", "old") and pid.isdigit() and not _pid_alive(int(pid)):
                logger.info("removing %s, left by an interrupted run", p)
                shutil.rmtree(p, ignore_errors=True)

    def _record(self, name: str) -> None:
        p = self.tmp_dir / name
        self.files[name] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}

    def add_split(self, split: str, X: np.ndarray, y: np.ndarray, texts: list[str], ids: list[str],
                  extra: dict[str, np.ndarray] | None = None) -> None:
        """Write a whole split at once: the default pooling's X, labels, texts and ids.

        Args:
            extra: other poolings' features, name -> (n_rows, dim) array.
        """
        n_rows = len(texts)
        if X.shape[0] != n_rows or y.shape[0] != n_rows or len(ids) != n_rows:
            raise ValueError(f"split {split}: X has {X.shape[0]} rows, y {y.shape[0]}, texts {n_rows}, ids {len(ids)}")
        self.add_features(split, [X], n_rows, X.shape[1], dtype=X.dtype)
        for name, Xp in (extra or {}).items():
            self.add_features(split, [Xp], n_rows, Xp.shape[1], pooling=name, dtype=Xp.dtype)
        self.add_labels(split, y, texts, ids)

    def add_features(self, split: str, blocks, n_rows: int, dim: int, pooling: str | None = None,
                     dtype=np.float32) -> None:
        """Write one feature file from row blocks (an iterable of (rows, dim) arrays), streaming.

        Only one block is in memory at a time; the sha256 is taken while writing.

        Args:
            pooling: None for the default pooling (``<split>.X.npy``), else its name.
        """
        name = x_name(split, pooling)
        dtype = np.dtype(dtype)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n_rows, dim)})
        h, rows = hashlib.sha256(header.getvalue()), 0
        with open(self.tmp_dir / name, "wb") as f:
            f.write(header.getvalue())
            for block in blocks:
                block = np.ascontiguousarray(block, dtype=dtype)
                if block.ndim != 2 or block.shape[1] != dim:
                    raise ValueError(f"{name}: a block of shape {block.shape}, expected (rows, {dim})")
                buf = memoryview(block).cast("B")
                f.write(buf)
                h.update(buf)
                rows += block.shape[0]
        if rows != n_rows:
            raise ValueError(f"{name}: {rows} rows written, {n_rows} expected")
        self.files[name] = {"bytes": (self.tmp_dir / name).stat().st_size, "sha256": h.hexdigest()}

    def add_labels(self, split: str, y: np.ndarray, texts: list[str], ids: list[str]) -> None:
        """Write a split's labels, texts and ids; this records the split and its row count."""
        n_rows = len(texts)
        if y.shape[0] != n_rows or len(ids) != n_rows:
            raise ValueError(f"split {split}: y has {y.shape[0]} rows, texts {n_rows}, ids {len(ids)}")
        np.save(self.tmp_dir / f"{split}{Y_SUFFIX}", np.ascontiguousarray(y), allow_pickle=False)
        with open(self.tmp_dir / f"{split}{TEXTS_SUFFIX}", "w", encoding="utf-8") as f:
            for id_, text in zip(ids, texts):
                f.write(json.dumps({"id": str(id_), "text": text}, ensure_ascii=False) + "\n")
        for suffix in (Y_SUFFIX, TEXTS_SUFFIX):
            self._record(f"{split}{suffix}")
        self.splits[split] = n_rows

    def commit(self, manifest: dict) -> Path:
        """Write the manifest last, then swap the staged folder in for the final one."""
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
            **manifest,
            "splits": dict(self.splits),
            "files": dict(self.files),
        }
        for name in self.files:  # the data must reach the disk before a manifest names it
            _fsync(self.tmp_dir / name)
        write_json_atomic(self.tmp_dir / MANIFEST_NAME, manifest)
        old = self.final_dir.with_name(f"{self.final_dir.name}.old-{os.getpid()}")
        if self.final_dir.exists():
            os.replace(self.final_dir, old)
        os.replace(self.tmp_dir, self.final_dir)
        shutil.rmtree(old, ignore_errors=True)
        return self.final_dir

    def abort(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


@dataclass
class FeatureCache:
    """A validated cache on disk. Arrays are memory-mapped, not read into memory."""

    path: Path
    manifest: dict
    _texts: dict = field(default_factory=dict, repr=False)

    @property
    def label_names(self) -> list[str]:
        return list(self.manifest["label_names"])

    @property
    def problem_type(self) -> str:
        return self.manifest["problem_type"]

    @property
    def splits(self) -> list[str]:
        return list(self.manifest["splits"])

    @property
    def poolings(self) -> list[str]:
        """Every pooling the cache holds; the first is the default (``X(split)``)."""
        return list(_pooling_dims(self.manifest))

    def hidden_size(self, pooling: str | None = None) -> int:
        return _pooling_dims(self.manifest)[self._pooling(pooling)]

    def _pooling(self, pooling: str | None) -> str:
        if pooling is None:
            return self.poolings[0]
        if pooling not in self.poolings:
            raise CacheError(
                f"{self.path}: no pooling {pooling!r}; this cache holds {', '.join(self.poolings)}. "
                f"Add it to [encoder] extra_poolings (--set \"encoder.extra_poolings=['{pooling}']\") "
                "and run 'make extract'."
            )
        return pooling

    def X(self, split: str, pooling: str | None = None) -> np.ndarray:
        """Memory-mapped float32 (n_rows, hidden_size) features of `split`; the default pooling if None."""
        pooling = self._pooling(pooling)
        name = x_name(split, None if pooling == self.poolings[0] else pooling)
        return np.load(self.path / name, mmap_mode="r", allow_pickle=False)

    def y(self, split: str) -> np.ndarray:
        return np.load(self.path / f"{split}{Y_SUFFIX}", mmap_mode="r", allow_pickle=False)

    def Y(self, split: str) -> np.ndarray:
        """Labels as a (n_rows, n_labels) 0/1 matrix, whatever the problem type."""
        y = np.asarray(self.y(split))
        if self.problem_type == "multi_label":
            return y.astype(np.int64)
        return np.eye(len(self.label_names), dtype=np.int64)[y]

    def _rows(self, split: str) -> list[dict]:
        if split not in self._texts:
            with open(self.path / f"{split}{TEXTS_SUFFIX}", encoding="utf-8") as f:
                self._texts[split] = [json.loads(line) for line in f]
        return self._texts[split]

    def texts(self, split: str) -> list[str]:
        return [r["text"] for r in self._rows(split)]

    def ids(self, split: str) -> list[str]:
        return [r["id"] for r in self._rows(split)]


def _pooling_dims(manifest: dict) -> dict[str, int]:
    """pooling name -> hidden size, default first (a manifest without `poolings` holds one)."""
    poolings = manifest.get("poolings")
    if poolings:
        return {name: int(p["hidden_size"]) for name, p in poolings.items()}
    return {manifest.get("pooling", "cls"): int(manifest["hidden_size"])}


def read_cache(path: str | Path, verify: bool = True) -> FeatureCache:
    """Open a cache folder and check it against its manifest.

    Args:
        path: the ``features/`` folder of a run.
        verify: also compare every file's sha256 with the manifest (reads each file once).

    Raises:
        FileNotFoundError: no finished cache there (no manifest).
        CacheError: the cache does not match its manifest or this code's schema.
    """
    path = Path(path)
    mpath = path / MANIFEST_NAME
    if not mpath.is_file():
        raise FileNotFoundError(
            f"{mpath} not found: there is no finished feature cache here. Run 'make extract' "
            "with the same CONFIG (and DATA/ARTIFACTS) first."
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CacheError(f"{mpath}: not valid JSON ({e}); delete {path} and run 'make extract' again.") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise CacheError(
            f"{mpath}: schema_version={manifest.get('schema_version')!r}, this probekit reads "
            f"{SCHEMA_VERSION}. Run 'make extract' again to rebuild the cache."
        )
    cache = FeatureCache(path=path, manifest=manifest)
    n_labels, dims = len(manifest["label_names"]), _pooling_dims(manifest)
    default = next(iter(dims))
    if dims[default] != manifest["hidden_size"]:
        raise CacheError(f"{mpath}: hidden_size={manifest['hidden_size']} but pooling {default!r} has "
                         f"{dims[default]}. Run 'make extract' again.")
    for split, n_rows in manifest["splits"].items():
        x_files = [x_name(split, None if p == default else p) for p in dims]
        for name in (*x_files, f"{split}{Y_SUFFIX}", f"{split}{TEXTS_SUFFIX}"):
            expected = manifest["files"].get(name)
            p = path / name
            if expected is None or not p.is_file() or p.stat().st_size != expected["bytes"]:
                raise CacheError(f"{p}: missing or not the size its manifest records; run 'make extract' again.")
            if verify and sha256_file(p) != expected["sha256"]:
                raise CacheError(f"{p}: checksum differs from {mpath}; the file changed. Run 'make extract' again.")
        y = cache.y(split)
        want_y = (n_rows, n_labels) if manifest["problem_type"] == "multi_label" else (n_rows,)
        for pooling, dim in dims.items():
            X = cache.X(split, pooling)
            if X.shape != (n_rows, dim) or X.dtype != np.dtype(manifest["dtype"]) or y.shape != want_y:
                raise CacheError(
                    f"{path}/{split} ({pooling}): X {X.shape} {X.dtype}, y {y.shape}; manifest says X "
                    f"({n_rows}, {dim}) {manifest['dtype']}, y {want_y}. Run 'make extract' again."
                )
    return cache
