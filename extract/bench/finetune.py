"""``make bench-finetune``: probekit's fine-tuning against Hugging Face's Trainer, side by side.

    probekit bench-finetune --config configs/goemotions-local.toml --data DIR
    make bench-finetune DATA=DIR            (GoEmotions' TSVs in DIR; without DATA: the demo data)

On the first ``[bench] finetune_rows`` train texts and the first ``finetune_validation_rows``
validation texts of the config's [data], one epoch each, batch ``[finetune] batch_size``, the
same seed and learning rates: ``hf_trainer`` (extract.bench.finetune_hf), ``probekit.float32``
and ``probekit.<default dtype>`` (``[finetune] dtype = "auto"`` on this device). The methods
take interleaved turns of ``finetune_turn_steps`` steps (one at a time, each in its thread),
and this machine's fp32 and bf16 matmul peaks are sampled after every round of turns. Each
method's share is taken against its own precision's ceiling: the highest of that precision's
samples and methods (extract.bench.machine.ceiling), so no share exceeds 100% (the bf16
share is null on a CPU that emulates bf16, whose bf16 matmul is slower than fp32). Per method:
examples/s, the ratio to HF, useful GFLOP/s (6 x non-embedding parameters x real tokens/s),
its share of each peak, validation macro-F1 after the epoch (thresholds tuned on
validation, as classify does) and the process's RSS. The JSON goes to
``<artifacts>/<[bench] finetune_output>``, the table (extract.bench.finetune_report) to stdout.
A benchmark, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
from pathlib import Path

from probekit.core.config import Config
from probekit.core.runfolder import SPLITS
from probekit.stages.extract import data as data_mod
from probekit.stages.extract.bench.baselines import peak_gflops
from probekit.stages.extract.bench.finetune_hf import Turns, hf_predict, hf_trainer
from probekit.stages.extract.bench.finetune_report import format_table, summarise
from probekit.stages.extract.bench.publish import publish
from probekit.stages.extract.bench.run import bench_data
from probekit.stages.extract.dataset import Dataset, Split

logger = logging.getLogger(__name__)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB (Linux; zeros elsewhere)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError):
        return 0.0, 0.0


def subset(ds: Dataset, n_train: int, n_val: int) -> Dataset:
    """The first n_train train rows and the first n_val validation (and test) rows."""
    cut = {"train": n_train, "validation": n_val, "test": n_val}
    splits = {s: Split(ds.splits[s].texts[:cut[s]], ds.splits[s].ids[:cut[s]], ds.splits[s].y[:cut[s]])
              for s in SPLITS}
    return dataclasses.replace(ds, splits=splits)


def _bench_config(cfg: Config, dtype: str) -> Config:
    ft = dataclasses.replace(cfg.finetune, epochs=1, head_epochs=0, patience=0, max_steps=0, max_train_rows=0,
                             dtype=dtype, device="cpu", train_layers=0)
    return dataclasses.replace(cfg, finetune=ft)


def run_bench_finetune(cfg: Config) -> dict:
    """Run the benchmark; print the table, write and return the JSON."""
    import torch
    from transformers import set_seed

    from probekit.stages.extract.engine.loading import resolve_model
    from probekit.stages.extract.finetune.steps import amp_dtype, validation_scores
    from probekit.stages.extract.finetune.trainer import Trainer

    b = cfg.bench
    data_cfg = bench_data(cfg)
    enc = dataclasses.replace(cfg.encoder, model=cfg.finetune.model or cfg.encoder.model)
    path, local = resolve_model(enc)
    ds = subset(data_mod.load(data_cfg), b.finetune_rows, b.finetune_validation_rows)
    threads = cfg.finetune.num_threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    default = amp_dtype("auto", "cpu")
    dtypes = list(dict.fromkeys(["float32", default]))
    multi = ds.problem_type == "multi_label"
    names = ["hf_trainer", *[f"probekit.{d}" for d in dtypes]]
    peaks = {"float32": [], "bfloat16": []}

    def sample_peaks():
        peaks["float32"].append(peak_gflops("float32", 2048, repeats=3))
        # 512: enough for a CPU with native bf16, and seconds rather than minutes on one that emulates it
        peaks["bfloat16"].append(peak_gflops("bfloat16", 512, repeats=2))

    sample_peaks()
    turns = Turns(names, b.finetune_turn_steps, sample_peaks)
    results: dict = {}
    errors: list = []
    staging = Path(tempfile.mkdtemp(prefix="probekit-bench-ft-"))

    trainers = {}
    for d in dtypes:  # built before any clock starts: tokenizing is part of neither side's epoch
        set_seed(cfg.run.seed)
        trainers[d] = Trainer(_bench_config(cfg, d), ds, path, local, "cpu")
    set_seed(cfg.run.seed)
    from probekit.stages.extract.finetune.steps import load_model

    tokenizer, hf_model, _ = load_model(_bench_config(cfg, "float32"), path, local, ds.label_names, multi)
    max_length = trainers["float32"].max_length
    train, val = ds.splits["train"], ds.splits["validation"]
    hf = hf_trainer(hf_model, tokenizer, train.texts, train.y, multi, cfg.finetune, cfg.run.seed, max_length, turns)
    Y_val = trainers["float32"].Y["validation"]

    def run_hf():
        hf.train()
        P = hf_predict(hf, tokenizer, val.texts, max_length, multi)
        f1 = validation_scores(Y_val, P, ds.problem_type, ds.label_names, cfg.classify)["macro_f1"]
        results["hf_trainer"] = {"validation_macro_f1": f1}

    def run_probekit(d):
        t = trainers[d]
        t.on_step = lambda _: turns.tick(f"probekit.{d}")
        turns.wait(f"probekit.{d}")
        t.fit(staging / d)
        results[f"probekit.{d}"] = {"validation_macro_f1": t.history[-1]["validation_macro_f1"]}

    def thread(name, fn, *args):
        def body():
            torch.set_num_threads(threads)
            try:
                fn(*args)
                results[name]["rss_mb"] = round(rss_mb()[0], 1)
            except BaseException as e:  # reported after the others finish
                errors.append((name, e))
            finally:
                turns.finish(name)
        return threading.Thread(target=body, name=f"bench-{name}")

    workers = [thread("hf_trainer", run_hf), *[thread(f"probekit.{d}", run_probekit, d) for d in dtypes]]
    logger.info("bench-finetune: %d train / %d validation texts, %s, turns of %d steps, %d threads", len(train.texts),
                len(val.texts), ", ".join(names), b.finetune_turn_steps, threads)
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sample_peaks()
    if errors:
        raise errors[0][1]
    tok = trainers["float32"].tok["train"]
    model = trainers["float32"].model
    embed = sum(p.numel() for p in model.base_model.embeddings.parameters())
    non_embedding = sum(p.numel() for p in model.parameters()) - embed
    for name in names:
        results[name]["seconds"] = round(turns.active[name], 3)
    result = summarise(results, len(train.texts), int(tok.lengths.sum()), non_embedding,
                       peaks, default)
    result["peak_rss_mb"] = round(rss_mb()[1], 1)
    result["conditions"] = {"device": "cpu", "threads": threads, "train_rows": len(train.texts),
                            "validation_rows": len(val.texts), "epochs": 1, "batch_size": cfg.finetune.batch_size,
                            "lr": cfg.finetune.lr, "head_lr": cfg.finetune.head_lr, "seed": cfg.run.seed,
                            "max_length": max_length, "model": enc.model, "data": str(data_cfg.path),
                            "turn_steps": b.finetune_turn_steps, "peak_samples": peaks, "torch": torch.__version__}
    return publish(result, Path(cfg.run.artifacts) / b.finetune_output, format_table)
