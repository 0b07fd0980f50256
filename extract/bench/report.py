"""The extraction benchmark's JSON and its table: what ``make bench-extract`` reports.

:func:`summarise` turns the timed rounds into the JSON (see docs/benchmarks.md);
:func:`format_table` prints it as a plain-text table. Pure numpy: no torch, no timing.

Each method's share of peak is its GFLOP/s over the ceiling of its precision
(``extract.bench.machine.ceiling``): the highest matmul sample of the run in that precision (fp32
samples for fp32, int8 and fp16; bf16 samples for bf16) or the best GFLOP/s a method of that
precision reached, whichever is higher, so no share exceeds 100%.
"""

from __future__ import annotations

import numpy as np

from probekit.stages.extract.bench.machine import ceiling, header, theoretical_peaks

# the peers a probekit dtype is compared with: fp32 ones for fp32, bf16 and fp16, int8 ones for int8
PEER_CLASS = {"float32": ("st_torch", "st_onnx", "st_openvino"), "int8": ("st_onnx_int8", "st_openvino_int8")}
SAMPLES_OF = {"float32": "float32", "float16": "float32", "int8": "float32", "bfloat16": "bfloat16"}


def _cosine(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return (A * B).sum(1) / np.maximum(np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1), 1e-12)


def precision_of(name: str, detail: dict | None = None) -> str:
    """A method's precision class: "probekit bfloat16" -> bfloat16; a peer's from its detail (OpenVINO
    may run an fp32 model in bf16: its inference_precision says so); the book fp32."""
    if name.startswith("probekit "):
        return name.split(" ", 1)[1]
    detail = detail or {}
    if detail.get("precision") == "int8":
        return "int8"
    return "bfloat16" if str(detail.get("inference_precision") or "").lower() in ("bf16", "bfloat16") else "float32"


def best_peer(peers: dict, dtype: str) -> tuple[str | None, float | None]:
    """(name, texts/s) of the fastest peer of `dtype`'s class (int8 -> int8 peers, else fp32 ones)."""
    timed = [(n, peers[n]["texts_per_s"]) for n in PEER_CLASS["int8" if dtype == "int8" else "float32"] if n in peers]
    return max(timed, key=lambda kv: kv[1]) if timed else (None, None)


def ceilings(samples: dict, methods: dict) -> dict:
    """precision -> :func:`extract.bench.machine.ceiling` of its samples and its methods' GFLOP/s.

    Args:
        samples: {"float32": [...], "bfloat16": [...], "float32_paired": {method: [...]}}.
        methods: name -> {"precision", "gflops", "executed_gflops"?}.
    """
    pools = {"float32": list(samples.get("float32", [])) + [x for v in samples.get("float32_paired", {}).values()
                                                            for x in v],
             "bfloat16": list(samples.get("bfloat16", []))}
    out = {}
    order = ("float32", "bfloat16", "float16", "int8")
    for p in sorted({m["precision"] for m in methods.values()}, key=lambda p: (order.index(p) if p in order else 9, p)):
        reached = {n: max(m["gflops"], m.get("executed_gflops", 0.0))
                   for n, m in methods.items() if m["precision"] == p}
        ref = SAMPLES_OF.get(p, "float32")
        out[p] = {**ceiling(pools[ref], reached), "samples_of": ref}
    return out


def summarise(n_texts: int, lengths: np.ndarray, samples: dict, seconds: dict, padded: dict, features: dict,
              flops: float, default: str, dtypes: list[str], executed: dict | None = None,
              peer_detail: dict | None = None, machine: dict | None = None) -> dict:
    """The JSON of the timing part (see docs/benchmarks.md).

    Args:
        samples: every matmul peak sample of the run (``extract.bench.rounds.time_rounds``).
        flops: the useful FLOPs of the texts (the model's forward on real tokens).
        executed: per dtype, the FLOPs probekit ran when fewer (its last layer on [CLS] alone).
        peer_detail: per peer timed, what it records (backend, file, quantisation, run precision).
        machine: ``extract.bench.machine.describe()``.
    """
    real = int(lengths.sum())
    peer_detail = peer_detail or {}
    methods = {}
    for name in seconds:
        t = min(seconds[name])
        e = {"precision": precision_of(name, peer_detail.get(name)), "texts_per_s": round(n_texts / t, 2),
             "real_tokens_per_s": round(real / t, 1), "padded_fraction": round(1 - real / padded[name], 4),
             "gflops": flops / t / 1e9, "seconds": seconds[name]}
        d = name.split(" ", 1)[1] if name.startswith("probekit ") else None
        if d and (executed or {}).get(d, flops) < flops:
            e["executed_gflops"] = executed[d] / t / 1e9
        methods[name] = e
    caps = ceilings(samples, methods)
    for e in methods.values():
        cap = caps[e["precision"]]["gflops"]
        e["peak_fraction"] = round(e["gflops"] / cap, 4)
        if "executed_gflops" in e:
            e["executed_peak_fraction"] = round(e["executed_gflops"] / cap, 4)
            e["executed_gflops"] = round(e["executed_gflops"], 2)
        e["gflops"] = round(e["gflops"], 2)
    for c in caps.values():
        c["gflops"], c["sampled_max"] = round(c["gflops"], 2), round(c["sampled_max"], 1)
    out: dict = {"subset": {"n_texts": n_texts, "real_tokens": real}, "useful_gflop": round(flops / 1e9, 2),
                 "default_dtype": default, "peak_fp32_gflops": caps.get("float32", {}).get("gflops"),
                 "peak_bf16_gflops": caps.get("bfloat16", {}).get("gflops"), "ceilings": caps,
                 "peak_samples": samples}
    if machine is not None:
        out["machine"] = {**machine, "theoretical_peak_gflops": theoretical_peaks(machine)}
    if "book" in methods:
        out["book"] = methods["book"]
    st_ref = features.get("st_torch", features.get("probekit float32"))
    out["peers"] = {}
    for name, detail in peer_detail.items():
        e = {**methods[name], **{k: v for k, v in detail.items() if k != "precision"}}
        if st_ref is not None and name in features:
            cos = _cosine(features[name], st_ref)
            e.update(min_cosine_vs_fp32=round(float(cos.min()), 6), mean_cosine_vs_fp32=round(float(cos.mean()), 6))
        out["peers"][name] = e
    out["probekit"] = {d: _probekit_entry(out, methods[f"probekit {d}"], d, features) for d in dtypes}
    return out


