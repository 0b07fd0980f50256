"""Issue 18: why probekit int8 moves the [CLS] vector more than the int8 peers do.

probekit's ``[encoder] quantize = "int8"`` is torch's dynamic quantisation of every Linear layer
(int8 weights, one scale per tensor; activations quantised per batch). This script quantises the
packaged MiniLM in variants, one lever at a time, and reports for each the min and mean cosine of
its [CLS] vector (the default pooling) to float32's and its speed, on the first N GoEmotions train
texts, with the variants run in interleaved rounds:

* every Linear, per-tensor weights (what probekit does);
* every Linear, per-channel weights (one scale per output row);
* per-tensor, leaving one kind of Linear in float32: query/key/value, the attention output, the
  feed-forward's first (intermediate) or second (output) Linear;
* per-tensor, leaving the last encoder layer in float32.

Run from the repository root:

    .venv/bin/python docs/experiments/int8_sensitivity.py ../shared/data/goemotions 2000

The output of 2026-12-05 is in docs/benchmarks.md ("int8: the measured cause").
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import os
import re
import sys
import time
import warnings

import numpy as np
import torch

from probekit.core.config import load_config
from probekit.stages.extract.engine.loading import load_encoder, make_extractor, resolve_model


def variants(model) -> dict:
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    last = max(int(m.group(1)) for n in linear if (m := re.search(r"layer\.(\d+)\.", n)))

    def quantised(keep=lambda n: True, qconfig=default_dynamic_qconfig):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantize_dynamic(copy.deepcopy(model), {n: qconfig for n in linear if keep(n)}, dtype=torch.qint8)

    return {
        "int8 every Linear (probekit)": quantised(),
        "int8 per-channel weights": quantised(qconfig=per_channel_dynamic_qconfig),
        "int8, q/k/v kept fp32": quantised(lambda n: not re.search(r"\.(query|key|value)$", n)),
        "int8, attention output fp32": quantised(lambda n: not n.endswith("attention.output.dense")),
        "int8, FFN intermediate fp32": quantised(lambda n: not n.endswith("intermediate.dense")),
        "int8, FFN output fp32": quantised(lambda n: not re.search(r"layer\.\d+\.output\.dense$", n)),
        f"int8, layer {last} fp32": quantised(lambda n: f"layer.{last}." not in n),
        "int8 per-channel, FFN output fp32": quantised(lambda n: not re.search(r"layer\.\d+\.output\.dense$", n),
                                                       per_channel_dynamic_qconfig),
    }


def main(data: str, n: int, rounds: int = 2) -> None:
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    cfg = load_config("configs/goemotions-local.toml", [f"data.path={data!r}"])
    enc = cfg.encoder
    with open(f"{data}/train.tsv", encoding="utf-8") as f:
        texts = [row[0] for _, row in zip(range(n), csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))]
    path, local = resolve_model(enc)
    tokenizer, fp32 = load_encoder(dataclasses.replace(enc, fuse_layers=False), path, local, "cpu")
    models = {"float32 (reference)": fp32, **variants(fp32)}
    out, seconds = {}, {k: [] for k in models}
    for _ in range(rounds):
        for name, model in models.items():
            ex = make_extractor(enc, tokenizer, model, "cpu", poolings=["cls"])
            t = time.perf_counter()
            out[name] = ex.encode(texts)[0]["cls"].astype(np.float64)
            seconds[name].append(time.perf_counter() - t)
    ref = out["float32 (reference)"]
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    print(f"{n} GoEmotions train texts, [CLS] of the last layer, best of {rounds} interleaved rounds")
    print(f"{'variant':38s} {'min cos':>8s} {'mean cos':>9s} {'texts/s':>8s}")
    for name, X in out.items():
        cos = (X / np.linalg.norm(X, axis=1, keepdims=True) * ref).sum(1)
        print(f"{name:38s} {cos.min():8.4f} {cos.mean():9.5f} {n / min(seconds[name]):8.1f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
