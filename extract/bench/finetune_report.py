"""The fine-tuning benchmark's JSON and its table (pure Python: no torch, no timing)."""

from __future__ import annotations


def summarise(results: dict, n_train: int, real_tokens: int, non_embedding: int, peaks: dict, default: str) -> dict:
    """The JSON of ``make bench-finetune`` (see docs/finetune.md).

    Args:
        results: per method ("hf_trainer", "probekit.<dtype>"), its "seconds" (the epoch's
            training steps), "validation_macro_f1" and "rss_mb".
        peaks: the highest fp32 and bf16 matmul GFLOP/s sampled in the run.
    """
    flops = 6 * non_embedding * real_tokens
    bf16_native = peaks["bfloat16"] > peaks["float32"]

    def entry(r: dict) -> dict:
        t = r["seconds"]
        gflops = flops / t / 1e9
        return {"examples_per_s": round(n_train / t, 2), "seconds": t, "real_tokens_per_s": round(real_tokens / t, 1),
                "useful_gflops": round(gflops, 2), "fp32_peak_share": round(gflops / peaks["float32"], 4),
                # null where this CPU emulates bf16 (its bf16 matmul slower than fp32): no ceiling to speak of
                "bf16_peak_share": round(gflops / peaks["bfloat16"], 4) if bf16_native else None,
                "validation_macro_f1": round(float(r["validation_macro_f1"]), 4), "rss_mb": r.get("rss_mb")}

    hf = entry(results["hf_trainer"])
    hf["ratio_vs_hf"] = 1.0
    out = {"default_dtype": default, "train_rows": n_train, "real_tokens": real_tokens,
           "non_embedding_parameters": non_embedding, "peak_fp32_gflops": round(peaks["float32"], 1),
           "peak_bf16_gflops": round(peaks["bfloat16"], 1), "hf_trainer": hf, "probekit": {}}
    for name, r in results.items():
        if name.startswith("probekit."):
            e = entry(r)
            e["ratio_vs_hf"] = round(e["examples_per_s"] / hf["examples_per_s"], 3)
            e["f1_delta_vs_hf"] = round(e["validation_macro_f1"] - hf["validation_macro_f1"], 4)
            out["probekit"][name.split(".", 1)[1]] = e
    return out


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def format_table(r: dict) -> str:
    """The benchmark as a plain-text table."""
    lines = [f"fine-tuning benchmark: {r['train_rows']} train texts ({r['real_tokens']} real tokens), one epoch; "
             f"matmul peak fp32 {r['peak_fp32_gflops']:.0f} GFLOP/s, bf16 {r['peak_bf16_gflops']:.0f}; "
             f"default dtype {r['default_dtype']}",
             f"{'method':<22}{'examples/s':>11}{'x HF':>7}{'GFLOP/s':>9}{'%fp32':>7}{'%bf16':>7}{'val F1':>8}"
             f"{'dF1':>8}{'RSS MB':>8}"]
    rows = [("hf_trainer", r["hf_trainer"])] + [(f"probekit {d}", e) for d, e in r["probekit"].items()]
    for name, e in rows:
        d = e.get("f1_delta_vs_hf")
        lines.append(f"{name:<22}{e['examples_per_s']:>11.1f}{e['ratio_vs_hf']:>7.2f}{e['useful_gflops']:>9.1f}"
                     f"{100 * e['fp32_peak_share']:>6.0f}%{_pct(e['bf16_peak_share']):>7}"
                     f"{e['validation_macro_f1']:>8.3f}{'-' if d is None else f'{d:+.3f}':>8}"
                     f"{(e.get('rss_mb') or 0):>8.0f}")
    if "peak_rss_mb" in r:
        lines.append(f"peak RSS of the benchmark process (all methods): {r['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)
