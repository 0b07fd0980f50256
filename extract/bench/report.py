"""The extraction benchmark's JSON and its table: what ``make bench-extract`` reports.

:func:`summarise` turns the timed rounds into the JSON (see docs/benchmarks.md);
:func:`format_table` prints it as a plain-text table. Pure numpy: no torch, no timing.
"""

from __future__ import annotations

import numpy as np


def _cosine(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return (A * B).sum(1) / np.maximum(np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1), 1e-12)


def summarise(n_texts: int, lengths: np.ndarray, peaks: dict, seconds: dict, padded: dict, features: dict,
              flops: float, default: str, dtypes: list[str], executed: dict | None = None,
              paired: dict | None = None) -> dict:
    """The JSON of the timing part (see docs/benchmarks.md).

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
    """The peak-RSS line of the table (``extract.bench.rss``), or why it was not measured."""
    if "full" not in rss:
        return f"peak RSS: {rss.get('skipped', 'not measured')}"
    full, quarter = rss["full"], rss["quarter"]
    return (f"peak RSS of probekit extract: {full['max_rss_mb']:.0f} MB on {full['n_texts']} texts "
            f"({full['seconds']:.1f}s), {quarter['max_rss_mb']:.0f} MB on {quarter['n_texts']} "
            f"(ratio {rss['ratio']:.2f}); warm rerun {rss['warm_rerun_s']:.2f}s after imports "
            f"({rss['warm_rerun_s_without_wandb']:.2f}s without W&B)")