def _probekit_entry(out: dict, e: dict, d: str, features: dict) -> dict:
    X, book, fp32 = features[f"probekit {d}"], features.get("book"), features.get("probekit float32")
    st = out["peers"].get("st_torch")
    e["ratio_vs_book"] = round(e["texts_per_s"] / out["book"]["texts_per_s"], 3) if "book" in out else None
    e["ratio_vs_st"] = round(e["texts_per_s"] / st["texts_per_s"], 3) if st else None
    e["best_peer"], speed = best_peer(out["peers"], d)
    e["ratio_vs_best_peer"] = round(e["texts_per_s"] / speed, 3) if speed else None
    if book is not None:
        cos = _cosine(X, book)
        e.update(max_abs_diff_vs_book=float(np.abs(X - book).max()),
                 mean_abs_diff_vs_book=float(np.abs(X - book).mean()), min_cosine_vs_book=round(float(cos.min()), 6))
    if fp32 is not None:
        cos = _cosine(X, fp32)
        e.update(min_cosine_vs_fp32=round(float(cos.min()), 6), mean_cosine_vs_fp32=round(float(cos.mean()), 6),
                 mean_abs_diff_vs_fp32=float(np.abs(X - fp32).mean()))
    return e


def _peak_line(r: dict) -> str:
    parts = [f"{p} {c['gflops']:.0f} GFLOP/s ({c['peak_source']})" for p, c in r["ceilings"].items()]
    theory = (r.get("machine") or {}).get("theoretical_peak_gflops") or {}
    known = [f"{p} {v:.0f}" for p, v in theory.items() if v]
    return ("matmul ceilings (max of every sample and every method): " + "; ".join(parts)
            + (f"; theoretical at the listed clock: {', '.join(known)}" if known else ""))


def format_table(r: dict) -> str:
    """The benchmark as a plain-text table."""
    head = (f"{'method':<24}{'texts/s':>9}{'tokens/s':>10}{'padded':>8}{'GFLOP/s':>9}{'%peak':>7}"
            f"{'x book':>8}{'x st_torch':>11}{'x peer':>8}  {'best peer':<17}{'min cos':>9}{'F1':>8}")
    lines = []
    if "machine" in r:
        lines.append(header(r["machine"]))
    lines.append(f"extraction benchmark: {r['subset']['n_texts']} texts, {r['subset']['real_tokens']} real tokens, "
                 f"default dtype {r['default_dtype']}")
    lines.append(_peak_line(r))
    if "conditions" in r:
        lines.append(f"model: {r['conditions']['model']}; device: {r['conditions']['device']}")
    lines.append(head)

    def row(name: str, e: dict) -> str:
        def f(key, fmt, width):
            v = e.get(key)
            return format(v, fmt).rjust(width) if isinstance(v, (int, float)) else "-".rjust(width)
        return (f"{name:<24}{f('texts_per_s', '.1f', 9)}{f('real_tokens_per_s', '.0f', 10)}"
                f"{f('padded_fraction', '.1%', 8)}{f('gflops', '.1f', 9)}{f('peak_fraction', '.0%', 7)}"
                f"{f('ratio_vs_book', '.2f', 8)}{f('ratio_vs_st', '.2f', 11)}{f('ratio_vs_best_peer', '.2f', 8)}"
                f"  {e.get('best_peer') or '-':<17}{f('min_cosine_vs_fp32', '.4f', 9)}{f('test_macro_f1', '.4f', 8)}")

    if "book" in r:
        lines.append(row("book", r["book"]))
    nominal = {"fp32": "float32", "int8": "int8"}
    for name, e in r.get("peers", {}).items():  # OpenVINO may run an fp32 or int8 model's float parts in bf16
        runs = (e.get("inference_precision") or "").lower()
        lines.append(row(f"{name}, {runs}" if runs and nominal.get(runs) != e["precision"] and runs != "f32"
                         else name, e))
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
