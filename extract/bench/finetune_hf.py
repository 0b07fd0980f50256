"""The anchor of ``make bench-finetune``: Hugging Face's ``Trainer`` as a user writes it, and the turns.

* :func:`hf_trainer` builds ``Trainer`` + ``DataCollatorWithPadding`` + length-grouped batches
  (``train_sampling_strategy="group_by_length"``, formerly ``group_by_length=True``),
  fp32, one epoch, batch and learning rates as probekit's (the new head at ``head_lr``, the
  encoder at ``lr``, no decay on biases and LayerNorm: the optimiser is handed to ``Trainer``,
  which adds its own linear warmup and decay); ``accelerate`` is the ``bench`` extra.
* :class:`Turns` lets the methods take turns of a few optimiser steps each, in threads of
  which one runs at a time, so that each epoch sees the same machine (it is shared); the
  clock of a method runs only during its turns, from the moment it holds the turn to its
  last step's end (validation after the epoch is not counted).
"""

from __future__ import annotations

import tempfile
import threading
import time

import numpy as np


class Turns:
    """Round-robin turns of `steps` optimiser steps; `between()` runs whenever a full round ends."""

    def __init__(self, names: list[str], steps: int, between=None):
        self.names, self.steps, self.between = list(names), steps, between
        self.active = {n: 0.0 for n in names}
        self.turn = 0
        self.done: set = set()
        self.cond = threading.Condition()
        self.count = 0
        self.started = 0.0

    def _holder(self) -> str:
        return self.names[self.turn % len(self.names)]

    def wait(self, name: str) -> None:
        """Block until it is `name`'s turn; start its clock."""
        with self.cond:
            self.cond.wait_for(lambda: self._holder() == name)
            self.count, self.started = 0, time.perf_counter()

    def tick(self, name: str) -> None:
        """After one of `name`'s steps: count its time; pass the turn on after `steps` steps."""
        now = time.perf_counter()
        self.active[name] += now - self.started
        self.started = now
        self.count += 1
        if self.count >= self.steps and len(self.done) < len(self.names) - 1:
            self._pass(name)
            self.wait(name)

    def _pass(self, name: str) -> None:
        with self.cond:
            while True:
                self.turn += 1
                if self.turn % len(self.names) == 0 and self.between is not None:
                    self.between()
                if self._holder() not in self.done:
                    break
            self.cond.notify_all()

    def finish(self, name: str) -> None:
        with self.cond:
            self.done.add(name)
            if len(self.done) < len(self.names) and self._holder() == name:
                self._pass(name)


def hf_trainer(model, tokenizer, texts: list[str], y: np.ndarray, multi: bool, ft, seed: int, max_length: int,
               turns: Turns | None = None, name: str = "hf_trainer"):
    """An HF Trainer for one epoch on (texts, y); its train() ticks `turns` after every step."""
    import datasets
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    labels = [[float(v) for v in row] for row in y] if multi else [int(v) for v in y]
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    ds = datasets.Dataset.from_dict({**{k: enc[k] for k in tokenizer.model_input_names if k in enc},
                                     "labels": labels})
    head = {n for n, _ in model.named_parameters() if not n.startswith(model.base_model_prefix + ".")}
    groups: dict = {}
    for n, p in model.named_parameters():
        groups.setdefault((n in head, not (n.endswith("bias") or "LayerNorm" in n)), []).append(p)
    optimizer = torch.optim.AdamW([{"params": ps, "lr": ft.head_lr if h else ft.lr,
                                    "weight_decay": ft.weight_decay if d else 0.0}
                                   for (h, d), ps in groups.items()])
    out = tempfile.mkdtemp(prefix="probekit-bench-hf-")
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=ft.batch_size, num_train_epochs=1,
                             learning_rate=ft.lr, warmup_steps=int(ft.warmup_ratio * -(-len(texts) // ft.batch_size)),
                             max_grad_norm=ft.max_grad_norm, lr_scheduler_type="linear",
                             train_sampling_strategy="group_by_length", seed=seed, save_strategy="no",
                             eval_strategy="no", report_to=[],
                             logging_strategy="no", use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)

    class Tick(TrainerCallback):
        def on_train_begin(self, *a, **k):
            if turns is not None:
                turns.wait(name)

        def on_step_end(self, *a, **k):
            if turns is not None:
                turns.tick(name)

    return Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tokenizer),
                   optimizers=(optimizer, None), callbacks=[Tick()])


def hf_predict(trainer, tokenizer, texts: list[str], max_length: int, multi: bool) -> np.ndarray:
    import datasets
    import torch

    enc = tokenizer(texts, truncation=True, max_length=max_length)
    ds = datasets.Dataset.from_dict({k: enc[k] for k in tokenizer.model_input_names if k in enc})
    logits = torch.from_numpy(np.asarray(trainer.predict(ds).predictions, dtype=np.float32))
    return (torch.sigmoid(logits) if multi else torch.softmax(logits, -1)).numpy()
