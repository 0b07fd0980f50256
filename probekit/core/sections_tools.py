"""The [bench] and [finetune] config sections: the side tools (see probekit.core.config)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from probekit.core.errors import ConfigError
from probekit.core.runfolder import FINETUNED_NAME_RE
from probekit.core.sections_common import _choice

# sentence-transformers' CPU backends, the bench's peers (extract/bench/peers.py names them the same)
FINETUNE_METRICS = ("auto", "macro_f1", "positive_f1", "macro_auc", "micro_auc")


def finetune_metric(metric: str, binary: bool) -> str:
    """The validation metric `metric` ([finetune] metric) stands for on this data: auto is positive_f1 on
    binary data, else macro_f1.

    Raises:
        ConfigError: positive_f1 on data without a positive class (not binary).
    """
    if metric == "auto":
        return "positive_f1" if binary else "macro_f1"
    if metric == "positive_f1" and not binary:
        raise ConfigError("[finetune] metric=\"positive_f1\" needs binary data (single-label, two labels); "
                          "use macro_f1, macro_auc, micro_auc or auto.")
    return metric


PEERS = ("st_torch", "st_onnx", "st_openvino", "st_onnx_int8", "st_openvino_int8")


@dataclass(frozen=True)
class BenchSection:
    """``make bench-extract``: extraction speed against the book's recipe and sentence-transformers' CPU backends."""

    # The data timed is the config's [data] (make bench-extract DATA=dir, or the demo data).
    n_texts: int = 4000  # the first n_texts train texts are timed
    # interleaved rounds of every method; each method's fastest round is reported (on shared 2-core
    # machines one round of the same method can take twice as long as another)
    repeats: int = 5
    # probekit variants: float32, bfloat16, float16, auto (the default dtype), int8 (CPU dynamic quantisation)
    dtypes: tuple = ("float32", "auto", "int8")
    baselines: tuple = ("book",)  # sentence-transformers' torch backend is the peer st_torch
    # sentence-transformers' CPU backends timed beside probekit (extract/bench/peers.py); [] = none
    peers: tuple = PEERS
    # the python of the venv holding the peers' packages (make bench-extract passes .venv-peers'); the bench
    # runs the peers in one worker process there. "" = in this process, if their packages import here
    peers_python: str = ""
    f1_test_texts: int = 0  # test texts for the macro-F1 check; 0 = the whole test split, -1 = skip it
    rss: bool = True  # peak RSS of `probekit extract` on all the data vs a quarter of it, and a warm rerun
    # seconds of back-to-back fp32 matmuls timed just before every method's run in every round: more
    # samples of the fp32 peak, at the moments the methods run (the machine is shared); 0 = none
    paired_peak_s: float = 1.0
    output: str = "bench/extract.json"  # written under <artifacts>/ (relative) or where it says (absolute)
    # "" times [encoder] model. A transformers model type ("distilbert", "bert", "roberta", ...) times a
    # model of that type's default shape ("distilbert": distilbert-base-uncased's) with seeded random
    # weights and the packaged encoder's tokenizer: no download (timing only: the test macro-F1 is skipped).
    model_shape: str = ""
    # make bench-finetune (docs/finetune.md): HF Trainer against probekit, one epoch each on the first
    # finetune_rows train texts, validation macro-F1 on the first finetune_validation_rows; the methods
    # take interleaved turns of finetune_turn_steps optimiser steps; [finetune] sets batch, lr and seed
    finetune_rows: int = 4000
    finetune_validation_rows: int = 1000
    finetune_turn_steps: int = 25
    finetune_output: str = "bench/finetune.json"

    def __post_init__(self):
        for key in ("finetune_rows", "finetune_validation_rows", "finetune_turn_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"[bench] {key}={getattr(self, key)} must be >= 1.")
        if self.n_texts < 1 or self.repeats < 1 or self.f1_test_texts < -1 or self.paired_peak_s < 0:
            raise ConfigError(f"[bench] n_texts={self.n_texts} and repeats={self.repeats} must be >= 1, "
                              f"f1_test_texts={self.f1_test_texts} >= -1, paired_peak_s={self.paired_peak_s} >= 0.")
        for d in self.dtypes:
            _choice("bench", "dtypes", d, ("float32", "bfloat16", "float16", "auto", "int8"))
        for b in self.baselines:
            if b == "sentence_transformers":
                raise ConfigError("[bench] baselines: 'sentence_transformers' is now the peer 'st_torch' in [bench] "
                                  "peers; set baselines = ['book'] or [].")
            _choice("bench", "baselines", b, ("book",))
        for p in self.peers:
            _choice("bench", "peers", p, PEERS)
        if not self.dtypes:
            raise ConfigError("[bench] dtypes is empty: give at least one of float32, auto, bfloat16, int8.")


@dataclass(frozen=True)
class FinetuneSection:
    """``make finetune``: the encoder fine-tuned end to end, scored like the frozen-feature models.

    ``AutoModelForSequenceClassification`` on [encoder] model, the same data, labels and
    splits; AdamW with linear warmup and decay; validation after every epoch and the best
    checkpoint kept (safetensors, ``<run>/finetuned/``); early stopping on ``metric``.
    """

    # probekit config lists these last: the optimiser's and the loss's fine print, and quick-trial caps
    ADVANCED: ClassVar[tuple] = ("grad_accum", "head_epochs", "warmup_ratio", "max_grad_norm", "dropout",
                                 "max_pos_weight", "focal_gamma", "max_steps", "max_train_rows", "eval_batch_size",
                                 "device", "dtype", "num_threads", "cache_frozen", "fast_last_layer")

    model: str = ""  # "" = [encoder] model; else a Hub id, a local folder or package:<module>
    max_length: int = 0  # tokens per text; 0 = [encoder] max_length
    epochs: int = 3
    batch_size: int = 32  # texts per optimiser step = batch_size x grad_accum
    grad_accum: int = 1
    lr: float = 5e-5  # encoder and head, after the head-only epochs
    head_lr: float = 1e-3  # the new classification head, in both phases (it starts from random weights)
    head_epochs: int = 0  # freeze-then-unfreeze: epochs training the head alone first
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # of each phase's optimiser steps, then linear decay to 0
    max_grad_norm: float = 1.0  # gradients are clipped to this norm
    dropout: float = -1.0  # hidden and attention dropout; < 0 keeps the model's own
    # Class imbalance: none; pos_weight (multi-label: BCE weighted by negatives/positives of each
    # label, at most max_pos_weight; single-label: balanced class weights); focal (gamma below)
    imbalance: str = "none"
    max_pos_weight: float = 30.0
    focal_gamma: float = 2.0
    # early stopping and the best checkpoint: macro_f1 (thresholds tuned as classify tunes them), positive_f1
    # (binary data: the positive class's F1 at classify's binary_threshold rule), macro_auc or micro_auc;
    # auto = positive_f1 on binary data (what classify selects by), else macro_f1
    metric: str = "auto"
    patience: int = 2  # epochs without a better validation metric before stopping; 0 = run every epoch
    max_steps: int = 0  # >0: stop after this many optimiser steps (quick trials and tests)
    max_train_rows: int = 0  # >0: a seeded random subset of train of this size (validation and test stay whole)
    eval_batch_size: int = 128
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    # auto: bfloat16 autocast where the device computes it natively (CUDA with bf16; a CPU with AVX512-BF16
    # or AMX), with float32 master weights; float16 with loss scaling on older GPUs; else float32
    dtype: str = "auto"
    num_threads: int = 0  # CPU threads; 0 = the cores this process may use
    # Partial fine-tuning: K > 0 trains the top K encoder layers and the head, the embeddings and the
    # layers below stay frozen (checked against the model's layer count when it loads); 0 = every layer
    train_layers: int = 0
    # the frozen layers' output for every train and validation text computed once and kept in memory
    # (float32, real tokens only), so an epoch runs only the trained layers; false: computed every step
    cache_frozen: bool = True
    # the last layer computes the [CLS] row alone (all the classification heads read); BERT-style models
    fast_last_layer: bool = True
    # "" writes <run>/finetuned/ (model "finetuned" in metrics.json); a name writes <run>/finetuned-<name>/
    # (model "finetuned-<name>"), so one run folder keeps several variants side by side
    name: str = ""

    def __post_init__(self):
        if self.name and not FINETUNED_NAME_RE.match(self.name):
            raise ConfigError(f"[finetune] name={self.name!r}: use 1-40 lowercase letters, digits or '_' "
                              "(it names the folder finetuned-<name>/), or \"\" for finetuned/.")
        for key in ("max_length", "max_steps", "max_train_rows", "head_epochs", "patience", "num_threads",
                    "train_layers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"[finetune] {key}={getattr(self, key)} must be >= 0.")
        for key in ("epochs", "batch_size", "grad_accum", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"[finetune] {key}={getattr(self, key)} must be >= 1.")
        if self.head_epochs > self.epochs:
            raise ConfigError(f"[finetune] head_epochs={self.head_epochs} must be <= epochs={self.epochs}.")
        if self.lr <= 0 or self.head_lr <= 0 or self.weight_decay < 0 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError("[finetune] lr and head_lr must be > 0, weight_decay >= 0, warmup_ratio in [0, 1).")
        if self.dropout >= 1:
            raise ConfigError(f"[finetune] dropout={self.dropout} must be < 1 (< 0 keeps the model's own).")
        _choice("finetune", "imbalance", self.imbalance, ("none", "pos_weight", "focal"))
        _choice("finetune", "metric", self.metric, FINETUNE_METRICS)
        _choice("finetune", "dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        if not (self.device in ("auto", "cpu", "cuda") or re.match(r"^cuda:\d+$", self.device)):
            raise ConfigError(f"[finetune] device={self.device!r}: use auto, cpu, cuda or cuda:N.")
        if self.max_pos_weight < 1 or self.focal_gamma < 0 or self.max_grad_norm <= 0:
            raise ConfigError("[finetune] max_pos_weight must be >= 1, focal_gamma >= 0 and max_grad_norm > 0.")
