"""Fine-tune the run's encoder end to end, scored exactly like the frozen-feature models.

    probekit finetune --config configs/demo.toml        (or: make finetune)

``AutoModelForSequenceClassification`` on ``[finetune] model`` (default: the run's
``[encoder] model``), trained on the same data, labels and splits as the feature cache
(``extract.data.load`` with the run's ``[data]``): BCE with logits for multi-label data,
cross entropy for single-label, optionally per-label ``pos_weight`` / balanced class
weights or a focal loss; AdamW with linear warmup and decay; optionally the head alone
first with the encoder frozen (``head_epochs``), then everything at ``lr``. Validation is
scored after every epoch; the best epoch's weights are kept and training stops after
``patience`` epochs without a better one.

The kept model is scored by classify's own code: per-label thresholds tuned on
validation (classify.thresholds), test scored once (classify.metrics), bootstrap
intervals and paired comparisons with every other model (classify.compare).

    <run>/finetuned/                    the best checkpoint: model.safetensors, config.json, tokenizer
    <run>/finetuned/result.json         its metrics.json entry (with the run key and the training history)
    <run>/scores/finetuned.<split>.npy  float32 (n_rows, n_labels) probabilities (validation, test)
    <run>/metrics.json                  model "finetuned" beside the classify models

Everything is written under ``<run>/finetuned.partial/`` first and renamed when complete:
a killed run never leaves a checkpoint that a later run (or predict) trusts. A rerun with
the same model, data, settings and seed reuses the finished checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from probekit.core.config import Config
from probekit.core.errors import ProbekitError
from probekit.core.runfolder import cache_key, scores_path, write_json_atomic, write_scores
from probekit.core.thresholds import tune_thresholds
from probekit.stages.classify.compare import merge_model, split_block
from probekit.stages.extract import data as data_mod
from probekit.stages.extract.encode import model_identity, pick_device, remote_code_error, resolve_model

logger = logging.getLogger(__name__)

MODEL_NAME = "finetuned"
DIRNAME = "finetuned"
RESULT_NAME = "result.json"
SPLITS = ("train", "validation", "test")
# config attributes that hold a dropout probability, across BERT-, DistilBERT- and RoBERTa-style models
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                "seq_classif_dropout", "classifier_dropout")


def label_matrix(y: np.ndarray, n_labels: int) -> np.ndarray:
    """(n, n_labels) 0/1 labels from class ids (single-label) or the 0/1 matrix itself (multi-label)."""
    return np.eye(n_labels, dtype=np.uint8)[y] if y.ndim == 1 else np.asarray(y, dtype=np.uint8)


def finetuned_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / DIRNAME


def read_result(run_dir: str | Path) -> dict | None:
    """The finished fine-tuned model's metrics.json entry, or None when there is none."""
    path = finetuned_dir(run_dir) / RESULT_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _amp_dtype(name: str, device: str) -> str:
    import torch

    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def _autocast(device: str, dtype: str):
    import torch

    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=getattr(torch, dtype))


def make_loss(kind: str, problem_type: str, Y_train: np.ndarray, max_pos_weight: float, gamma: float, device: str):
    """loss(logits, labels) -> scalar: the configured remedy for class imbalance.

    Args:
        kind: "none", "pos_weight" (multi-label: BCE with each label's negatives/positives,
            clipped to [1, max_pos_weight]; single-label: balanced class weights) or "focal".
        Y_train: train labels as a (n, L) 0/1 matrix.
    """
    import torch
    import torch.nn.functional as F

    pos = Y_train.sum(axis=0).astype(np.float64)
    n = len(Y_train)
    if problem_type == "multi_label":
        ratio = np.divide(n - pos, pos, out=np.full_like(pos, max_pos_weight), where=pos > 0)
        pos_weight = torch.tensor(np.clip(ratio, 1.0, max_pos_weight), dtype=torch.float32, device=device)

        def loss(logits, labels):
            if kind == "pos_weight":
                return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
            bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
            if kind == "focal":  # down-weights the cells the model already gets right
                return ((1 - torch.exp(-bce)) ** gamma * bce).mean()
            return bce.mean()
    else:
        balanced = np.divide(n, len(pos) * pos, out=np.zeros_like(pos), where=pos > 0)
        weight = torch.tensor(balanced, dtype=torch.float32, device=device) if kind == "pos_weight" else None

        def loss(logits, labels):
            ce = F.cross_entropy(logits, labels, weight=weight, reduction="none" if kind == "focal" else "mean")
            return ((1 - torch.exp(-ce)) ** gamma * ce).mean() if kind == "focal" else ce
    return loss


