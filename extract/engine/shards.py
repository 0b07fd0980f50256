"""Shards of an extraction in progress: written as computed, trusted only when their checksum holds.

Features are computed in chunks of ``shard_rows`` texts (a split's rows ``start:stop``).
Each finished chunk becomes one ``.npy`` per pooling plus a sidecar ``.json`` naming the
cache key, the rows and every file's size and sha256. Files go to a temporary name and
are renamed when complete; the sidecar is renamed last, so a shard without one is
unfinished. They live in ``features.partial-<cache_key>/`` beside the run's
``features/`` folder, so a run with another key never sees them. An interrupted run
(Ctrl-C, ``kill -9``) resumes from the shards that check out; any other is recomputed.

    partial = ShardStore(run_dir / "features.partial-<key>", key)
    if not partial.complete(chunk):      # chunk: Chunk("train", 3, 12288, 16384)
        partial.write(chunk, {"cls": X}, stats)

Torch-free.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probekit.core.runfolder import name_the_file, sha256_file, write_json_atomic

logger = logging.getLogger(__name__)

PARTIAL_PREFIX = "partial-"


@dataclass(frozen=True)
class Chunk:
    """Rows ``start:stop`` of one split: the unit of work, of a shard and of resume."""

    split: str
    index: int
    start: int
    stop: int

    @property
    def stem(self) -> str:
        return f"{self.split}.{self.index:05d}"


def plan_chunks(split_rows: dict[str, int], shard_rows: int) -> list[Chunk]:
    """Every chunk of every split, in split order: the same plan whatever the number of ranks."""
    return [Chunk(split, i, start, min(start + shard_rows, n))
            for split, n in split_rows.items() for i, start in enumerate(range(0, n, shard_rows))]


def partial_dir(final_dir: Path, key: str) -> Path:
    return final_dir.with_name(f"{final_dir.name}.{PARTIAL_PREFIX}{key}")


def _save_npy(path: Path, arr: np.ndarray) -> dict:
    """Write to a temporary name, fsync, rename; return its size and sha256."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # a full disk or an interrupt: free the space, keep no partial file
        tmp.unlink(missing_ok=True)
        name_the_file(e, path)
        raise
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


class ShardStore:
    """The shard folder of one cache key."""

    def __init__(self, root: Path, key: str):
        self.root, self.key = Path(root), key
        self.root.mkdir(parents=True, exist_ok=True)

    def _sidecar(self, chunk: Chunk) -> Path:
        return self.root / f"{chunk.stem}.json"

    def path(self, chunk: Chunk, pooling: str) -> Path:
        return self.root / f"{chunk.stem}.{pooling}.npy"

    def meta(self, chunk: Chunk) -> dict:
        return json.loads(self._sidecar(chunk).read_text(encoding="utf-8"))

    def complete(self, chunk: Chunk, poolings: dict[str, int]) -> bool:
        """Whether the shard of `chunk` exists, belongs to this key and rows, and checks out.

        Args:
            poolings: name -> hidden size of every pooling the shard must hold.
        """
        side = self._sidecar(chunk)
        if not side.is_file():
            return False
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
            ok = (meta.get("key") == self.key and (meta.get("split"), meta.get("start"), meta.get("stop"))
                  == (chunk.split, chunk.start, chunk.stop) and set(meta.get("files", {})) == set(poolings))
            for name in poolings if ok else ():
                p, want = self.path(chunk, name), meta["files"][name]
                if not p.is_file() or p.stat().st_size != want["bytes"] or sha256_file(p) != want["sha256"]:
                    ok = False
                    break
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            logger.warning("extract: shard %s fails its checks (checksum, rows or key); recomputing it", side.name)
            self.discard(chunk)
        return ok

    def write(self, chunk: Chunk, arrays: dict[str, np.ndarray], stats: dict) -> None:
        """Publish one shard: every array first, the sidecar last."""
        n = chunk.stop - chunk.start
        files = {}
        try:
            for name, X in arrays.items():
                if X.shape[0] != n:
                    raise ValueError(f"shard {chunk.stem}: {name} has {X.shape[0]} rows, the chunk {n}")
                files[name] = _save_npy(self.path(chunk, name), X)
            write_json_atomic(self._sidecar(chunk), {"key": self.key, "split": chunk.split, "index": chunk.index,
                                                     "start": chunk.start, "stop": chunk.stop, "files": files,
                                                     "stats": stats})
        except BaseException:  # e.g. the disk filled: drop this shard's finished files too
            self.discard(chunk)
            raise

    def discard(self, chunk: Chunk) -> None:
        self._sidecar(chunk).unlink(missing_ok=True)
        for p in self.root.glob(f"{chunk.stem}.*.npy"):
            p.unlink(missing_ok=True)

    def load(self, chunk: Chunk, pooling: str) -> np.ndarray:
        return np.load(self.path(chunk, pooling), allow_pickle=False)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def remove_other_partials(final_dir: Path, keep_key: str | None = None) -> None:
    """Delete shard folders of other cache keys (their inputs changed; they can never be used)."""
    for p in final_dir.parent.glob(f"{final_dir.name}.{PARTIAL_PREFIX}*"):
        if p.name != f"{final_dir.name}.{PARTIAL_PREFIX}{keep_key}":
            logger.info("extract: removing %s, shards of another cache key", p)
            shutil.rmtree(p, ignore_errors=True)
