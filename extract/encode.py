"""Run a frozen encoder over every split and write the feature cache.

    probekit extract --config configs/demo.toml        (or: make extract)

Texts are tokenized once with the fast tokenizer, sorted by length and batched, so
padding stays within a batch; the [CLS] vector (last hidden state, position 0) of each
text is written back in the original order. A rerun whose cache key (model, revision,
pooling, max_length, data fingerprint) matches the existing cache reuses it.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from extract import data as data_mod
from extract.cache import CacheWriter, cache_key, features_dir, read_cache, sha256_file
from extract.config import Config, EncoderSection, ProbekitError

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json", "vocab.txt")


def resolve_model(enc: EncoderSection) -> tuple[str, bool]:
    """Return (path or Hub id to load, whether it is on local disk)."""
    if enc.model.startswith("package:"):
        module_name = enc.model.split(":", 1)[1]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ProbekitError(
                f"[encoder] model={enc.model!r}: the package {module_name!r} is not installed; "
                "run: pip install -e '.[offline]' (make demo does it)."
            ) from None
        get_path = getattr(module, "get_model_path", None)
        path = Path(get_path()) if get_path else Path(module.__file__).parent / "model"
        return str(path), True
    if Path(enc.model).is_dir():
        return enc.model, True
    return enc.model, False


def model_identity(enc: EncoderSection, path: str, local: bool) -> tuple[str, str]:
    """(model_id, model_revision): a hash of the weights for local folders, the commit for the Hub."""
    if local:
        h = [sha256_file(Path(path) / f) for f in WEIGHT_FILES if (Path(path) / f).is_file()]
        if not h:
            raise ProbekitError(f"[encoder] model={enc.model!r}: {path} holds no model files ({', '.join(WEIGHT_FILES)}).")
        return enc.model, "sha256:" + cache_key({"files": h})
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, revision=enc.revision)
    except OSError as e:
        raise ProbekitError(
            f"[encoder] model={enc.model!r}: cannot load it from the Hugging Face Hub (offline, unreachable "
            f"or unknown: {str(e).splitlines()[0][:160]}). Presets that work offline: {data_mod.OFFLINE_PRESETS}."
        ) from None
    return enc.model, getattr(config, "_commit_hash", None) or enc.revision


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ProbekitError(f"[encoder] device={name!r} but torch sees no CUDA device; use device='auto' or 'cpu'.")
    return name


def load_encoder(enc: EncoderSection, path: str, local: bool, device: str):
    """Tokenizer and frozen model in eval mode."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    kw = {"local_files_only": local} if local else {"revision": enc.revision}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kw)
        model = AutoModel.from_pretrained(path, **kw)
    except OSError as e:
        raise ProbekitError(f"[encoder] model={enc.model!r}: cannot load it: {str(e).splitlines()[0][:200]}") from None
    if not tokenizer.is_fast:
        raise ProbekitError(f"[encoder] model={enc.model!r} has no fast tokenizer (tokenizer.json); probekit needs one.")
    model.eval().requires_grad_(False).to(device)
    return tokenizer, model


def encode_texts(texts: list[str], tokenizer, model, max_length: int, batch_size: int,
                 device: str, desc: str = "encode") -> tuple[np.ndarray, int]:
    """[CLS] features of `texts`, in their order, and how many texts were truncated."""
    import torch
    from tqdm.auto import tqdm

    enc = tokenizer(texts, truncation=True, max_length=max_length, return_overflowing_tokens=True,
                    return_attention_mask=False, return_token_type_ids=False)
    # With overflow on, a text longer than max_length yields several windows; [CLS] pooling
    # keeps the first one, which is exactly plain truncation.
    sample = np.asarray(enc["overflow_to_sample_mapping"])
    first = np.flatnonzero(np.r_[True, sample[1:] != sample[:-1]])
    n_truncated = int(np.count_nonzero(np.bincount(sample, minlength=len(texts)) > 1))
    input_ids = [enc["input_ids"][j] for j in first]
    lengths = np.fromiter((len(ids) for ids in input_ids), dtype=np.int64, count=len(input_ids))
    order = np.argsort(-lengths, kind="stable")  # longest first: an out-of-memory shows at once
    X = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not logger.isEnabledFor(logging.INFO))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer.pad({"input_ids": [input_ids[i] for i in idx]}, return_tensors="pt")
            out = model(input_ids=batch["input_ids"].to(device),
                        attention_mask=batch["attention_mask"].to(device))
            X[idx] = out.last_hidden_state[:, 0].float().cpu().numpy()
            bar.update(len(idx))
    bar.close()
    return X, n_truncated


def _versions() -> dict:
    import datasets
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "numpy": np.__version__}


def run_extract(cfg: Config) -> Path:
    """Load the data, reuse or (re)build ``<run>/features/``, return its path."""
    t0 = time.perf_counter()
    enc = cfg.encoder
    path, local = resolve_model(enc)
    if local and cfg.data.source == "local":
        # Nothing in this run needs the network: keep every Hugging Face library off it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    ds = data_mod.load(cfg.data)
    model_id, revision = model_identity(enc, path, local)
    identity = {
        "model_id": model_id, "model_revision": revision, "pooling": enc.pooling, "layer": -1,
        "max_length": enc.max_length, "truncation": True, "dtype": "float32",
        "dataset_fingerprint": ds.fingerprints, "label_names": ds.label_names, "problem_type": ds.problem_type,
    }
    key = cache_key(identity)
    out_dir = features_dir(cfg.run_dir)
    try:
        cached = read_cache(out_dir)
        if cached.manifest.get("cache_key") == key:
            logger.info("extract: reusing %s (cache key %s matches; %.1fs)", out_dir, key, time.perf_counter() - t0)
            return out_dir
        logger.info("extract: %s was built for another model/pooling/max_length/data; re-extracting", out_dir)
    except FileNotFoundError:
        pass
    except ProbekitError as e:
        logger.warning("extract: existing cache not trusted (%s); re-extracting", e)

    import torch

    torch.manual_seed(cfg.run.seed)
    torch.set_num_threads(enc.num_threads or os.cpu_count() or 1)
    device = pick_device(enc.device)
    tokenizer, model = load_encoder(enc, path, local, device)
    n_truncated, seconds = {}, {}
    with CacheWriter(out_dir) as writer:
        for split, part in ds.splits.items():
            t = time.perf_counter()
            X, n_truncated[split] = encode_texts(part.texts, tokenizer, model, enc.max_length,
                                                 enc.batch_size, device, desc=f"extract {split}")
            seconds[split] = round(time.perf_counter() - t, 3)
            writer.add_split(split, X, part.y, part.texts, part.ids)
        manifest = {
            **identity,
            "cache_key": key,
            "model_path": path if local else None,
            "hidden_size": int(model.config.hidden_size),
            "dataset": ds.source,
            "n_truncated": n_truncated,
            "device": device,
            "extract_seconds": seconds,
            "seed": cfg.run.seed,
            "config": cfg.to_dict(),
            "versions": _versions(),
        }
        writer.commit(manifest)
    n = sum(len(p.texts) for p in ds.splits.values())
    logger.info("extract: %d texts -> %s, hidden size %d, %s, %.1fs", n, out_dir, model.config.hidden_size,
                device, time.perf_counter() - t0)
    return out_dir
