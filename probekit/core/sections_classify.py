"""The [classify] and [search] config sections (see probekit.core.config)."""

from __future__ import annotations

from dataclasses import dataclass

from probekit.core.errors import ConfigError
from probekit.core.sections_common import CLASSIFIERS, _choice


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
