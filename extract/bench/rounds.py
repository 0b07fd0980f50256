"""The bench's methods and its interleaved rounds (``extract.bench.run``).

A method is a callable ``texts -> (X, padded tokens)`` or ``-> (X, padded tokens, seconds)``: the
peers run in another process (``extract.bench.peer_client``), which times its own encode call and
hands back the vectors of the first full round only (X is None in the others). Every round runs
every method once, in an order rotated each round; the fp32 and bf16 matmul peaks are sampled
before every round and after the last, and (``[bench] paired_peak_s``) fp32 just before every
method's run, all kept.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from probekit.stages.extract.bench.baselines import BookRecipe, peak_gflops, sustained_fp32_gflops
from probekit.stages.extract.engine.loading import load_encoder, make_extractor

logger = logging.getLogger(__name__)

WARMUP_TEXTS = 128


def probekit_methods(cfg, path: str, local: bool, dtypes: list[str], lengths: np.ndarray,
                     device: str = "cpu") -> tuple[dict, dict]:
    """name -> callable for the book (when a baseline) and each probekit dtype, for texts that are a
    prefix of the benchmark's; and dtype -> the probekit Extractor behind "probekit <dtype>"."""
    enc = cfg.encoder
    methods, extractors = {}, {}
    if "book" in cfg.bench.baselines:
        book = BookRecipe(path, enc.max_length, device)
        methods["book"] = lambda t: (book(t), book.padded_tokens(lengths[:len(t)]))
    for d in dtypes:
        quantize = "int8" if d == "int8" else "none"
        tok, model = load_encoder(enc, path, local, device, "float32" if d == "int8" else d, quantize)
        extractors[d] = ex = make_extractor(enc, tok, model, device, poolings=[enc.pooling])

        def run(t, ex=ex):
            arrays, stats = ex.encode(t)
            return arrays[enc.pooling], stats["padded_tokens"]

        methods[f"probekit {d}"] = run
    return methods, extractors


def peer_methods(runner, names, n_texts: int, folder: Path) -> dict:
    """name -> callable for each built peer of `runner`; a run on all the texts hands back its vectors
    through an .npy file in `folder` (written after the timed call), a shorter one (warm-up) None."""

    def method(name):
        def run(t):
            save = folder / f"{name}.npy" if len(t) == n_texts else None
            r = runner.encode(name, len(t), str(save) if save else None)
            return (np.load(save) if save else None), r["padded_tokens"], r["seconds"]
        return run

    return {name: method(name) for name in names}


def time_rounds(methods: dict, texts: list[str], repeats: int, paired_s: float = 0.0,
                device: str = "cpu") -> tuple:
    """Interleaved rounds, the order rotated each round.

    Returns seconds per round, the first round's features, padded tokens, and every peak sample:
    {"float32": [...], "bfloat16": [...] (before each round, after the last), "float32_paired":
    {method: [one per round]} (empty when `paired_s` is 0)}.
    """
    for fn in methods.values():  # warm-up: first-call costs are not the steady state
        fn(texts[:WARMUP_TEXTS])
    seconds: dict = {name: [] for name in methods}
    samples: dict = {"float32": [], "bfloat16": [], "float32_paired": {name: [] for name in methods if paired_s}}
    features, padded = {}, {}
    names = list(methods)

    def sample_peaks():
        for dtype in ("float32", "bfloat16"):
            samples[dtype].append(round(peak_gflops(dtype, device=device), 1))

    for r in range(repeats):
        sample_peaks()
        for name in names[r % len(names):] + names[:r % len(names)]:
            if paired_s:
                samples["float32_paired"][name].append(round(sustained_fp32_gflops(seconds=paired_s, device=device), 1))
            t = time.perf_counter()
            out = methods[name](texts)
            took = time.perf_counter() - t
            X, padded[name] = out[0], out[1]
            seconds[name].append(round(out[2] if len(out) > 2 else took, 4))
            if X is not None:
                features.setdefault(name, X)
            logger.info("bench: round %d, %-24s %.2fs", r + 1, name, seconds[name][-1])
    sample_peaks()
    return seconds, features, padded, samples
