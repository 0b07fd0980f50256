"""``make bench-extract``: probekit's extraction against the book's recipe and sentence-transformers' CPU backends.

    probekit bench-extract --config configs/goemotions-local.toml --data DIR
    make bench-extract DATA=DIR             (GoEmotions' TSVs in DIR; without DATA: the demo data)

On the first ``[bench] n_texts`` train texts, with the same model and threads, it times (a) the
book's recipe, (b) the peers: sentence-transformers on torch, ONNX and OpenVINO, fp32 and int8
(``extract.bench.peers``; run in one worker process in their own venv, ``[bench] peers_python``),
(c) probekit in each of ``[bench] dtypes``, in ``repeats`` interleaved rounds (each method's
fastest round counts). It reports texts/s, real tokens/s, the padded-token fraction, useful
GFLOP/s as a share of a matmul ceiling that holds on a shared machine (``extract.bench.machine``:
fp32 and bf16 peaks sampled through the run, all kept), speed ratios (to the book, to st_torch
and to the fastest peer of the same precision), the cosine to fp32, test macro-F1 of logistic
regression per dtype, the CPU as it reports itself, and the peak RSS of ``probekit extract`` on
all the data vs a quarter of it (``extract.bench.rss``). The data is the config's [data]. The
table (``extract.bench.report``) goes to stdout, the JSON to ``<artifacts>/<[bench] output>``.
A benchmark, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import numpy as np

from probekit.core.config import Config, DataSection
from probekit.core.errors import ConfigError
from probekit.stages.extract import data as data_mod
from probekit.stages.extract.bench.baselines import flop_counter, random_model
from probekit.stages.extract.bench.machine import describe
from probekit.stages.extract.bench.peer_client import open_peers
from probekit.stages.extract.bench.publish import publish
from probekit.stages.extract.bench.report import format_table, summarise
from probekit.stages.extract.bench.rounds import peer_methods, probekit_methods, time_rounds
from probekit.stages.extract.engine.batching import tokenize
from probekit.stages.extract.engine.loading import (
    cpu_threads,
    load_encoder,
    pick_device,
    resolve_dtype,
    resolve_model,
)

logger = logging.getLogger(__name__)

PEER_EXPORTS = "bench/peer_exports"  # under <artifacts>/: the peers' exports, made once and reused
PEER_LOG = "bench/peer_worker.log"  # under <artifacts>/: the peer worker's stderr


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
    peer_names = list(dict.fromkeys(b.peers)) if device == "cpu" else []
    if b.peers and not peer_names:
        logger.info("bench: the peers are CPU backends; not timed on %s", device)
    # the peers first: a missing package or python is one line before any probekit model is built
    runner = open_peers(peer_names, b.peers_python, Path(cfg.run.artifacts) / PEER_LOG) if peer_names else None
    try:
        peer_detail, versions = {}, {}
        if runner is not None:
            built = runner.build(names=peer_names, path=str(Path(path).resolve()), texts=list(texts),
                                 cache_dir=str((Path(cfg.run.artifacts) / PEER_EXPORTS).resolve()),
                                 lengths=[int(n) for n in lengths], max_length=enc.max_length, pooling=enc.pooling,
                                 threads=torch.get_num_threads())
            peer_detail, versions = built["detail"], built["versions"]
        methods, extractors = probekit_methods(cfg, path, local, dtypes, lengths, device)
        with tempfile.TemporaryDirectory(prefix="probekit-bench-peers-") as tmp:
            if runner is not None:
                methods.update(peer_methods(runner, peer_names, len(texts), Path(tmp)))
            seconds, features, padded, samples = time_rounds(methods, texts, b.repeats, b.paired_peak_s, device)
    finally:
        if runner is not None:
            runner.close()
    count = flop_counter(load_encoder(dataclasses.replace(enc, fuse_layers=False), path, local, "cpu")[1])
    executed = {d: count(lengths, ex.first_token_only) for d, ex in extractors.items()}
    result = summarise(len(texts), lengths, samples, seconds, padded, features, count(lengths), default, dtypes,
                       executed, peer_detail, describe())
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
        "torch": torch.__version__, "peers_python": b.peers_python or "(this process)",
    }
    if peer_detail:
        result["conditions"]["peer_versions"] = versions
    return publish(result, Path(cfg.run.artifacts) / b.output, format_table)


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
