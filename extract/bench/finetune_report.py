"""The fine-tuning benchmark's JSON and its table (pure Python: no torch, no timing)."""

from __future__ import annotations

from probekit.stages.extract.bench.machine import ceiling


def summarise(results: dict, n_train: int, real_tokens: int, non_embedding: int, peaks: dict, default: str) -> dict:
    """The JSON of ``make bench-finetune`` (see docs/finetune.md).

    Args:
        results: per method ("hf_trainer", "probekit.<dtype>"), its "seconds" (the epoch's
            training steps), "validation_macro_f1" and "rss_mb".
        peaks: every fp32 and bf16 matmul GFLOP/s sampled in the run ({"float32": [...], "bfloat16": [...]}).

    Each method's share is taken against the ceiling of the precision it computes in (HF Trainer:
    float32): the highest of that precision's samples and of those methods' own rates
    (extract.bench.machine.ceiling), so no share exceeds 100% on a machine that was busier when
    a peak was sampled than when a method ran.
    """
    flops = 6 * non_embedding * real_tokens
    dtype = {name: "float32" if name == "hf_trainer" else name.split(".", 1)[1] for name in results}
    rate = {name: flops / r["seconds"] / 1e9 for name, r in results.items()}
    caps = {p: ceiling(list(peaks.get(p) or []), {n: g for n, g in rate.items() if dtype[n] == p})
            for p in ("float32", "bfloat16")}
    # a CPU that emulates bf16 (its bf16 matmul slower than fp32): no bf16 ceiling to speak of
    bf16_native = (max(peaks.get("bfloat16") or [0.0]) > max(peaks.get("float32") or [0.0])
                   or any(d == "bfloat16" for d in dtype.values()))

    def entry(name: str) -> dict:
        r, t, g = results[name], results[name]["seconds"], rate[name]
        share = {p: round(g / caps[p]["gflops"], 4) if dtype[name] == p and caps[p]["gflops"] else None
                 for p in caps}
        return {"examples_per_s": round(n_train / t, 2), "seconds": t, "real_tokens_per_s": round(real_tokens / t, 1),
                "useful_gflops": round(g, 2), "dtype": dtype[name], "fp32_peak_share": share["float32"],
                "bf16_peak_share": share["bfloat16"] if bf16_native else None,
                "validation_macro_f1": round(float(r["validation_macro_f1"]), 4), "rss_mb": r.get("rss_mb")}

    hf = entry("hf_trainer")
    hf["ratio_vs_hf"] = 1.0
    out = {"default_dtype": default, "train_rows": n_train, "real_tokens": real_tokens,
           "non_embedding_parameters": non_embedding, "peak_fp32_gflops": round(caps["float32"]["gflops"], 1),
           "peak_bf16_gflops": round(caps["bfloat16"]["gflops"], 1) if bf16_native else None,
           "ceilings": {p: {k: round(v, 1) if isinstance(v, float) else v for k, v in c.items()}
                        for p, c in caps.items() if p == "float32" or bf16_native},
           "hf_trainer": hf, "probekit": {}}
    for name in results:
        if name.startswith("probekit."):
            e = entry(name)
            e["ratio_vs_hf"] = round(e["examples_per_s"] / hf["examples_per_s"], 3)
            e["f1_delta_vs_hf"] = round(e["validation_macro_f1"] - hf["validation_macro_f1"], 4)
            out["probekit"][name.split(".", 1)[1]] = e
    return out


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def format_table(r: dict) -> str:
    """The benchmark as a plain-text table."""
    caps = "; ".join(f"{p} {c['gflops']:.0f} GFLOP/s ({c['peak_source']})" for p, c in r.get("ceilings", {}).items())
    lines = [f"fine-tuning benchmark: {r['train_rows']} train texts ({r['real_tokens']} real tokens), one epoch; "
             f"default dtype {r['default_dtype']}",
             f"matmul ceilings (max of every sample and every method of that precision): {caps}",
             f"{'method':<22}{'examples/s':>11}{'x HF':>7}{'GFLOP/s':>9}{'%fp32':>7}{'%bf16':>7}{'val F1':>8}"
             f"{'dF1':>8}{'RSS MB':>8}"]
    rows = [("hf_trainer", r["hf_trainer"])] + [(f"probekit {d}", e) for d, e in r["probekit"].items()]
    for name, e in rows:
        d = e.get("f1_delta_vs_hf")
        lines.append(f"{name:<22}{e['examples_per_s']:>11.1f}{e['ratio_vs_hf']:>7.2f}{e['useful_gflops']:>9.1f}"
                     f"{_pct(e['fp32_peak_share']):>7}{_pct(e['bf16_peak_share']):>7}"
                     f"{e['validation_macro_f1']:>8.3f}{'-' if d is None else f'{d:+.3f}':>8}"
                     f"{(e.get('rss_mb') or 0):>8.0f}")
    if "peak_rss_mb" in r:
        lines.append(f"peak RSS of the benchmark process (all methods): {r['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)
