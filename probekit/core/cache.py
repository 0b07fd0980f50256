"""The feature cache: the on-disk contract between ``extract`` and everything after it; its writer.

Layout of ``<artifacts>/<run>/features/`` (see README, "The feature cache"):

    manifest.json              written last: no manifest means an unfinished cache
    <split>.X.npy              float32 (n_rows, hidden_size): the default pooling
    <split>.X.<pooling>.npy    float32 (n_rows, poolings[pooling].hidden_size): every other pooling
    <split>.y.npy          int64 (n_rows,) single-label, or uint8 (n_rows, n_labels) multi-hot
    <split>.texts.jsonl        {"id": str, "text": str} per row, in row order

The manifest's fields are assembled here only: :func:`feature_identity` (what the cache
key hashes) and :func:`cache_manifest` (everything, written by :meth:`CacheWriter.commit`).
Readable with numpy and json alone; ``probekit.core.cache_reader`` reads and checks it.
A cache is built in a sibling temporary folder and swapped in with renames, so a crash
never leaves a half-written cache under the real name.
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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from probekit.core.cache_reader import MANIFEST_SHA_KEY, SCHEMA_VERSION, manifest_digest
from probekit.core.config import EncoderSection
from probekit.core.pooling import parse_pooling
from probekit.core.runfolder import (
    MANIFEST_NAME,
    TEXTS_SUFFIX,
    Y_SUFFIX,
    git_commit,
    pid_alive,
    sha256_file,
    write_json_atomic,
    x_name,
)

logger = logging.getLogger(__name__)


def feature_identity(enc: EncoderSection, model_id: str, revision: str, compute_dtype: str, data) -> dict:
    """Everything that determines the features: hashed into the cache key, the first manifest fields.

    Args:
        data: the loaded dataset (its ``fingerprints``, ``label_names`` and ``problem_type``).
    """
    default = parse_pooling(enc.pooling)
    long_text = {"mode": enc.long_text}
    if enc.long_text == "window":
        long_text.update(stride=enc.window_stride, agg=enc.window_agg)
    identity = {
        "model_id": model_id, "model_revision": revision, "pooling": enc.pooling, "poolings": list(enc.poolings),
        "layer": default.layers[0] if len(default.layers) == 1 else list(default.layers),
        "max_length": enc.max_length, "truncation": enc.long_text == "truncate", "long_text": long_text,
        "dtype": "float32", "compute_dtype": compute_dtype, "quantize": enc.quantize,
        "dataset_fingerprint": data.fingerprints, "label_names": data.label_names, "problem_type": data.problem_type,
    }
    if compute_dtype in ("bfloat16", "float16"):
        # In half precision a text's features depend on its batch (which rows pad with it, the
        # matmul shapes: up to 0.03 apart between shard_rows 100 and 4096), and batches are cut
        # within a shard by the token budget: both are part of what the features are.
        identity["batching"] = {"shard_rows": enc.shard_rows, "max_batch_tokens": enc.max_batch_tokens,
                                "batch_size": enc.batch_size}
    return identity


def cache_manifest(fields: dict, splits: dict[str, int], files: dict[str, dict]) -> dict:
    """The manifest.json of a cache, assembled here only: this schema's version, when and from which
    commit, then `fields` (:func:`feature_identity` first, then what the writer records), then the
    rows of every split and each file's size and sha256 (which :func:`read_cache` checks)."""
    manifest = {"schema_version": SCHEMA_VERSION, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "git_commit": git_commit(), **fields, "splits": dict(splits), "files": dict(files)}
    manifest.pop(MANIFEST_SHA_KEY, None)
    manifest[MANIFEST_SHA_KEY] = manifest_digest(manifest)  # last: read_manifest refuses an edited manifest
    return manifest


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
            if kind in ("tmp", "old") and pid.isdigit() and not pid_alive(int(pid)):
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
        """Write the manifest last (:func:`cache_manifest` of `manifest`'s fields), then swap the
        staged folder in for the final one."""
        manifest = cache_manifest(manifest, self.splits, self.files)
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
