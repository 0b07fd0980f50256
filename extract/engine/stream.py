"""Compute shards chunk by chunk, resume from finished ones, assemble the cache.

:func:`build_cache` is the body of ``probekit extract`` once the model is loaded. Every
split is cut into chunks of ``[encoder] shard_rows`` texts (the same plan for any number
of ranks); rank ``r`` of ``n`` computes the chunks whose global index is ``r`` mod ``n``
and writes each as a shard (``extract.shards``). Rank 0 then waits for the others,
recomputes any shard that is missing or fails its checksum, streams the shards of each
split into one ``.npy`` per pooling (``CacheWriter.add_features``: one shard in memory
at a time) and commits the manifest. Peak memory is one chunk's tokens and features,
whatever the number of texts.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from probekit.core.cache import CacheWriter
from probekit.core.config import Config
from probekit.core.errors import disk_full
from probekit.stages.extract.engine import dist
from probekit.stages.extract.engine.extractor import Extractor
from probekit.stages.extract.engine.shards import Chunk, ShardStore, partial_dir, plan_chunks, remove_other_partials

logger = logging.getLogger(__name__)

# Testing hook: sleep this many seconds after each shard, so a test can interrupt a run
# between shards deterministically. Not a setting; never set it in real use.
_PAUSE_ENV = "PROBEKIT_SHARD_PAUSE_S"


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim).

    Batches of ever-different shapes fragment the heap; without this, RSS creeps up
    with the number of texts even though nothing is kept.
    """
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc: nothing to do
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def _compute(extractor: Extractor, ds, chunks: list[Chunk], store: ShardStore, bar) -> None:
    """Encode and write each chunk. With ``extractor.overlap`` (CUDA), the next chunk is
    tokenized in a background thread while the device works on this one."""
    pause = float(os.environ.get(_PAUSE_ENV, "0") or 0)

    def tokenize(chunk: Chunk):
        return extractor.tokenize(ds.splits[chunk.split].texts[chunk.start:chunk.stop])

    pool = ThreadPoolExecutor(1, thread_name_prefix="probekit-tok") if extractor.overlap else None
    ahead = pool.submit(tokenize, chunks[0]) if pool and chunks else None
    try:
        for i, chunk in enumerate(chunks):
            bar.set_postfix_str(chunk.stem)
            tok = ahead.result() if ahead else tokenize(chunk)
            if pool and i + 1 < len(chunks):
                ahead = pool.submit(tokenize, chunks[i + 1])
            arrays, stats = extractor.encode_tokenized(tok, bar=bar)
            stats["seconds"] = round(stats["seconds"], 3)
            store.write(chunk, arrays, stats)
            del arrays, tok
            release_freed_memory()
            if pause:
                time.sleep(pause)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)


def _split_stats(store: ShardStore, chunks: list[Chunk]) -> dict[str, dict]:
    """Per split: sums of the shards' counts, and each shard's rows and checksums."""
    out: dict[str, dict] = {}
    for c in chunks:
        meta = store.meta(c)
        s = out.setdefault(c.split, {"n_truncated": 0, "n_windows": 0, "real_tokens": 0, "padded_tokens": 0,
                                     "seconds": 0.0, "oom_halvings": 0, "shards": []})
        st = meta["stats"]
        s["oom_halvings"] += st.get("oom_halvings", 0)  # shards written before this count existed have none
        s["n_truncated"] += st["n_truncated"]
        s["n_windows"] += st["n_rows"]
        s["real_tokens"] += st["real_tokens"]
        s["padded_tokens"] += st["padded_tokens"]
        s["seconds"] = round(s["seconds"] + st["seconds"], 3)
        s["shards"].append({"rows": [c.start, c.stop], "sha256": {k: v["sha256"] for k, v in meta["files"].items()}})
    return out


