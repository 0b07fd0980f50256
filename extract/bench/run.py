"""``make bench-extract``: probekit's extraction against the book's recipe and sentence-transformers.

    probekit bench-extract --config configs/goemotions-local.toml --data ../shared/data/goemotions
    make bench-extract                      (GoEmotions from ../shared/data/goemotions when present)

On the first ``[bench] n_texts`` train texts, with the same model and torch threads, it
times (a) the book's recipe, (b) sentence-transformers' ``encode``, (c) probekit in each
of ``[bench] dtypes``, in ``repeats`` interleaved rounds (each method's fastest round
counts). It reports texts/s, real tokens/s, the padded-token fraction, useful GFLOP/s as
a fraction of this machine's fp32 matmul peak (burst and sustained, see
``extract.bench_baselines``; and paired: each round over a peak timed just before it, as the
machine is shared), speed ratios, the feature difference to
the book's, test macro-F1 of logistic regression per dtype, and the peak RSS of
``probekit extract`` on all the data vs a quarter of it (``extract.bench_rss``). The
table goes to stdout, the JSON to ``<artifacts>/<run>/<[bench] output>``. A benchmark,
not a test: run it on a quiet machine.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from probekit.core.config import PROJECT_ROOT, Config, DataSection, load_config
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
from probekit.stages.extract.encode import (
    cpu_threads,
    load_encoder,
    make_extractor,
    pick_device,
    resolve_dtype,
    resolve_model,
)
from probekit.stages.extract.engine.batching import tokenize

logger = logging.getLogger(__name__)

WARMUP_TEXTS = 128


def bench_data(cfg: Config) -> DataSection:
    """[bench] data: the run's [data]; with ``auto``, GoEmotions from ``goemotions_dir`` in place
    of the demo data or of a local preset with no path, or the demo data when GoEmotions is absent."""
    b = cfg.bench
    local = cfg.data.source == "local"
    demo = local and Path(cfg.data.path).resolve() == (PROJECT_ROOT / "extract/demo").resolve()
    if b.data != "auto" or not (demo or (local and not cfg.data.path)):
        return cfg.data
    ge = Path(b.goemotions_dir)
    ge = ge if ge.is_absolute() else PROJECT_ROOT / ge
    if (ge / "train.tsv").is_file():
        return load_config(PROJECT_ROOT / "configs/goemotions-local.toml", [f"data.path={str(ge)!r}"]).data
    return load_config(PROJECT_ROOT / "configs/demo.toml").data


def _cosine(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return (A * B).sum(1) / np.maximum(np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1), 1e-12)


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


def summarise(n_texts: int, lengths: np.ndarray, peaks: dict, seconds: dict, padded: dict, features: dict,
              flops: float, default: str, dtypes: list[str], executed: dict | None = None,
              paired: dict | None = None) -> dict:
    """The JSON of the timing part (see README, "Performance").

    Args:
        peaks: fp32 matmul GFLOP/s, {"burst": ..., "sustained": ...}.
        flops: the useful FLOPs of the texts (the model's forward on real tokens).
        executed: per dtype, the FLOPs probekit ran when fewer (its last layer on [CLS] alone).
        paired: per method, the sustained peak timed just before each of its rounds; each
            round's useful GFLOP/s over its own peak, the median of the rounds, is
            ``paired_peak_fraction``.
    """
    real = int(lengths.sum())
    peak, sustained = peaks["burst"], peaks["sustained"]

    def entry(name: str, executed_flops: float | None = None) -> dict:
        t = min(seconds[name])
        e = {"texts_per_s": round(n_texts / t, 2), "real_tokens_per_s": round(real / t, 1),
             "padded_fraction": round(1 - real / padded[name], 4), "gflops": round(flops / t / 1e9, 2),
             "peak_fraction": round(flops / t / 1e9 / peak, 4),
             "sustained_peak_fraction": round(flops / t / 1e9 / sustained, 4), "seconds": seconds[name]}
        if (paired or {}).get(name):
            e.update(paired_peak_gflops=paired[name], paired_peak_fraction=round(float(np.median(
                [flops / s / 1e9 / p for s, p in zip(seconds[name], paired[name])])), 4))
        if executed_flops is not None and executed_flops < flops:
            e.update(executed_gflops=round(executed_flops / t / 1e9, 2),
                     executed_peak_fraction=round(executed_flops / t / 1e9 / peak, 4))
        return e

    out: dict = {"subset": {"n_texts": n_texts, "real_tokens": real}, "peak_fp32_gflops": round(peak, 1),
                 "peak_fp32_gflops_sustained": round(sustained, 1), "useful_gflop": round(flops / 1e9, 2),
                 "default_dtype": default, "probekit": {}}
    for base in ("book", "sentence_transformers"):
        if base in seconds:
            out[base] = entry(base)
    book = features.get("book")
    fp32 = features.get("probekit float32")
    for d in dtypes:
        e = entry(f"probekit {d}", (executed or {}).get(d))
        X = features[f"probekit {d}"]
        for base, key in (("book", "ratio_vs_book"), ("sentence_transformers", "ratio_vs_st")):
            e[key] = round(e["texts_per_s"] / out[base]["texts_per_s"], 3) if base in out else None
        if book is not None:
            cos = _cosine(X, book)
            e.update(max_abs_diff_vs_book=float(np.abs(X - book).max()),
                     mean_abs_diff_vs_book=float(np.abs(X - book).mean()),
                     min_cosine_vs_book=round(float(cos.min()), 6))
        if fp32 is not None:
            cos = _cosine(X, fp32)
            e.update(min_cosine_vs_fp32=round(float(cos.min()), 6), mean_cosine_vs_fp32=round(float(cos.mean()), 6),
                     mean_abs_diff_vs_fp32=float(np.abs(X - fp32).mean()))
        out["probekit"][d] = e
    return out


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


def format_table(r: dict) -> str:
    """The benchmark as a plain-text table."""
    head = (f"{'method':<24}{'texts/s':>9}{'tokens/s':>10}{'padded':>8}{'GFLOP/s':>9}{'%peak':>7}{'%sust':>7}"
            f"{'%pair':>7}{'x book':>8}{'x ST':>7}{'max|d| book':>13}{'min cos':>9}{'F1':>8}")
    lines = [f"extraction benchmark: {r['subset']['n_texts']} texts, {r['subset']['real_tokens']} real tokens, "
             f"fp32 matmul peak {r['peak_fp32_gflops']:.0f} GFLOP/s (burst), "
             f"{r['peak_fp32_gflops_sustained']:.0f} sustained, default dtype {r['default_dtype']}"]
    if "conditions" in r:
        lines.append(f"model: {r['conditions']['model']}; device: {r['conditions']['device']}")
    lines.append(head)

    def row(name: str, e: dict) -> str:
        def f(key, fmt, width):
            v = e.get(key)
            return format(v, fmt).rjust(width) if isinstance(v, (int, float)) else "-".rjust(width)
        return (f"{name:<24}{f('texts_per_s', '.1f', 9)}{f('real_tokens_per_s', '.0f', 10)}"
                f"{f('padded_fraction', '.1%', 8)}{f('gflops', '.1f', 9)}{f('peak_fraction', '.0%', 7)}"
                f"{f('sustained_peak_fraction', '.0%', 7)}{f('paired_peak_fraction', '.0%', 7)}"
                f"{f('ratio_vs_book', '.2f', 8)}{f('ratio_vs_st', '.2f', 7)}{f('max_abs_diff_vs_book', '.1e', 13)}"
                f"{f('min_cosine_vs_fp32', '.4f', 9)}{f('test_macro_f1', '.4f', 8)}")

    for base in ("book", "sentence_transformers"):
        if base in r:
            lines.append(row(base, r[base]))
    lines += [row(f"probekit {d}", e) for d, e in r["probekit"].items()]
    if "rss" in r:
        lines.append(rss_line(r["rss"]))
    return "\n".join(lines)


def rss_line(rss: dict) -> str:
    if "full" not in rss:
        return f"peak RSS: {rss.get('skipped', 'not measured')}"
    full, quarter = rss["full"], rss["quarter"]
    return (f"peak RSS of probekit extract: {full['max_rss_mb']:.0f} MB on {full['n_texts']} texts "
            f"({full['seconds']:.1f}s), {quarter['max_rss_mb']:.0f} MB on {quarter['n_texts']} "
            f"(ratio {rss['ratio']:.2f}); warm rerun {rss['warm_rerun_s']:.2f}s after imports "
            f"({rss['warm_rerun_s_without_wandb']:.2f}s without W&B)")
