"""Read a feature cache and check it against its manifest (see ``probekit.core.cache``).

    cache = read_cache(run_dir / "features")        # FileNotFoundError: no finished cache
    X, y = cache.X("train"), cache.y("train")      # memory-mapped float32, labels

The reader needs numpy and json alone and imports nothing of the writer, so every stage
(classify, the report) reads caches without the code that builds them. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probekit.core.errors import CacheError
from probekit.core.runfolder import MANIFEST_NAME, TEXTS_SUFFIX, Y_SUFFIX, sha256_file, x_name

SCHEMA_VERSION = 3  # a change of the manifest's fields bumps it (see README, "The feature cache")
# 3: manifest_sha256, a checksum of the manifest's own content. 2 (without it) is still read.
READABLE_SCHEMAS = (2, SCHEMA_VERSION)
MANIFEST_SHA_KEY = "manifest_sha256"
PROBLEM_TYPES = ("single_label", "multi_label")


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON, every field but its own checksum."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_SHA_KEY}
    blob = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_manifest(path: str | Path) -> dict:
    """The manifest of the cache folder `path`, checked: valid JSON, a readable schema, its own
    checksum, and the fields every reader relies on. Reads no array.

    Raises:
        FileNotFoundError: no manifest (no finished cache).
        CacheError: anything else, as one line naming the file and the fix.
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
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CacheError(f"{mpath}: not valid JSON ({e}); delete {path} and run 'make extract' again.") from None
    if not isinstance(manifest, dict):
        raise CacheError(f"{mpath}: holds a JSON {type(manifest).__name__}, not a manifest; "
                         "run 'make extract' again.")
    if manifest.get("schema_version") not in READABLE_SCHEMAS:
        raise CacheError(
            f"{mpath}: schema_version={manifest.get('schema_version')!r}, this probekit reads "
            f"{SCHEMA_VERSION}. Run 'make extract' again to rebuild the cache."
        )
    if manifest["schema_version"] >= 3:
        try:
            ok = manifest.get(MANIFEST_SHA_KEY) == manifest_digest(manifest)
        except (TypeError, ValueError):  # not canonical JSON (NaN, ...): edited by hand
            ok = False
        if not ok:
            raise CacheError(f"{mpath}: its content does not match its {MANIFEST_SHA_KEY}: the manifest was "
                             "edited after extract wrote it. Run 'make extract' again.")
    _check_fields(manifest, mpath)
    return manifest


def _check_fields(manifest: dict, mpath: Path) -> None:
    """The fields the readers index, with their types: one line naming the first that is wrong."""
    def bad(field_: str, want: str) -> CacheError:
        return CacheError(f"{mpath}: field {field_!r} is missing or not {want}; run 'make extract' again.")

    names = manifest.get("label_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise bad("label_names", "a list of label names")
    if manifest.get("problem_type") not in PROBLEM_TYPES:
        raise bad("problem_type", " or ".join(PROBLEM_TYPES))
    for key in ("splits", "files"):
        if not isinstance(manifest.get(key), dict):
            raise bad(key, "a table")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in manifest["splits"].values()):
        raise bad("splits", "a table of row counts")
    if not isinstance(manifest.get("hidden_size"), int) or isinstance(manifest.get("hidden_size"), bool):
        raise bad("hidden_size", "an integer")
    poolings = manifest.get("poolings")
    if poolings is not None and (not isinstance(poolings, dict) or not all(
            isinstance(p, dict) and isinstance(p.get("hidden_size"), int) for p in poolings.values())):
        raise bad("poolings", "a table of poolings with their hidden_size")


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
    manifest = read_manifest(path)
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
