"""``make bench-extract``: probekit's extraction against the book's recipe and sentence-transformers.

    probekit bench-extract --config configs/goemotions-local.toml --data DIR
    make bench-extract DATA=DIR             (GoEmotions' TSVs in DIR; without DATA: the demo data)

On the first ``[bench] n_texts`` train texts, with the same model and torch threads, it
times (a) the book's recipe, (b) sentence-transformers' ``encode``, (c) probekit in each
of ``[bench] dtypes``, in ``repeats`` interleaved rounds (each method's fastest round
counts). It reports texts/s, real tokens/s, the padded-token fraction, useful GFLOP/s as
a fraction of this machine's fp32 matmul peak (burst and sustained, see
``extract.bench.baselines``; and paired: each round over a peak timed just before it, as the
machine is shared), speed ratios, the feature difference to the book's, test macro-F1 of
logistic regression per dtype, and the peak RSS of ``probekit extract`` on all the data vs
a quarter of it (``extract.bench.rss``). The data is the config's [data]. The table
(``extract.bench.report``) goes to stdout, the JSON to ``<artifacts>/<[bench] output>``.
A benchmark, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from probekit.core.config import Config, DataSection
from probekit.core.errors import ConfigError
from probekit.core.runfolder import write_json_atomic
from probekit.stages.extract import data as data_mod
from probekit.stages.extract.bench.baselines import (
    BookRecipe,
    SentenceTransformersEncode,
    flop_counter,
    peak_fp32_gflops,
    random_model,
    sustained_fp32_gflops,
)
from probekit.stages.extract.bench.report import format_table, summarise
from probekit.stages.extract.engine.batching import tokenize
from probekit.stages.extract.engine.loading import (
    cpu_threads,
    load_encoder,
    make_extractor,
    pick_device,
    resolve_dtype,
    resolve_model,
)

logger = logging.getLogger(__name__)

WARMUP_TEXTS = 128


def bench_data(cfg: Config) -> DataSection:
    """The data the benchmark times: the config's [data], which must name its files.

    Raises:
        ConfigError: a local [data] with no path (a preset such as goemotions-local run without DATA=).
    """
    if cfg.data.source == "local" and not cfg.data.path:
        raise ConfigError(f"{cfg.source or 'the config'}: [data] path is empty; run make bench-extract DATA=<data "
                          "folder> (GoEmotions' TSVs), or without DATA to time the demo data (configs/demo.toml).")
    return cfg.data


def macro_f1(X_train, y_train, X_test, y_test, problem_type: str, seed: int = 0) -> float:
    """Test macro-F1 of (one-vs-rest) logistic regression on standardised features, balanced classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lr = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced", random_state=seed)
    multi = problem_type == "multi_label"
    keep = np.flatnonzero(y_train.sum(0) > 0) if multi else None  # a label never seen in train cannot be fit
    est = make_pipeline(StandardScaler(), OneVsRestClassifier(lr) if multi else lr)
    est.fit(X_train, y_train[:, keep] if multi else y_train)
    pred = est.predict(X_test)
    if multi:
        full = np.zeros_like(y_test)
        full[:, keep] = pred
        pred = full
    return float(f1_score(y_test, pred, average="macro", zero_division=0))


def _methods(cfg: Config, path: str, local: bool, dtypes: list[str], lengths: np.ndarray,
             device: str = "cpu") -> tuple[dict, dict]:
    """name -> callable(texts) -> (X, padded tokens), for texts that are a prefix of the benchmark's;
    and dtype -> the probekit Extractor behind "probekit <dtype>"."""
    enc = cfg.encoder
    methods, extractors = {}, {}
    if "book" in cfg.bench.baselines:
        book = BookRecipe(path, enc.max_length, device)
        methods["book"] = lambda t: (book(t), book.padded_tokens(lengths[:len(t)]))
    if "sentence_transformers" in cfg.bench.baselines:
        st = SentenceTransformersEncode(path, device)
        methods["sentence_transformers"] = lambda t: (st(t), st.padded_tokens(t, lengths[:len(t)]))
    for d in dtypes:
        quantize = "int8" if d == "int8" else "none"
        tok, model = load_encoder(enc, path, local, device, "float32" if d == "int8" else d, quantize)
        extractors[d] = ex = make_extractor(enc, tok, model, device, poolings=[enc.pooling])

        def run(t, ex=ex):
            arrays, stats = ex.encode(t)
            return arrays[enc.pooling], stats["padded_tokens"]

        methods[f"probekit {d}"] = run
    return methods, extractors


def _time_rounds(methods: dict, texts: list[str], repeats: int, paired_s: float = 0.0,
                 device: str = "cpu") -> tuple:
    """Interleaved rounds, the order rotated each round.

    Returns seconds per round, the first round's features, padded tokens, the fp32 matmul
    peaks {"burst": ..., "sustained": ...} (each the best of a measurement before every
    round and one after the last, as the timings are the best round), and per method the
    sustained peak of `paired_s` seconds timed just before each of its rounds (empty lists
    when `paired_s` is 0).
    """
    for fn in methods.values():  # warm-up: first-call costs are not the steady state
        fn(texts[:WARMUP_TEXTS])
    seconds: dict = {name: [] for name in methods}
    paired: dict = {name: [] for name in methods}
    features, padded = {}, {}
    names = list(methods)
    peaks = {"burst": [], "sustained": []}

    def measure_peaks():
        peaks["burst"].append(peak_fp32_gflops(device=device))
        peaks["sustained"].append(sustained_fp32_gflops(device=device))

    for r in range(repeats):
        measure_peaks()
        for name in names[r % len(names):] + names[:r % len(names)]:
            if paired_s:
                paired[name].append(round(sustained_fp32_gflops(seconds=paired_s, device=device), 1))
            t = time.perf_counter()
            X, padded[name] = methods[name](texts)
            seconds[name].append(round(time.perf_counter() - t, 4))
            features.setdefault(name, X)
            logger.info("bench: round %d, %-24s %.2fs", r + 1, name, seconds[name][-1])
    measure_peaks()
    return seconds, features, padded, {k: max(v) for k, v in peaks.items()}, paired