class Trainer:
    """One fine-tuning run: the model, its rows, the loss, the loop and validation."""

    def __init__(self, cfg: Config, ds, path: str, local: bool, device: str):
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

        ft = self.ft = cfg.finetune
        self.cfg, self.ds, self.device = cfg, ds, device
        self.amp = _amp_dtype(ft.dtype, device)
        self.multi = ds.problem_type == "multi_label"
        self.names = ds.label_names
        self.max_length = ft.max_length or cfg.encoder.max_length
        kw = {"local_files_only": True} if local else {"revision": cfg.encoder.revision}
        kw["trust_remote_code"] = cfg.trust_remote_code  # only the command-line flag sets it
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kw)
            config = AutoConfig.from_pretrained(
                path, num_labels=len(self.names), id2label=dict(enumerate(self.names)),
                label2id={n: k for k, n in enumerate(self.names)},
                problem_type="multi_label_classification" if self.multi else "single_label_classification", **kw)
            if ft.dropout >= 0:
                for key in DROPOUT_KEYS:
                    if hasattr(config, key):
                        setattr(config, key, ft.dropout)
            quiet = logging.getLogger("transformers")
            level = quiet.level
            quiet.setLevel(logging.ERROR)  # its load report says the head is new; we log that below
            try:
                self.model, info = AutoModelForSequenceClassification.from_pretrained(
                    path, config=config, output_loading_info=True, **kw)
            finally:
                quiet.setLevel(level)
        except OSError as e:
            raise ProbekitError(f"[finetune] model={path!r}: cannot load it: {str(e).splitlines()[0][:200]}") from None
        except ValueError as e:  # transformers refusing a model's own code without trust_remote_code
            raise remote_code_error(cfg.encoder, e) from None
        if not self.tokenizer.is_fast:
            raise ProbekitError(f"[finetune] model={path!r} has no fast tokenizer (tokenizer.json); "
                                "probekit needs one.")
        # what the checkpoint did not hold (the classification head, a missing pooler): trained from the start
        self.new_params = set(info.get("missing_keys") or ())
        logger.info("finetune: newly initialised (not in the checkpoint): %s",
                    ", ".join(sorted(self.new_params)) or "none")
        self.model.to(device)
        self.collate = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=8 if device != "cpu" else None)
        self.rows = {s: self._rows(ds.splits[s].texts) for s in SPLITS}
        self.Y = {s: label_matrix(ds.splits[s].y, len(self.names)) for s in SPLITS}
        self.train_idx = np.arange(len(self.rows["train"]))
        if 0 < ft.max_train_rows < len(self.train_idx):
            rng = np.random.default_rng(cfg.run.seed)
            self.train_idx = np.sort(rng.choice(len(self.train_idx), ft.max_train_rows, replace=False))
        Y_train = self.Y["train"][self.train_idx]
        self.loss_fn = make_loss(ft.imbalance, ds.problem_type, Y_train, ft.max_pos_weight, ft.focal_gamma, device)
        self.scaler = torch.amp.GradScaler(device.split(":")[0], enabled=self.amp == "float16")
        self.history: list[dict] = []
        self.step = 0

    def _is_head(self, name: str) -> bool:
        """Whether a parameter belongs to the head: new (not in the checkpoint) or outside the base model."""
        return name in self.new_params or not name.startswith(self.model.base_model_prefix + ".")

    def _rows(self, texts: list[str]) -> list[dict]:
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        keys = [k for k in enc.keys() if k in ("input_ids", "attention_mask", "token_type_ids")]
        return [{k: enc[k][i] for k in keys} for i in range(len(texts))]

    def _label(self, i: int):
        y = self.ds.splits["train"].y[i]
        return [float(v) for v in y] if self.multi else int(y)

    # ---- the loop ------------------------------------------------------------------------

    def _phase(self, name: str, epochs: int, lr: float) -> bool:
        """Train `epochs` epochs; True when early stopping or max_steps ended the run."""
        import torch
        from torch.utils.data import DataLoader
        from transformers import get_linear_schedule_with_warmup
        from transformers.trainer_pt_utils import LengthGroupedSampler

        ft = self.ft
        head_only = name == "head"
        for pname, p in self.model.named_parameters():
            p.requires_grad_(not head_only or self._is_head(pname))
        trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = {}  # (is the head, decays) -> parameters: the new head learns at head_lr in both phases
        for n, p in trainable:
            head = self._is_head(n)
            groups.setdefault((head, not (n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n)), []).append(p)
        optimizer = torch.optim.AdamW([{"params": ps, "lr": ft.head_lr if head else lr,
                                        "weight_decay": ft.weight_decay if decays else 0.0}
                                       for (head, decays), ps in groups.items()])
        items = [{**self.rows["train"][i], "labels": self._label(i)} for i in self.train_idx]
        generator = torch.Generator().manual_seed(self.cfg.run.seed + len(self.history))
        sampler = LengthGroupedSampler(ft.batch_size, lengths=[len(r["input_ids"]) for r in items],
                                       generator=generator)
        loader = DataLoader(items, batch_size=ft.batch_size, sampler=sampler, collate_fn=self.collate,
                            pin_memory=self.device.startswith("cuda"))  # pinned: the non-blocking copies overlap
        steps_per_epoch = math.ceil(len(loader) / ft.grad_accum)
        total = steps_per_epoch * epochs
        if ft.max_steps:
            total = min(total, max(ft.max_steps - self.step, 1))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(ft.warmup_ratio * total), total)
        logger.info("finetune: %s: %d epochs of %d steps (%d rows, batch %d x %d), lr %g (head %g), %d tensors "
                    "trained", "head only (encoder frozen)" if head_only else "all weights", epochs, steps_per_epoch,
                    len(items), ft.batch_size, ft.grad_accum, lr, ft.head_lr, len(trainable))
        bad_epochs = 0
        for _ in range(epochs):
            self.model.train()
            t0, losses, seen = time.perf_counter(), [], 0
            bar = tqdm(loader, desc=f"finetune epoch {len(self.history) + 1}", unit="batch", leave=False,
                       disable=not logger.isEnabledFor(logging.INFO))
            optimizer.zero_grad(set_to_none=True)
            for b, batch in enumerate(bar):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                labels = batch.pop("labels")
                with _autocast(self.device, self.amp):
                    logits = self.model(**batch).logits
                loss = self.loss_fn(logits.float(), labels.float() if self.multi else labels)
                if not torch.isfinite(loss):
                    raise ProbekitError(f"finetune: the loss became {loss.item()} at step {self.step}; "
                                        "lower [finetune] lr (or use dtype='float32').")
                self.scaler.scale(loss / ft.grad_accum).backward()
                losses.append(loss.item())
                seen += len(labels)
                if (b + 1) % ft.grad_accum == 0 or b + 1 == len(loader):
                    self.scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_([p for _, p in trainable], ft.max_grad_norm)
                    self.scaler.step(optimizer)
                    self.scaler.update()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    self.step += 1
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
                    if ft.max_steps and self.step >= ft.max_steps:
                        break
            train_s = time.perf_counter() - t0
            improved = self._validate(name, float(np.mean(losses)), seen, train_s, lr)
            bad_epochs = 0 if improved else bad_epochs + 1
            if ft.max_steps and self.step >= ft.max_steps:
                logger.info("finetune: stopping at max_steps=%d", ft.max_steps)
                return True
            if not head_only and ft.patience and bad_epochs >= ft.patience:
                logger.info("finetune: early stop: validation %s has not improved for %d epochs", ft.metric,
                            bad_epochs)
                return True
        return False

    def _validate(self, phase: str, train_loss: float, seen: int, train_s: float, lr: float) -> bool:
        P = self.predict("validation")
        thr = tuned_thresholds(self.Y["validation"], P, self.ds.problem_type, self.cfg.classify.thresholds)
        block = split_block(self.Y["validation"], P, self.ds.problem_type, self.names, self.cfg.classify.threshold, thr)
        value = block["tuned"][self.ft.metric]
        value = -1.0 if value is None else value
        best = max((h["validation_metric"] for h in self.history), default=-math.inf)
        improved = value > best
        self.history.append({
            "epoch": len(self.history) + 1, "phase": phase, "step": self.step, "lr": lr, "train_loss": train_loss,
            "train_examples": seen, "train_seconds": round(train_s, 3),
            "validation_loss": self.validation_loss(P),
            **{f"validation_{k}": block["tuned"][k] for k in ("macro_f1", "micro_f1", "macro_auc", "micro_auc")},
            "validation_metric": value, "best": improved,
        })
        h = self.history[-1]
        logger.info("finetune: epoch %d (%s): train loss %.4f, validation loss %.4f, macro-F1 %.3f, macro AUC %s%s",
                    h["epoch"], phase, train_loss, h["validation_loss"], h["validation_macro_f1"],
                    _fmt(h["validation_macro_auc"]),
                    "  (best so far: kept)" if improved else "")
        if improved:
            self.save(self.staging / "checkpoint")
            self.best_P_val = P  # the kept checkpoint's validation scores: not computed again
        return improved

    def validation_loss(self, P: np.ndarray) -> float:
        """The unweighted loss on validation (BCE or cross entropy of the probabilities)."""
        Y = self.Y["validation"].astype(np.float64)
        P = np.clip(P.astype(np.float64), 1e-7, 1 - 1e-7)
        if self.multi:
            return float(-(Y * np.log(P) + (1 - Y) * np.log(1 - P)).mean())
        return float(-(Y * np.log(P)).sum(axis=1).mean())

    def predict(self, split: str) -> np.ndarray:
        return predict_rows(self.model, self.rows[split], self.collate, self.ft.eval_batch_size, self.device,
                            self.amp, self.multi, desc=f"finetune {split}")

    def save(self, where: Path) -> None:
        if where.exists():
            shutil.rmtree(where)
        self.model.save_pretrained(where)
        self.tokenizer.save_pretrained(where)

    def fit(self, staging: Path) -> float:
        """Run the phases; return the training seconds. The best checkpoint is in staging/checkpoint."""
        self.staging = staging
        ft = self.ft
        phases = [("head", ft.head_epochs, ft.head_lr)] if ft.head_epochs else []
        if ft.epochs > ft.head_epochs:
            phases.append(("all", ft.epochs - ft.head_epochs, ft.lr))
        t0 = time.perf_counter()
        for name, epochs, lr in phases:
            if self._phase(name, epochs, lr):
                break
        return time.perf_counter() - t0


