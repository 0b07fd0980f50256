"""The fine-tuning loop: the model, its token arrays, the phases, validation after every epoch.

``Trainer.fit`` runs the head-only phase (encoder frozen) and then the trained layers (all of
them, or the top ``[finetune] train_layers``), scores validation after each epoch and saves
the best epoch's weights to ``<staging>/checkpoint``. What makes a step cheap on a CPU:

* every split tokenized once; batches in Hugging Face's group_by_length order, padded to
  their own longest text from the token arrays (batches.py);
* frozen layers computed once: their output for every train and validation text is kept
  (layers.py, :class:`FrozenStates`), so an epoch runs only the trained layers;
* the last layer computes the [CLS] row alone (what the head reads), and AdamW's fused
  CPU kernel.

Early stopping scores validation with the shared metric code (probekit.core.metrics and
.thresholds), the way classify scores its models; the stage writes no metrics itself.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import probekit.stages.extract.finetune.batches as B
import probekit.stages.extract.finetune.layers as L
from probekit.core.config import Config
from probekit.core.errors import ProbekitError
from probekit.core.metrics import positive_index
from probekit.core.runfolder import SPLITS
from probekit.core.sections_tools import finetune_metric
from probekit.stages.extract.finetune.loss import label_matrix, make_loss
from probekit.stages.extract.finetune.steps import (
    amp_dtype,
    autocast,
    fmt_score,
    load_model,
    probabilities,
    validation_scores,
)

logger = logging.getLogger(__name__)

class Trainer:
    """One fine-tuning run: the model, its token arrays, the loss, the loop and validation.

    ``on_step``: called after every optimiser step (the benchmark takes turns there).
    """

    def __init__(self, cfg: Config, ds, path: str, local: bool, device: str):
        import torch

        ft = self.ft = cfg.finetune
        self.cfg, self.ds, self.device = cfg, ds, device
        self.amp = amp_dtype(ft.dtype, device)
        self.multi = ds.problem_type == "multi_label"
        self.names = ds.label_names
        # binary data: the positive class (classify's), whose F1 `metric` = auto stops on
        self.positive = positive_index(ds.label_names, ds.problem_type, ds.splits["train"].y,
                                       getattr(cfg.data, "positive_label", ""))
        self.metric = finetune_metric(ft.metric, self.positive is not None)
        self.max_length = ft.max_length or cfg.encoder.max_length
        self.tokenizer, self.model, self.new_params = load_model(cfg, path, local, self.names, self.multi)
        # what the checkpoint did not hold (the classification head, a missing pooler): trained from the start
        logger.info("finetune: newly initialised (not in the checkpoint): %s",
                    ", ".join(sorted(self.new_params)) or "none")
        self.n_frozen = L.check_train_layers(self.model, ft.train_layers)
        self.model.to(device)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.type_ids = "token_type_ids" in self.tokenizer.model_input_names
        self.tok = {s: B.tokenize_split(self.tokenizer, ds.splits[s].texts, self.max_length) for s in SPLITS}
        self.Y = {s: label_matrix(ds.splits[s].y, len(self.names)) for s in SPLITS}
        self.train_idx = np.arange(self.tok["train"].n_rows)
        if 0 < ft.max_train_rows < len(self.train_idx):
            rng = np.random.default_rng(cfg.run.seed)
            self.train_idx = np.sort(rng.choice(len(self.train_idx), ft.max_train_rows, replace=False))
        Y_train = self.Y["train"][self.train_idx]
        self.loss_fn = make_loss(ft.imbalance, ds.problem_type, Y_train, ft.max_pos_weight, ft.focal_gamma, device)
        self.scaler = torch.amp.GradScaler(device.split(":")[0], enabled=self.amp == "float16")
        self.history: list[dict] = []
        self.step = 0
        self.on_step = None
        self.states: dict = {}  # (split, frozen layers) -> FrozenStates
        self.frozen_layers = 0  # of the phase running now (0: none; the embeddings train too)
        self.frozen_modules: list = []
        self.state_seconds = 0.0

    def _is_head(self, name: str) -> bool:
        """Whether a parameter belongs to the head: new (not in the checkpoint) or outside the base model."""
        return name in self.new_params or not name.startswith(self.model.base_model_prefix + ".")

    def inputs(self, split: str, rows) -> dict:
        return B.inputs(self.tok[split], rows, self.pad_id, self.type_ids)

    def _labels(self, rows):
        import torch

        y = self.ds.splits["train"].y[rows]
        return torch.as_tensor(np.asarray(y, dtype=np.float32) if self.multi else np.asarray(y, dtype=np.int64))

    def _frozen(self, split: str, rows):
        """The FrozenStates of `split` for the phase's frozen layers (computed on first use), or None."""
        if not self.frozen_layers or not self.ft.cache_frozen:
            return None
        key = (split, self.frozen_layers)
        if key not in self.states:
            t, was = time.perf_counter(), self.model.training
            self.states[key] = L.FrozenStates(self.model, self.frozen_layers - 1, self.tok[split], rows,
                                              lambda r: self.inputs(split, r), self.ft.eval_batch_size, self.device,
                                              lambda: autocast(self.device, self.amp))
            self.state_seconds += time.perf_counter() - t
            self._train_mode(was)
            logger.info("finetune: %s: the frozen layers' output of %d texts kept (%.0f MB, %.1f s)", split,
                        len(rows), self.states[key].nbytes / 2**20, time.perf_counter() - t)
        return self.states[key]

    def _forward(self, split: str, rows, states):
        """Logits of `rows`; from the frozen layers' kept output when `states` is given."""
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in self.inputs(split, rows).items()}
        with L.cls_only_last_layer(self.model, self.ft.fast_last_layer):
            if states is None:
                with autocast(self.device, self.amp):
                    return self.model(**inputs).logits.float()
            with L.from_states(self.model, self.frozen_layers - 1) as feed:
                feed.value = states.batch(rows, inputs["input_ids"].shape[1]).to(self.device)
                with autocast(self.device, self.amp):
                    return self.model(**inputs).logits.float()

    # ---- the loop ------------------------------------------------------------------------

    def _optimizer(self, trainable: list, lr: float):
        import torch

        groups = {}  # (is the head, decays) -> parameters: the new head learns at head_lr in both phases
        for n, p in trainable:
            head = self._is_head(n)
            groups.setdefault((head, not (n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n)), []).append(p)
        fused = {"fused": True} if self.device == "cpu" else {}  # one kernel per step, not a few per tensor
        return torch.optim.AdamW([{"params": ps, "lr": self.ft.head_lr if head else lr,
                                   "weight_decay": self.ft.weight_decay if decays else 0.0}
                                  for (head, decays), ps in groups.items()], **fused)

    def _setup_phase(self, head_only: bool) -> list:
        """requires_grad and train/eval mode for a phase; the trained (name, parameter) pairs."""
        model = self.model
        model.requires_grad_(True)
        try:
            n_layers = len(L.encoder_layers(model)[2]) if head_only or self.ft.train_layers else 0
        except ProbekitError:  # head only on a model of another layout: it runs whole, nothing kept
            n_layers = 0
        # frozen_layers counts the embeddings as one: 1 + the frozen encoder layers; 0 = nothing frozen
        self.frozen_layers = 1 + (n_layers if head_only else self.n_frozen) if n_layers else 0
        self.frozen_modules = L.freeze_below(model, self.frozen_layers - 1) if self.frozen_layers else []
        self._train_mode(True)
        for name, p in model.named_parameters():
            if head_only and not self._is_head(name):
                p.requires_grad_(False)
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def _train_mode(self, on: bool) -> None:
        """Train mode for what trains; the frozen part stays in eval mode (no dropout: its output is a
        function of the text, so it can be kept)."""
        self.model.train(on)
        for module in self.frozen_modules:
            module.eval()

    def _phase(self, name: str, epochs: int, lr: float) -> bool:
        """Train `epochs` epochs; True when early stopping or max_steps ended the run."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        ft = self.ft
        head_only = name == "head"
        trainable = self._setup_phase(head_only)
        optimizer = self._optimizer(trainable, lr)
        lengths = self.tok["train"].lengths[self.train_idx]
        steps_per_epoch = math.ceil(math.ceil(len(lengths) / ft.batch_size) / ft.grad_accum)
        total = steps_per_epoch * epochs
        if ft.max_steps:
            total = min(total, max(ft.max_steps - self.step, 1))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(ft.warmup_ratio * total), total)
        logger.info("finetune: %s: %d epochs of %d steps (%d rows, batch %d x %d), lr %g (head %g), %d tensors "
                    "trained", "head only (encoder frozen)" if head_only else "all weights" if not ft.train_layers
                    else f"the top {ft.train_layers} layers", epochs, steps_per_epoch, len(lengths), ft.batch_size,
                    ft.grad_accum, lr, ft.head_lr, len(trainable))
        states = self._frozen("train", self.train_idx)
        bad_epochs = 0
        for _ in range(epochs):
            t0, losses, seen = time.perf_counter(), [], 0
            plan = B.epoch_batches(lengths, ft.batch_size, self.cfg.run.seed + len(self.history))
            bar = tqdm(plan, desc=f"finetune epoch {len(self.history) + 1}", unit="batch", leave=False,
                       disable=not logger.isEnabledFor(logging.INFO))
            optimizer.zero_grad(set_to_none=True)
            for b, pos in enumerate(bar):
                rows = self.train_idx[pos]
                labels = self._labels(rows).to(self.device)
                loss = self.loss_fn(self._forward("train", rows, states), labels)
                if not torch.isfinite(loss):
                    raise ProbekitError(f"finetune: the loss became {loss.item()} at step {self.step}; "
                                        "lower [finetune] lr (or use dtype='float32').")
                self.scaler.scale(loss / ft.grad_accum).backward()
                losses.append(loss.item())
                seen += len(rows)
                if (b + 1) % ft.grad_accum == 0 or b + 1 == len(plan):
                    self.scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_([p for _, p in trainable], ft.max_grad_norm)
                    self.scaler.step(optimizer)
                    self.scaler.update()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    self.step += 1
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
                    if self.on_step is not None:
                        self.on_step(self)
                    if ft.max_steps and self.step >= ft.max_steps:
                        break
            train_s = time.perf_counter() - t0
            improved = self._validate(name, float(np.mean(losses)), seen, train_s, lr)
            bad_epochs = 0 if improved else bad_epochs + 1
            if ft.max_steps and self.step >= ft.max_steps:
                logger.info("finetune: stopping at max_steps=%d", ft.max_steps)
                return True
            if not head_only and ft.patience and bad_epochs >= ft.patience:
                logger.info("finetune: early stop: validation %s has not improved for %d epochs", self.metric,
                            bad_epochs)
                return True
        return False

    def _validate(self, phase: str, train_loss: float, seen: int, train_s: float, lr: float) -> bool:
        t = time.perf_counter()
        P = self.predict("validation")
        validate_s = time.perf_counter() - t
        tuned = validation_scores(self.Y["validation"], P, self.ds.problem_type, self.names, self.cfg.classify,
                                  self.positive)
        value = tuned[self.metric]
        value = -1.0 if value is None else value
        best = max((h["validation_metric"] for h in self.history), default=-math.inf)
        improved = value > best
        self.history.append({
            "epoch": len(self.history) + 1, "phase": phase, "step": self.step, "lr": lr, "train_loss": train_loss,
            "train_examples": seen, "train_seconds": round(train_s, 3), "validation_seconds": round(validate_s, 3),
            "examples_per_s": round(seen / max(train_s, 1e-9), 2), "validation_loss": self.validation_loss(P),
            **{f"validation_{k}": tuned[k] for k in ("macro_f1", "micro_f1", "macro_auc", "micro_auc", "positive_f1")
               if k in tuned},
            "validation_metric": value, "best": improved,
        })
        h = self.history[-1]
        stops = "" if self.metric == "macro_f1" else f", {self.metric} {fmt_score(tuned[self.metric])} (stops on it)"
        logger.info("finetune: epoch %d (%s): %.1f examples/s, train loss %.4f, validation loss %.4f, macro-F1 "
                    "%.3f, macro AUC %s%s%s", h["epoch"], phase, h["examples_per_s"], train_loss, h["validation_loss"],
                    h["validation_macro_f1"], fmt_score(h["validation_macro_auc"]), stops,
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
        """Probabilities (n, L) of a split, in row order (validation from the frozen layers' kept output)."""
        import torch

        tok, model = self.tok[split], self.model
        rows = np.arange(tok.n_rows)
        states = self._frozen(split, rows) if split == "validation" else None
        was = model.training
        model.eval()
        out = np.empty((len(rows), model.config.num_labels), dtype=np.float32)
        plan = B.sorted_batches(tok.lengths, self.ft.eval_batch_size)
        with torch.inference_mode():
            for pos in tqdm(plan, desc=f"finetune {split}", unit="batch", leave=False,
                            disable=not logger.isEnabledFor(logging.INFO) or len(plan) <= 1):
                out[pos] = probabilities(self._forward(split, rows[pos], states), self.multi).cpu().numpy()
        self._train_mode(was)
        return out

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