def run_bench(cfg: Config) -> dict:
    """Run the benchmark; print the table, write and return the JSON."""
    bench_data(cfg)  # before any model is built or torch imported
    if not cfg.bench.model_shape:
        return _run_bench(cfg)
    with tempfile.TemporaryDirectory(prefix="probekit-bench-model-") as tmp:
        described = random_model(cfg.bench.model_shape, Path(tmp), cfg.run.seed)
        logger.info("bench: timing %s", described)
        enc = dataclasses.replace(cfg.encoder, model=tmp)
        return _run_bench(dataclasses.replace(cfg, encoder=enc), described)


def bench_dtypes(dtypes, default: str, device: str) -> list[str]:
    """[bench] dtypes with ``auto`` resolved to `default`, once each; int8 (CPU-only) left out on a GPU."""
    out = list(dict.fromkeys(default if d == "auto" else d for d in dtypes))
    if device != "cpu" and "int8" in out:
        logger.info("bench: int8 dynamic quantisation is CPU-only; not timed on %s", device)
        out.remove("int8")
        if not out:
            raise ConfigError(f"[bench] dtypes={list(dtypes)} leaves nothing to time on {device} (int8 is "
                              "CPU-only); add 'float32' or 'auto'.")
    return out


def _run_bench(cfg: Config, model: str | None = None) -> dict:
    """The benchmark of cfg's encoder; `model`: what to call it in the report (default: [encoder] model)."""
    import torch
    from transformers import AutoTokenizer

    b, enc = cfg.bench, cfg.encoder
    device = pick_device(enc.device)
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"[encoder] device={enc.device!r} is {device}: bench-extract runs on cpu or cuda.")
    data_cfg = bench_data(cfg)
    ds = data_mod.load(data_cfg)
    texts = ds.splits["train"].texts[:b.n_texts]
    torch.set_num_threads(cpu_threads(enc))
    path, local = resolve_model(enc)
    default = resolve_dtype(dataclasses.replace(enc, quantize="none"), device)
    dtypes = bench_dtypes(b.dtypes, default, device)
    logger.info("bench: %d texts of %s on %s, %d threads, probekit in %s, %d rounds", len(texts),
                data_cfg.path, device, torch.get_num_threads(), ", ".join(dtypes), b.repeats)
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **({"local_files_only": True} if local else {}))
    lengths = tokenize(tokenizer, texts, enc.max_length).lengths
    methods, extractors = _methods(cfg, path, local, dtypes, lengths, device)
    seconds, features, padded, peaks, paired = _time_rounds(methods, texts, b.repeats, b.paired_peak_s, device)
    count = flop_counter(load_encoder(dataclasses.replace(enc, fuse_layers=False), path, local, "cpu")[1])
    executed = {d: count(lengths, ex.first_token_only) for d, ex in extractors.items()}
    result = summarise(len(texts), lengths, peaks, seconds, padded, features, count(lengths), default, dtypes,
                       executed, paired)
    if b.model_shape and b.f1_test_texts >= 0:
        logger.info("bench: no test macro-F1: the features of random weights say nothing about the labels")
    elif b.f1_test_texts >= 0 and "float32" in extractors:
        _add_f1(cfg, ds, result, extractors, features)
    if b.rss:
        from probekit.stages.extract.bench.rss import rss_report

        result["rss"] = rss_report(cfg, data_cfg)
    result["conditions"] = {
        "device": device if device == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(), "rounds": b.repeats, "timing": "fastest of the interleaved rounds",
        "data": str(data_cfg.path), "model": model or enc.model, "max_length": enc.max_length,
        "pooling": enc.pooling, "max_batch_tokens": next(iter(extractors.values())).max_tokens,
        "torch": torch.__version__,
    }
    out = Path(cfg.run.artifacts) / b.output
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    sys.stdout.write(format_table(result) + f"\nwritten: {out}\n")
    sys.stdout.flush()
    return result


def _add_f1(cfg: Config, ds, result: dict, extractors: dict, features: dict) -> None:
    """Test macro-F1 of logistic regression on each dtype's features (train: the benchmark's texts)."""
    n = len(next(iter(features.values())))
    test = ds.splits["test"]
    m = cfg.bench.f1_test_texts or len(test.texts)
    for d, ex in extractors.items():
        X_test = ex.encode(test.texts[:m])[0][cfg.encoder.pooling]
        f1 = macro_f1(features[f"probekit {d}"], ds.splits["train"].y[:n], X_test, test.y[:m], ds.problem_type,
                      cfg.run.seed)
        result["probekit"][d]["test_macro_f1"] = round(f1, 4)
        logger.info("bench: %s: test macro-F1 %.4f (logistic regression, %d train / %d test texts)", d, f1, n, m)
    if "float32" in result["probekit"]:
        ref = result["probekit"]["float32"]["test_macro_f1"]
        for e in result["probekit"].values():
            e["f1_delta_vs_fp32"] = round(e["test_macro_f1"] - ref, 4)
