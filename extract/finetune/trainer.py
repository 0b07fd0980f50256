"""The fine-tuning loop: the model, its tokenized rows, the phases, validation after every epoch.

``Trainer.fit`` runs the head-only phase (encoder frozen) and then every weight, scores
validation after each epoch and saves the best epoch's weights to ``<staging>/checkpoint``.
Early stopping scores validation with the shared metric code (probekit.core.metrics and
.thresholds), the way classify scores its models; the fine-tuning stage writes no metrics
itself: classify scores the kept model from its saved probabilities.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from probekit.core.config import ClassifySection, Config
from probekit.core.errors import ProbekitError
from probekit.core.metrics import score
from probekit.core.runfolder import SPLITS
from probekit.core.thresholds import tune_thresholds
from probekit.stages.extract.engine.loading import remote_code_error
from probekit.stages.extract.finetune.loss import label_matrix, make_loss

logger = logging.getLogger(__name__)

# config attributes that hold a dropout probability, across BERT-, DistilBERT- and RoBERTa-style models
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                "seq_classif_dropout", "classifier_dropout")


def validation_scores(Y: np.ndarray, P: np.ndarray, problem_type: str, names: list[str],
                      cfg: ClassifySection) -> dict:
    """Validation metrics of one epoch: thresholds tuned on these very scores when classify tunes them."""
    tuned = problem_type == "multi_label" and cfg.thresholds == "tune"
    return score(Y, P, problem_type, names, tune_thresholds(Y, P) if tuned else cfg.threshold)


def amp_dtype(name: str, device: str) -> str:
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


class Trainer:
    """One fine-tuning run: the model, its rows, the loss, the loop and validation."""

    def __init__(self, cfg: Config, ds, path: str, local: bool, device: str):
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

        ft = self.ft = cfg.finetune
        self.cfg, self.ds, self.device = cfg, ds, device
        self.amp = amp_dtype(ft.dtype, device)
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
        tuned = validation_scores(self.Y["validation"], P, self.ds.problem_type, self.names, self.cfg.classify)
        value = tuned[self.ft.metric]
        value = -1.0 if value is None else value
        best = max((h["validation_metric"] for h in self.history), default=-math.inf)
        improved = value > best
        self.history.append({
            "epoch": len(self.history) + 1, "phase": phase, "step": self.step, "lr": lr, "train_loss": train_loss,
            "train_examples": seen, "train_seconds": round(train_s, 3),
            "validation_loss": self.validation_loss(P),
            **{f"validation_{k}": tuned[k] for k in ("macro_f1", "micro_f1", "macro_auc", "micro_auc")},
            "validation_metric": value, "best": improved,
        })
        h = self.history[-1]
        logger.info("finetune: epoch %d (%s): train loss %.4f, validation loss %.4f, macro-F1 %.3f, macro AUC %s%s",
                    h["epoch"], phase, train_loss, h["validation_loss"], h["validation_macro_f1"],
                    fmt_score(h["validation_macro_auc"]),
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



def fmt_score(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