def tuned_thresholds(Y_val: np.ndarray, P_val: np.ndarray, problem_type: str, mode: str) -> np.ndarray | None:
    """Per-label thresholds from validation, as classify tunes them (multi-label, thresholds='tune')."""
    return tune_thresholds(Y_val, P_val) if problem_type == "multi_label" and mode == "tune" else None


def predict_rows(model, rows: list[dict], collate, batch_size: int, device: str, amp: str, multi: bool,
                 desc: str = "predict") -> np.ndarray:
    """Probabilities (n, L) of tokenized rows: length-sorted batches, returned in row order."""
    import torch

    model.eval()
    order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")
    out = np.empty((len(rows), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch", leave=False,
                          disable=not logger.isEnabledFor(logging.INFO) or len(rows) <= batch_size):
            idx = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate([rows[i] for i in idx]).items()}
            with _autocast(device, amp):
                logits = model(**batch).logits.float()
            p = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)
            out[idx] = p.cpu().numpy()
    return out


def run_key(cfg: Config, model_id: str, revision: str, ds) -> str:
    """Everything that determines the fine-tuned model: reuse the checkpoint only when it matches."""
    return cache_key({"model_id": model_id, "model_revision": revision, "finetune": dataclasses.asdict(cfg.finetune),
                      "max_length": cfg.finetune.max_length or cfg.encoder.max_length, "seed": cfg.run.seed,
                      "thresholds": cfg.classify.thresholds, "threshold": cfg.classify.threshold,
                      "dataset_fingerprint": ds.fingerprints, "label_names": ds.label_names})


