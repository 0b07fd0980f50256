"""The [classify] and [search] config sections (see probekit.core.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from probekit.core.errors import ConfigError
from probekit.core.sections_common import _choice


def _registry():
    """classify's model registry: the one import from core into a stage (allowed by tests/test_layout.py).

    The models are declared once, in classify/registry.py; it imports nothing heavy, so a
    config validates on a box without scikit-learn. Imported here, when a section is built,
    so that importing core never imports a stage.
    """
    import probekit.stages.classify.registry as registry

    return registry


@dataclass(frozen=True)
class ClassifySection:
    """scikit-learn models trained on the cached features.

    Each model's grid and settings live in its own table, ``[classify.<model>]`` (keys and
    defaults: classify/registry.py); a tuple-valued key is a grid: every combination is
    fitted on train and scored on validation by its macro-F1 at thresholds cross-fitted over
    ``cv_folds`` folds (binary data, two labels single-label: the positive class's F1); the
    best is kept, or with ``tie_rule`` "one_se"/"one_se_paired" the simplest within one
    bootstrap SE of it (classify/crossfit.py). Test is scored once. One value
    (--set classify.logreg.C=0.5) is a 1-point grid.
    """

    SUBTABLES: ClassVar[str] = "model_tables"  # where the loader puts the [classify.<model>] tables
    # probekit config lists them last
    ADVANCED: ClassVar[tuple] = ("threshold", "recall_target", "ci_level", "joblib_backend", "selection_bootstrap")

    models: tuple = ("dummy", "dummy_stratified", "dummy_most_frequent", "tfidf_logreg", "logreg", "random_forest")
    features: tuple = ()  # poolings in the cache to try ("cls", "mean", ...); () = every one it holds
    thresholds: str = "tune"  # tune: per-label F1-best thresholds on validation; fixed: `threshold`
    threshold: float = 0.5  # the fixed multi-label decision threshold (always reported too)
    # binary data ([data] positive_label, default the train minority): the positive class's threshold,
    # from validation: f1 = the F1-best; fixed = `threshold`; recall = the highest reaching recall_target
    binary_threshold: str = "f1"
    recall_target: float = 0.9
    # the selection score (classify/crossfit.py): each of cv_folds seeded folds of validation is decided at
    # thresholds tuned on the other folds; 0 or 1 = thresholds tuned and scored on the same validation rows
    cv_folds: int = 5
    # one_se: within one bootstrap SE of the best score, the simplest wins; one_se_paired: within one SE of
    # the paired gap to the best; best: the best
    tie_rule: str = "one_se_paired"
    selection_bootstrap: int = 200  # validation resamples for that SE
    refit: str = "train"  # "train+validation": the chosen configuration refitted on both (thresholds kept)
    n_bootstrap: int = 1000  # test resamples for intervals and paired comparisons; 0 = none
    ci_level: float = 0.95
    n_jobs: int = -1  # joblib workers; -1 = every core
    # loky, threading, dask (pip install 'dask[distributed]': the open Dask client, else the scheduler at
    # DASK_SCHEDULER_ADDRESS, else a local cluster for the run) or ray (pip install ray)
    joblib_backend: str = "loky"
    # the [classify.<model>] tables; resolved: every registered model's grid and settings, defaults filled in
    model_tables: dict = field(default_factory=dict)

    def __post_init__(self):
        registry = _registry()
        if not self.models:
            raise ConfigError(f"[classify] models is empty: choose from {', '.join(registry.MODELS)}.")
        for name in self.models:
            _choice("classify", "models", name, tuple(registry.MODELS))
        object.__setattr__(self, "model_tables", registry.resolve_tables(self.model_tables))
        _choice("classify", "thresholds", self.thresholds, ("tune", "fixed"))
        _choice("classify", "binary_threshold", self.binary_threshold, ("f1", "fixed", "recall"))
        if not 0.0 < self.recall_target <= 1.0:
            raise ConfigError(f"[classify] recall_target={self.recall_target} must be in (0, 1] "
                              "(used by binary_threshold = \"recall\").")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"[classify] threshold={self.threshold} must be in (0, 1).")
        if self.n_jobs == 0:
            raise ConfigError("[classify] n_jobs=0: use -1 (every core), 1 (no parallelism) or a number of workers.")
        _choice("classify", "joblib_backend", self.joblib_backend, ("loky", "threading", "multiprocessing", "dask",
                                                                   "ray"))
        for key in ("cv_folds", "selection_bootstrap"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"[classify] {key}={v!r} must be an integer >= 0"
                                  + (" (0 or 1 = thresholds tuned and scored on the same rows)." if key == "cv_folds"
                                     else " (0 = no standard error: the best wins)."))
        _choice("classify", "tie_rule", self.tie_rule, ("one_se", "one_se_paired", "best"))
        _choice("classify", "refit", self.refit, ("train", "train+validation"))
        if not 0.5 <= self.ci_level < 1.0 or self.n_bootstrap < 0:
            raise ConfigError("[classify] ci_level must be in [0.5, 1) and n_bootstrap >= 0.")


@dataclass(frozen=True)
class SearchSection:
    """A grid over one model's settings, run on the cached features (``probekit search``).

    The grid is the model's classify grid (its ``[classify.<model>]`` values), with the keys
    given in ``[search.grid]`` replaced, times pooling, times threshold strategy. Every trial
    is fitted on train and scored on validation (test is scored too, and shown, but never
    used to pick); each trial becomes one W&B run in one group.
    """

    model: str = "logreg"  # any model of [classify] models' choices
    grid: dict = field(default_factory=dict)  # [search.grid]: e.g. C = [0.01, 0.1, 1.0] replaces logreg's C
    pooling: tuple = ()  # feature sets of the cache ("cls", "mean", ...); () = every one it holds
    thresholds: tuple = ("tune", "fixed")  # per-label F1-best thresholds on validation, or classify.threshold
    max_trials: int = 0  # >0: a seeded random subset of the grid of this size
    wandb: bool = True  # one W&B run per trial (mode and project from [report])
    wandb_group: str = ""  # "" = "<run name>-search"

    def __post_init__(self):
        registry = _registry()
        _choice("search", "model", self.model, tuple(registry.MODELS))
        keys = registry.axes(self.model)
        for key in self.grid:
            if key not in keys:
                raise ConfigError(f"[search.grid] has no key {key!r}; the grid keys of {self.model}: "
                                  f"{', '.join(keys) or 'none'}.")
        object.__setattr__(self, "grid", {k: registry.check_grid("[search.grid]", self.model, k, v)
                                          for k, v in self.grid.items()})
        values = self.thresholds
        if not values or any(v not in ("tune", "fixed") for v in values):
            raise ConfigError(f"[search] thresholds={list(values)}: choose one or more of tune, fixed.")
        if self.max_trials < 0:
            raise ConfigError(f"[search] max_trials={self.max_trials} must be >= 0 (0 = the whole grid).")
