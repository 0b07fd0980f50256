"""Run a frozen encoder over every split and write the feature cache.

    probekit extract --config configs/demo.toml        (or: make extract)
    torchrun --nproc_per_node 2 -m probekit extract --config ...   (several processes or GPUs)

Texts are tokenized once with the fast tokenizer, sorted by length and batched by a token
budget, so padding stays within a batch; every configured pooling is computed from one
forward pass under ``torch.inference_mode()`` and written back in the original order
(``extract.engine``; the model is found and loaded by ``extract.engine.loading``).
Features stream to disk in shards as they are computed, so memory does not grow with
the data, and an interrupted run resumes from its finished shards (``extract.engine.stream``).
A rerun whose cache key (model, revision, poolings, max_length, long-text handling,
compute dtype, quantisation, data fingerprint) matches the existing cache reuses it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from probekit.core.cache import feature_identity
from probekit.core.cache_reader import read_cache
from probekit.core.config import Config
from probekit.core.errors import ProbekitError
from probekit.core.runfolder import MANIFEST_NAME, cache_key, features_dir
from probekit.stages.extract import data as data_mod
from probekit.stages.extract.engine import dist
from probekit.stages.extract.engine.loading import (
    cpu_threads,
    load_encoder,
    make_extractor,
    model_identity,
    pick_device,
    resolve_dtype,
    resolve_model,
)

logger = logging.getLogger(__name__)


def versions() -> dict:
    import datasets
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "numpy": np.__version__}


def truncation_note(manifest: dict) -> str:
    """The extract line's tail: each split's share of texts longer than max_length, and the fix.

    From the manifest's ``n_truncated`` and ``splits``; with ``long_text = "window"`` those texts
    were read whole, in windows, so there is nothing to fix.
    """
    counts, rows = manifest.get("n_truncated") or {}, manifest.get("splits") or {}
    max_length = manifest.get("max_length")
    if not counts or not rows:
        return ""
    shares = ", ".join(f"{s} {100 * n / max(rows.get(s, 0), 1):.1f}% ({n}/{rows.get(s, 0)})"
                       for s, n in counts.items())
    if (manifest.get("long_text") or {}).get("mode") == "window":
        return f"; texts over max_length {max_length} read in windows: {shares}" if any(counts.values()) else ""
    if not any(counts.values()):
        return f"; no text cut at max_length {max_length}"
    return (f"; texts cut at max_length {max_length}: {shares} (to keep them whole: encoder.long_text = "
            f"\"window\" or a larger encoder.max_length)")


def _load_data(cfg: Config, world: dist.World):
    """Rank 0 loads (and caches) the data first, then the other ranks read that cache."""
    if not world.is_main:
        dist.barrier(world)
    ds = data_mod.load(cfg.data)
    if world.is_main:
        dist.barrier(world)
    return ds


def run_extract(cfg: Config) -> Path:
    """Load the data, reuse or (re)build ``<run>/features/``, return its path."""
    from probekit.stages.extract.engine.stream import build_cache

    t0 = time.perf_counter()
    enc = cfg.encoder
    path, local = resolve_model(enc)
    if local and cfg.data.source == "local":
        # Nothing in this run needs the network: keep every Hugging Face library off it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    world = dist.from_env()
    device = pick_device(enc.device, world.local_rank)
    world = dist.init(world, device)
    try:
        ds = _load_data(cfg, world)
        model_id, revision = model_identity(enc, path, local, cfg.trust_remote_code)
        identity = feature_identity(enc, model_id, revision, resolve_dtype(enc, device), ds)
        key = cache_key(identity)
        out_dir = features_dir(cfg.run_dir)
        try:
            cached = read_cache(out_dir)
            if cached.manifest.get("cache_key") == key:
                logger.info("extract: reusing %s (cache key %s matches; %.1fs)%s", out_dir, key,
                            time.perf_counter() - t0, truncation_note(cached.manifest))
                dist.barrier(world)
                return out_dir
            logger.info("extract: %s was built for another model/pooling/max_length/dtype/data; re-extracting",
                        out_dir)
        except FileNotFoundError:
            pass
        except ProbekitError as e:
            logger.warning("extract: existing cache not trusted (%s); re-extracting", e)
        dist.barrier(world)  # every rank has read the old cache before rank 0 may replace it

        import torch

        torch.manual_seed(cfg.run.seed)
        if device == "cpu":
            torch.set_num_threads(cpu_threads(enc, world.local_size))
        tokenizer, model = load_encoder(enc, path, local, device, identity["compute_dtype"], enc.quantize,
                                        trust_remote_code=cfg.trust_remote_code)
        extractor = make_extractor(enc, tokenizer, model, device)
        build_cache(cfg, ds, identity, key, out_dir, extractor, world, model_path=path if local else None,
                    device=device, versions=versions())
        n = sum(len(p.texts) for p in ds.splits.values())
        if world.is_main:
            dims = ", ".join(f"{k} {v}" for k, v in extractor.dims.items())
            manifest = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
            logger.info("extract: %d texts -> %s, poolings %s, %s on %s%s, %.1fs%s", n, out_dir, dims,
                        identity["compute_dtype"], device, f" x{world.size} ranks" if world.size > 1 else "",
                        time.perf_counter() - t0, truncation_note(manifest))
        return out_dir
    finally:
        dist.finish(world)
