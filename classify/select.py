"""Model selection on validation: fit every grid point on train, keep the best.

The score of a candidate is its validation macro-F1 (after per-label threshold tuning
when ``[classify] thresholds = "tune"``), ties broken by validation macro ROC-AUC. Test is
never looked at here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from classify import models
from classify.metrics import score
from classify.stream import fit_streaming
from classify.thresholds import tune_thresholds
from extract.config import ClassifySection

logger = logging.getLogger(__name__)
SELECTION_METRIC = "validation macro_f1 (tuned thresholds when thresholds='tune'), ties by validation macro_auc"


@dataclass
class Data:
    """Everything the candidates read: features per pooling, texts and labels per split."""

    X: dict  # pooling -> split -> (n_rows, dim) array or memmap
    texts: dict  # split -> list[str]
    y: dict  # split -> class ids (n,) or 0/1 matrix (n, L), as the estimators take them
    Y: dict  # split -> 0/1 matrix (n, L), as the metrics take them
    label_names: list
    problem_type: str
    _frames: dict = field(default_factory=dict)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == "multi_label"

    def inputs(self, c: models.Candidate, split: str):
        X = None if c.feature_set is None else self.X[c.feature_set][split]
        if c.input_kind == models.BOTH:
            key = (c.feature_set, split)
            if key not in self._frames:
                self._frames[key] = models.model_input(models.BOTH, X, self.texts[split])
            return self._frames[key]
        return models.model_input(c.input_kind, X, self.texts[split])


@dataclass
class Selected:
    candidate: models.Candidate
    model: object
    fit_seconds: float
    thresholds: np.ndarray | None
    grid: list
    seconds: float
    validation_score: float


def fit_candidate(c: models.Candidate, data: Data, cfg: ClassifySection, seed: int):
    n_features = data.X[c.feature_set]["train"].shape[1] if c.feature_set else 0
    est = models.build(c, cfg, seed, n_features=n_features, multi_label=data.multi_label)
    t = time.perf_counter()
    if c.model == "sgd_stream":
        fit_streaming(est, data.X[c.feature_set]["train"], data.y["train"], len(data.label_names),
                      data.multi_label, cfg.sgd_epochs, cfg.sgd_batch_rows, seed)
    else:
        est.fit(data.inputs(c, "train"), data.y["train"])
    return est, time.perf_counter() - t


def thresholds_for(P_val: np.ndarray, data: Data, cfg: ClassifySection) -> np.ndarray | None:
    """Per-label thresholds (multi-label), or None where argmax decides (single-label)."""
    if not data.multi_label:
        return None
    if cfg.thresholds == "fixed":
        return np.full(len(data.label_names), cfg.threshold)
    return tune_thresholds(data.Y["validation"], P_val, default=cfg.threshold)


def select(name: str, data: Data, cfg: ClassifySection, seed: int, poolings: list[str]) -> Selected:
    """Fit every candidate of model `name`; return the best by validation score."""
    t0 = time.perf_counter()
    cands = models.candidates(name, cfg, poolings)
    best, grid = None, []
    bar = tqdm(cands, desc=f"select {name}", unit="fit", leave=False,
               disable=len(cands) < 2 or not logger.isEnabledFor(logging.INFO))
    for c in bar:
        est, fit_s = fit_candidate(c, data, cfg, seed)
        P = models.predict_scores(est, data.inputs(c, "validation"), len(data.label_names))
        thr = thresholds_for(P, data, cfg)
        m = score(data.Y["validation"], P, data.problem_type, data.label_names,
                  cfg.threshold if thr is None else thr)
        key = (m["macro_f1"], -1.0 if m["macro_auc"] is None else m["macro_auc"])
        grid.append({**c.describe(), "validation_macro_f1": m["macro_f1"], "validation_macro_auc": m["macro_auc"],
                     "fit_seconds": round(fit_s, 3)})
        if best is None or key > best[0]:
            best = (key, c, est, fit_s, thr)
    (key, c, est, fit_s, thr) = best
    return Selected(c, est, fit_s, thr, grid, time.perf_counter() - t0, key[0])
