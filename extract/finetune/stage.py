"""The fine-tuning stage: train, keep the best epoch, write ``<run>/finetuned/`` and nothing else.

``[finetune] name`` writes ``<run>/finetuned-<name>/`` instead, so a run folder can hold several
variants (all layers, the top K); the layout below is the same for each.

    probekit finetune --config configs/demo.toml        (or: make finetune, then make classify)

    <run>/finetuned/                         the best checkpoint: model.safetensors, config.json, tokenizer
    <run>/finetuned/result.json              what made it and how training went (no metrics)
    <run>/finetuned/scores/<split>.npy       float32 (n_rows, n_labels) probabilities (validation, test)

The stage never touches metrics.json or ``<run>/scores/``: classify gathers this folder
(classify/compare.py, :func:`gather_finetuned`) and scores the model with the same code as
its own. Everything is written under ``<run>/finetuned.partial/`` first and renamed when
complete, so a killed run never leaves a checkpoint that a later run (or predict) trusts.
A rerun with the same model, data, settings and seed reuses the finished checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from probekit.core.config import Config
from probekit.core.metrics import is_binary
from probekit.core.runfolder import (
    FINETUNED_RESULT,
    FINETUNED_SCORED_SPLITS,
    SPLITS,
    cache_key,
    finetuned_dir,
    finetuned_scores_name,
    finetuned_scores_path,
    write_json_atomic,
)
from probekit.core.sections_tools import finetune_metric
from probekit.stages.extract import data as data_mod
from probekit.stages.extract.engine.loading import model_identity, pick_device, resolve_model
from probekit.stages.extract.finetune.steps import fmt_score
from probekit.stages.extract.finetune.trainer import Trainer

logger = logging.getLogger(__name__)

RESULT_SCHEMA_VERSION = 2  # 2: no metrics inside; the probabilities in finetuned/scores/


def read_result(run_dir: str | Path, name: str = "") -> dict | None:
    """The finished fine-tuned model's result.json (``finetuned/`` or ``finetuned-<name>/``), or None."""
    path = finetuned_dir(run_dir, name) / FINETUNED_RESULT
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def run_key(cfg: Config, model_id: str, revision: str, ds) -> str:
    """Everything that determines the fine-tuned model: reuse the checkpoint only when it matches.

    The classify threshold settings are part of it: early stopping picks the epoch by a
    validation metric computed with them.
    """
    settings = {k: v for k, v in dataclasses.asdict(cfg.finetune).items() if k != "name"}  # name: only the folder
    settings["metric"] = finetune_metric(cfg.finetune.metric, is_binary(ds.label_names, ds.problem_type))
    return cache_key({"model_id": model_id, "model_revision": revision, "finetune": settings,
                      "max_length": cfg.finetune.max_length or cfg.encoder.max_length, "seed": cfg.run.seed,
                      "thresholds": cfg.classify.thresholds, "threshold": cfg.classify.threshold,
                      "dataset_fingerprint": ds.fingerprints, "label_names": ds.label_names})


def _save_scores(folder: Path, P: dict[str, np.ndarray]) -> None:
    for split, p in P.items():
        path = folder / finetuned_scores_name(split)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # inside the staging folder: the rename makes it final
            np.save(f, np.asarray(p, dtype=np.float32), allow_pickle=False)