def build_cache(cfg: Config, ds, identity: dict, key: str, out_dir: Path, extractor: Extractor,
                world: dist.World, **extra) -> Path | None:
    """Compute this rank's shards; on rank 0 also fill gaps, assemble and commit. Returns out_dir on rank 0.

    Args:
        extra: more manifest fields (model_path, device, versions, ...).

    Raises:
        DiskFullError: a write failed for lack of space; finished shards stay for the rerun.
    """
    store = ShardStore(partial_dir(out_dir, key), key)
    try:
        return _build(cfg, ds, identity, key, out_dir, extractor, world, store, extra)
    except OSError as e:
        kept = (f"finished shards are kept in {store.root} (each checked by its sha256 when used) and a rerun "
                f"resumes from them; {out_dir} is as it was")
        err = disk_full(e, out_dir.parent, kept)
        if err is None:
            raise
        raise err from None


def _build(cfg: Config, ds, identity: dict, key: str, out_dir: Path, extractor: Extractor, world: dist.World,
           store: ShardStore, extra: dict) -> Path | None:
    t0 = time.perf_counter()
    enc = cfg.encoder
    dims = extractor.dims
    default = enc.pooling
    chunks = plan_chunks({s: len(p.texts) for s, p in ds.splits.items()}, enc.shard_rows)
    mine = [c for g, c in enumerate(chunks) if world.mine(g)]
    todo = [c for c in mine if not store.complete(c, dims)]
    if len(todo) < len(mine):
        logger.info("extract: resuming from %s: %d of %d shards already done", store.root, len(mine) - len(todo),
                    len(mine))
    n_todo = sum(c.stop - c.start for c in todo)
    with tqdm(total=n_todo, desc="extract" if world.size == 1 else f"extract rank {world.rank}", unit="text",
              disable=not logger.isEnabledFor(logging.INFO) or n_todo == 0, position=world.rank) as bar:
        _compute(extractor, ds, todo, store, bar)
        dist.barrier(world)
        if not world.is_main:
            dist.barrier(world)  # wait for rank 0's commit
            return None
        # Other ranks' shards are checked here (this rank's were checked or written above):
        # only what checks out is used, the rest is recomputed.
        gaps = [c for g, c in enumerate(chunks) if not world.mine(g) and not store.complete(c, dims)]
        if gaps:
            logger.info("extract: rank 0 computes %d missing or damaged shards", len(gaps))
            bar.total += sum(c.stop - c.start for c in gaps)
            _compute(extractor, ds, gaps, store, bar)
    stats = _split_stats(store, chunks)
    poolings = {p.name: p.describe(extractor.n_layers, extractor.hidden) for p in extractor.poolings}
    manifest = {
        **identity,
        **extra,
        "cache_key": key,
        "poolings": poolings,
        "hidden_size": dims[default],
        "attn_implementation": getattr(extractor.model.config, "_attn_implementation", None),
        "fused_layers": getattr(extractor.model, "probekit_fused_layers", 0), "cpu_workers": extractor.workers,
        "cls_only_last_layer": extractor.first_token_only,
        "dataset": ds.source,
        "n_truncated": {s: v["n_truncated"] for s, v in stats.items()},
        "tokens": {s: {k: v[k] for k in ("n_windows", "real_tokens", "padded_tokens")} for s, v in stats.items()},
        "extract_seconds": {s: v["seconds"] for s, v in stats.items()},
        "max_batch_tokens": extractor.max_tokens,  # after any out-of-memory halving
        "oom_halvings": sum(v["oom_halvings"] for v in stats.values()),
        "data_issues": ds.manifest_issues() if hasattr(ds, "manifest_issues") else {},
        "shard_rows": enc.shard_rows,
        "world_size": world.size,
        "shards": {s: v["shards"] for s, v in stats.items()},
        "seed": cfg.run.seed,
        "config": cfg.to_dict(),
    }
    with CacheWriter(out_dir) as writer:
        for split, part in ds.splits.items():
            parts = [c for c in chunks if c.split == split]
            for name, dim in dims.items():
                writer.add_features(split, (store.load(c, name) for c in parts), len(part.texts), dim,
                                    pooling=None if name == default else name)
            writer.add_labels(split, part.y, part.texts, part.ids)
        writer.commit(manifest)
    store.remove()
    remove_other_partials(out_dir)
    logger.debug("extract: assembled %s in %.1fs", out_dir, time.perf_counter() - t0)
    dist.barrier(world)
    return out_dir