def run_finetune(cfg: Config) -> Path:
    """Fine-tune, keep the best checkpoint, score it, add it to metrics.json; return the checkpoint folder."""
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
    out = finetuned_dir(run_dir)
    done = read_result(run_dir)
    Y = {s: label_matrix(ds.splits[s].y, len(ds.label_names)) for s in SPLITS}
    n_rows = {s: len(ds.splits[s].texts) for s in SPLITS}
    merge = dict(Y_test=Y["test"], label_names=ds.label_names, problem_type=ds.problem_type, n_rows=n_rows,
                 cfg=cfg.classify, seed=cfg.run.seed, run_name=cfg.run.name)
    if done and done.get("run_key") == key and all(scores_path(run_dir, MODEL_NAME, s).is_file()
                                                   for s in ("validation", "test")):
        logger.info("finetune: reusing %s (run key %s matches)", out, key)
        merge_model(run_dir, MODEL_NAME, done, **merge)
        return out

    set_seed(cfg.run.seed)
    if device == "cpu":
        torch.set_num_threads(ft.num_threads or len(os.sched_getaffinity(0)))
    staging = run_dir / f"{DIRNAME}.partial"
    if staging.exists():
        logger.info("finetune: discarding %s left by an interrupted run", staging)
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    trainer = Trainer(cfg, ds, path, local, device)
    logger.info("finetune: %s on %s (%s), %d labels, %s, train %d of %d rows", model_id, device, trainer.amp,
                len(ds.label_names), ds.problem_type, len(trainer.train_idx), n_rows["train"])
    train_s = trainer.fit(staging)

    from transformers import AutoModelForSequenceClassification

    best = next(h for h in reversed(trainer.history) if h["best"])
    trainer.model = AutoModelForSequenceClassification.from_pretrained(staging / "checkpoint").to(device)
    t = time.perf_counter()
    P = {"validation": trainer.best_P_val, "test": trainer.predict("test")}
    predict_s = time.perf_counter() - t  # the test split, as classify's predict_seconds
    thr = tuned_thresholds(Y["validation"], P["validation"], ds.problem_type, cfg.classify.thresholds)
    blocks = {s: split_block(Y[s], P[s], ds.problem_type, ds.label_names, cfg.classify.threshold, thr)
              for s in ("validation", "test")}
    examples = sum(h["train_examples"] for h in trainer.history)
    entry = {
        "fit_seconds": round(train_s, 3),
        "predict_seconds": round(predict_s, 3),
        "threshold": cfg.classify.threshold,
        "thresholds": None if thr is None else dict(zip(ds.label_names, map(float, thr))),
        "feature_set": None,
        "input": "texts",
        # the settings that shape the model (shown in the report); `config` holds every [finetune] key
        "params": {"model_id": model_id, "epochs": len(trainer.history), "lr": ft.lr,
                   "batch_size": ft.batch_size * ft.grad_accum, "head_epochs": ft.head_epochs,
                   "imbalance": ft.imbalance, "max_length": trainer.max_length, "amp_dtype": trainer.amp},
        "config": {**dataclasses.asdict(ft), "device": device, "model_revision": revision},
        "validation": blocks["validation"],
        "test": blocks["test"],
        "selection": {"metric": f"validation {ft.metric} per epoch (early stopping); scored like classify: "
                                "validation macro_f1 (tuned thresholds)",
                      "chosen": {"epoch": best["epoch"], "step": best["step"]},
                      "validation_score": blocks["validation"]["tuned"]["macro_f1"],
                      "n_candidates": len(trainer.history), "seconds": round(train_s, 3),
                      "grid": [{"epoch": h["epoch"], "validation_score": h["validation_metric"]}
                               for h in trainer.history]},
        "history": trainer.history,
        "train_rows": int(len(trainer.train_idx)),
        "seconds_per_1000_train_examples": round(1000 * train_s / max(examples, 1), 2),
        "checkpoint": DIRNAME,
        "run_key": key,
        "dataset_fingerprint": ds.fingerprints,
    }
    ckpt = staging / "checkpoint"
    for f in ckpt.iterdir():  # the checkpoint's files become the folder's
        f.rename(staging / f.name)
    ckpt.rmdir()
    write_json_atomic(staging / RESULT_NAME, entry)
    old = run_dir / f"{DIRNAME}.old"
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    for s, p in P.items():
        write_scores(run_dir, MODEL_NAME, s, p)
    merge_model(run_dir, MODEL_NAME, entry, **merge)
    tuned = blocks["test"]["tuned"]
    logger.info("finetune: best epoch %d; test macro-F1 %.3f, micro AUC %s, macro AUC %s; %.1f s per 1,000 "
                "train examples -> %s", best["epoch"], tuned["macro_f1"], _fmt(tuned["micro_auc"]),
                _fmt(tuned["macro_auc"]), entry["seconds_per_1000_train_examples"], out)
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def predict_texts(run_dir: str | Path, texts: list[str], device: str = "auto") -> tuple[np.ndarray, dict]:
    """Probabilities of new texts under the run's fine-tuned model, and its metrics.json entry."""
    import torch  # noqa: F401
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    folder = finetuned_dir(run_dir)
    entry = read_result(run_dir)
    if entry is None:
        raise ProbekitError(f"{folder}: no finished fine-tuned model; run 'make finetune' for this run first.")
    device = pick_device(device)
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).to(device)
    multi = model.config.problem_type == "multi_label_classification"
    params = entry["params"]
    enc = tokenizer(texts, truncation=True, max_length=params["max_length"])
    rows = [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
    amp = params.get("amp_dtype", "float32") if device.startswith("cuda") else "float32"
    batch = entry.get("config", {}).get("eval_batch_size", 64)
    P = predict_rows(model, rows, DataCollatorWithPadding(tokenizer), batch, device, amp, multi)
    return P, entry