def run_finetune(cfg: Config) -> Path:
    """Fine-tune, keep the best checkpoint and its validation/test probabilities; return the folder."""
    import torch
    from transformers import set_seed

    ft = cfg.finetune
    enc = dataclasses.replace(cfg.encoder, model=ft.model or cfg.encoder.model)
    path, local = resolve_model(enc)
    if local and cfg.data.source == "local":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    device = pick_device(ft.device)
    ds = data_mod.load(cfg.data)
    model_id, revision = model_identity(enc, path, local, cfg.trust_remote_code)
    key = run_key(cfg, model_id, revision, ds)
    run_dir = cfg.run_dir
    out = finetuned_dir(run_dir, ft.name)
    done = read_result(run_dir, ft.name)
    if done and done.get("run_key") == key and all(finetuned_scores_path(run_dir, s, ft.name).is_file()
                                                   for s in FINETUNED_SCORED_SPLITS):
        logger.info("finetune: reusing %s (run key %s matches)", out, key)
        return out

    t_start = time.perf_counter()
    set_seed(cfg.run.seed)
    if device == "cpu":
        torch.set_num_threads(ft.num_threads or len(os.sched_getaffinity(0)))
    staging = run_dir / f"{out.name}.partial"
    if staging.exists():
        logger.info("finetune: discarding %s left by an interrupted run", staging)
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    trainer = Trainer(cfg, ds, path, local, device)
    n_rows = {s: len(ds.splits[s].texts) for s in SPLITS}
    logger.info("finetune: %s on %s (%s), %d labels, %s, train %d of %d rows, %s", model_id, device, trainer.amp,
                len(ds.label_names), ds.problem_type, len(trainer.train_idx), n_rows["train"],
                f"top {ft.train_layers} layers trained" if ft.train_layers else "every layer trained")
    train_s = trainer.fit(staging)

    from transformers import AutoModelForSequenceClassification

    best = next(h for h in reversed(trainer.history) if h["best"])
    trainer.model = AutoModelForSequenceClassification.from_pretrained(staging / "checkpoint").to(device)
    t = time.perf_counter()
    P = {"validation": trainer.best_P_val, "test": trainer.predict("test")}
    predict_s = time.perf_counter() - t  # the test split, as classify's predict_seconds
    examples = sum(h["train_examples"] for h in trainer.history)
    step_s = sum(h["train_seconds"] for h in trainer.history)  # the training steps alone, no validation
    result = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "run_key": key,
        "model_id": model_id,
        "model_revision": revision,
        "dataset_fingerprint": ds.fingerprints,
        "label_names": list(ds.label_names),
        "problem_type": ds.problem_type,
        "n_rows": n_rows,
        "train_rows": int(len(trainer.train_idx)),
        # the settings that shape the model (shown in the report); `config` holds every [finetune] key
        "params": {"model_id": model_id, "epochs": len(trainer.history), "lr": ft.lr,
                   "batch_size": ft.batch_size * ft.grad_accum, "head_epochs": ft.head_epochs,
                   "imbalance": ft.imbalance, "max_length": trainer.max_length, "amp_dtype": trainer.amp,
                   "train_layers": ft.train_layers},
        "config": {**dataclasses.asdict(ft), "metric": trainer.metric, "device": device, "model_revision": revision},
        "chosen": {"epoch": best["epoch"], "step": best["step"]},
        "history": trainer.history,
        "fit_seconds": round(train_s, 3),
        "predict_seconds": round(predict_s, 3),
        "seconds_per_1000_train_examples": round(1000 * step_s / max(examples, 1), 2),
        # what it cost: the training steps' rate, where and in what, and the whole stage's wall clock
        "examples_per_s": round(examples / max(step_s, 1e-9), 2),
        "device": device, "dtype": trainer.amp, "train_layers": ft.train_layers,
        "frozen_states_seconds": round(trainer.state_seconds, 3),
        "wall_minutes": round((time.perf_counter() - t_start) / 60, 3),
    }
    ckpt = staging / "checkpoint"
    for f in ckpt.iterdir():  # the checkpoint's files become the folder's
        f.rename(staging / f.name)
    ckpt.rmdir()
    _save_scores(staging, P)
    write_json_atomic(staging / FINETUNED_RESULT, result)
    old = run_dir / f"{out.name}.old"
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    logger.info("finetune: best epoch %d (validation %s %s); %.1f examples/s (%.1f s per 1,000), %.1f min in all "
                "-> %s; run classify to score it beside the other models", best["epoch"], trainer.metric,
                fmt_score(best["validation_metric"]), result["examples_per_s"],
                result["seconds_per_1000_train_examples"], result["wall_minutes"], out)
    return out
