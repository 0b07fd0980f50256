"""Model selection on validation: fit every grid point on train, keep the best (or the simplest tied).

The score of a candidate is its validation macro-F1 with per-label thresholds (when ``[classify]
thresholds = "tune"``) cross-fitted over ``cv_folds`` folds of the validation rows: each fold is
decided at thresholds tuned on the other folds (classify.crossfit), so the score never rewards
thresholds fitted to the rows they are scored on. On binary data (two labels, single-label) it
is the positive class's F1, its threshold (``[classify] binary_threshold``) cross-fitted the
same way. Exact ties are broken by validation macro ROC-AUC (binary: average precision). With
``tie_rule = "one_se"`` every candidate within one bootstrap standard error of the best is tied
and the simplest wins (classify.crossfit.simplicity). The chosen candidate's final thresholds are
tuned on the whole validation split. Test is never looked at here.

The candidates, their estimators and how each is fitted come from classify.registry. A
fusion model (hybrid_logreg) adds the log-odds of its parts' candidates (tfidf_logreg and
logreg). When it is among the models, the fits of its parts' grids (and their validation
scores) are kept and reused, whichever model is selected first: every point of the fusion's
grid is then a fusion of two fits already made, scored on validation. Its ``fit_seconds`` is
the sum of its two parts' fits, what fitting it afresh costs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from probekit.core.config import ClassifySection
from probekit.core.errors import ProbekitError
from probekit.core.metrics import positive_block, positive_index, score
from probekit.core.thresholds import tune_binary_threshold, tune_thresholds
from probekit.stages.classify import crossfit, models, registry
from probekit.stages.classify.bootstrap import resample_weights
from probekit.stages.classify.registry import Candidate

logger = logging.getLogger(__name__)
SELECTION_METRIC = ("validation macro_f1 (thresholds cross-fitted over cv_folds folds of validation when "
                    "thresholds='tune'), ties by validation macro_auc; tie_rule (selection.rule)")
BINARY_SELECTION_METRIC = ("validation positive-class F1 at the positive threshold (binary_threshold) cross-fitted "
                           "over cv_folds folds of validation, ties by validation positive-class average precision; "
                           "tie_rule (selection.rule)")


def selection_metric(binary: bool) -> str:
    """What a model was chosen by: metrics.json's ``selection.metric`` and ``comparisons.chosen_by``."""
    return BINARY_SELECTION_METRIC if binary else SELECTION_METRIC


@dataclass
class Data:
    """Everything the candidates read: features per pooling, texts and labels per split."""

    X: dict  # pooling -> split -> (n_rows, dim) array or memmap
    texts: dict  # split -> list[str]
    y: dict  # split -> class ids (n,) or 0/1 matrix (n, L), as the estimators take them
    Y: dict  # split -> 0/1 matrix (n, L), as the metrics take them
    label_names: list
    problem_type: str
    positive_label: str = ""  # [data] positive_label; "" = the train minority (binary data only)
    _frames: dict = field(default_factory=dict)
    _fits: dict = field(default_factory=dict)  # candidate key -> Fitted, for the hybrid's parts
    _positive: list = field(default_factory=list)  # [positive_index], worked out once

    @property
    def multi_label(self) -> bool:
        return self.problem_type == "multi_label"

    @property
    def positive(self) -> int | None:
        """The positive column of binary data (core.metrics.positive_index), None otherwise."""
        if not self._positive:
            try:
                self._positive.append(positive_index(self.label_names, self.problem_type, self.y["train"],
                                                     self.positive_label))
            except ValueError as e:
                raise ProbekitError(f"[data] {e}; name one of them or set data.positive_label = \"\" "
                                    "(the train minority).") from None
        return self._positive[0]

    def inputs(self, c: Candidate, split: str):
        X = None if c.feature_set is None else self.X[c.feature_set][split]
        if c.input_kind == registry.BOTH:
            key = (c.feature_set, split)
            if key not in self._frames:
                self._frames[key] = models.model_input(registry.BOTH, X, self.texts[split])
            return self._frames[key]
        return models.model_input(c.input_kind, X, self.texts[split])


@dataclass
class Selected:
    candidate: Candidate
    model: object
    fit_seconds: float
    thresholds: np.ndarray | None
    grid: list
    seconds: float
    validation_score: float
    P_val: np.ndarray  # float32 validation probabilities of the chosen candidate
    positive: tuple[int, float] | None = None  # binary: (positive column, its threshold tuned on validation)
    rule: dict = field(default_factory=dict)  # metrics.json selection keys: rule, cv_folds, se, tied, winner

    @property
    def metric(self) -> str:
        return selection_metric(self.positive is not None)


def fit_candidate(c: Candidate, data: Data, cfg: ClassifySection, seed: int):
    n_features = data.X[c.feature_set]["train"].shape[1] if c.feature_set else 0
    n_labels = len(data.label_names)
    est = registry.build(c, cfg, seed, n_features=n_features, multi_label=data.multi_label, n_labels=n_labels)
    t = time.perf_counter()
    with models.warning_filters_kept():  # a forest's threads can scramble them (see there)
        registry.fit(c, est, data.inputs(c, "train"), data.y["train"], cfg, seed, n_labels, data.multi_label)
    return est, time.perf_counter() - t


def thresholds_for(P_val: np.ndarray, data: Data, cfg: ClassifySection) -> np.ndarray | None:
    """Per-label thresholds (multi-label), or None where argmax decides (single-label)."""
    if not data.multi_label:
        return None
    if cfg.thresholds == "fixed":
        return np.full(len(data.label_names), cfg.threshold)
    return tune_thresholds(data.Y["validation"], P_val, default=cfg.threshold)


def positive_for(P_val: np.ndarray, data: Data, cfg: ClassifySection) -> tuple[int, float] | None:
    """Binary data: (the positive column, its threshold from validation rows only); else None."""
    k = data.positive
    if k is None:
        return None
    return k, tune_binary_threshold(data.Y["validation"][:, k], np.asarray(P_val)[:, k], cfg.binary_threshold,
                                    cfg.threshold, cfg.recall_target)


def validation_key(P_val: np.ndarray, data: Data, cfg: ClassifySection, thr, positive) -> tuple[float, float]:
    """(selection score, tie-break) of validation scores: macro-F1 and macro AUC; binary data:
    the positive class's F1 at its tuned threshold and its average precision."""
    Y = data.Y["validation"]
    if positive is not None:
        k, t = positive
        b = positive_block(Y[:, k], np.asarray(P_val)[:, k], data.label_names[k], t)
        return b["f1"], -1.0 if b["average_precision"] is None else b["average_precision"]
    m = score(Y, P_val, data.problem_type, data.label_names, cfg.threshold if thr is None else thr)
    return m["macro_f1"], -1.0 if m["macro_auc"] is None else m["macro_auc"]


@dataclass
class Fitted:
    """A candidate fitted on train, with its validation probabilities (float64)."""

    model: object
    fit_seconds: float
    P_val: np.ndarray


def _key(c: Candidate) -> tuple:
    return c.model, c.feature_set, tuple(sorted(c.params.items()))


def fit_scored(c: Candidate, data: Data, cfg: ClassifySection, seed: int) -> Fitted:
    """Fit `c` on train and score validation, reusing a fusion's parts when kept."""
    spec = registry.spec(c.model)
    if spec.parts:
        words, feats = (fit_scored(part, data, cfg, seed) for part in registry.parts(c))
        w = c.params[spec.fusion_weight]
        est = models.LogitFusion.from_fitted(words.model, feats.model, w, data.multi_label)
        return Fitted(est, words.fit_seconds + feats.fit_seconds,
                      models.fuse(words.P_val, feats.P_val, w, data.multi_label))
    key = _key(c)
    if key in data._fits:
        return data._fits[key]
    est, fit_s = fit_candidate(c, data, cfg, seed)
    out = Fitted(est, fit_s, models.predict_scores(est, data.inputs(c, "validation"), len(data.label_names),
                                                   dtype=np.float64))
    if c.model in registry.part_models(cfg.models):
        data._fits[key] = out
    return out


def cross_fitted_score(P_val: np.ndarray, data: Data, cfg: ClassifySection, seed: int) -> dict:
    """The selection score of validation probabilities `P_val` (any model's, a fine-tuned one's too).

    Returns:
        {"rule" (text), "cv_folds" (used; 0 = in-sample), "validation_score", "validation_score_se"}.
    """
    Y = data.Y["validation"]
    crossfit.check_folds(cfg.cv_folds, len(Y))
    decider = crossfit.Decider.of(data.multi_label, data.positive, cfg)
    fold_rows = crossfit.folds(Y, decider, cfg.cv_folds, seed)
    Yhat = crossfit.oof_decisions(Y, np.asarray(P_val, dtype=np.float32), decider, fold_rows)
    return {"rule": crossfit.rule_text(decider, cfg.cv_folds, cfg.tie_rule, cfg.selection_bootstrap),
            "cv_folds": 0 if fold_rows is None else cfg.cv_folds,
            "validation_score": crossfit.decision_score(Y, Yhat, data.positive),
            "validation_score_se": crossfit.standard_error(Y, Yhat, data.positive, cfg.selection_bootstrap, seed)}


def selection_boots(P_vals: dict, data: Data, cfg: ClassifySection, seed: int) -> dict:
    """Each model's selection score under the same seeded validation resamples: model -> (n_boot,).

    Args:
        P_vals: model -> its saved validation probabilities (what its thresholds were tuned on).
    """
    Y = data.Y["validation"]
    if cfg.selection_bootstrap < 2:
        return {}
    decider = crossfit.Decider.of(data.multi_label, data.positive, cfg)
    fold_rows = crossfit.folds(Y, decider, cfg.cv_folds, seed)
    W = resample_weights(len(Y), cfg.selection_bootstrap, seed)
    return {n: crossfit.decision_score(Y, crossfit.oof_decisions(Y, np.asarray(P, dtype=np.float32), decider,
                                                                 fold_rows), data.positive, W)
            for n, P in P_vals.items()}


def _point(c: Candidate, sc: crossfit.Scored) -> dict:
    return {**c.describe(), "validation_score": sc.score}


def select(name: str, data: Data, cfg: ClassifySection, seed: int, poolings: list[str]) -> Selected:
    """Fit every candidate of model `name`; return the best by validation score (or the simplest tied)."""
    t0 = time.perf_counter()
    cands = registry.candidates(name, cfg, poolings)
    Y = data.Y["validation"]
    crossfit.check_folds(cfg.cv_folds, len(Y))
    decider = crossfit.Decider.of(data.multi_label, data.positive, cfg)
    fold_rows = crossfit.folds(Y, decider, cfg.cv_folds, seed)
    # the same seeded resamples of the validation rows for every candidate (paired differences)
    W = resample_weights(len(Y), cfg.selection_bootstrap, seed) if cfg.selection_bootstrap >= 2 else None
    best, grid, scored = None, [], []
    bar = tqdm(cands, desc=f"select {name}", unit="fit", leave=False,
               disable=len(cands) < 2 or not logger.isEnabledFor(logging.INFO))
    for i, c in enumerate(bar):
        f = fit_scored(c, data, cfg, seed)
        # float32, as predict_scores saves them: thresholds are tuned on exactly the saved scores.
        P = f.P_val.astype(np.float32)
        thr, pos = thresholds_for(P, data, cfg), positive_for(P, data, cfg)
        m = score(Y, P, data.problem_type, data.label_names, cfg.threshold if thr is None else thr)
        key = validation_key(P, data, cfg, thr, pos)
        Yhat = crossfit.oof_decisions(Y, P, decider, fold_rows)
        sc = crossfit.Scored(i, c, crossfit.decision_score(Y, Yhat, data.positive), key[1],
                             None if W is None else crossfit.decision_score(Y, Yhat, data.positive, W))
        scored.append(sc)
        # validation_macro_f1: at thresholds tuned on all validation rows (in-sample); validation_score: cross-fitted
        point = {**_point(c, sc), "validation_macro_f1": m["macro_f1"], "validation_macro_auc": m["macro_auc"]}
        if pos is not None:
            point |= {"validation_positive_f1": key[0], "validation_average_precision": key[1],
                      "positive_threshold": pos[1]}
        grid.append({**point, "fit_seconds": round(f.fit_seconds, 3)})
        if best is None or (sc.score, sc.tie_break) > (best[0].score, best[0].tie_break):
            best = (sc, f)
    top, f = best
    se = 0.0 if top.boot is None else float(np.std(top.boot, ddof=1))
    tied = crossfit.tied_set(scored, top, se, cfg.tie_rule)
    won = crossfit.winner(tied, lambda cand: crossfit.simplicity(cand, poolings))
    if won is not top:  # refitted (seeded: the very fit scored above); the best's model is not kept
        f = fit_scored(won.candidate, data, cfg, seed)
    c, P = won.candidate, f.P_val.astype(np.float32)
    thr, pos = thresholds_for(P, data, cfg), positive_for(P, data, cfg)
    rule = cross_fitted_score(P, data, cfg, seed)  # the winner's score and SE (the tie across models uses them)
    rule |= {"tie_rule": cfg.tie_rule, "se": se, "n_bootstrap": cfg.selection_bootstrap,
             "best": _point(top.candidate, top), "tied": [_point(s.candidate, s) for s in tied],
             "winner": _point(c, won)}
    return Selected(c, f.model, f.fit_seconds, thr, grid, time.perf_counter() - t0, won.score, P, pos, rule)


def refit(sel: Selected, data: Data, cfg: ClassifySection, seed: int) -> tuple[object, float, int]:
    """The chosen candidate refitted on train + validation: (estimator, seconds, rows fitted on).

    A fusion refits both its parts. Its thresholds stay those tuned on validation with the train-only fit.
    """
    c = sel.candidate
    n_features = data.X[c.feature_set]["train"].shape[1] if c.feature_set else 0
    est = registry.build(c, cfg, seed, n_features=n_features, multi_label=data.multi_label,
                         n_labels=len(data.label_names))
    X = models.stack_inputs(c.input_kind, data.inputs(c, "train"), data.inputs(c, "validation"))
    y = np.concatenate([np.asarray(data.y["train"]), np.asarray(data.y["validation"])])
    t = time.perf_counter()
    with models.warning_filters_kept():
        registry.fit(c, est, X, y, cfg, seed, len(data.label_names), data.multi_label)
    return est, time.perf_counter() - t, len(y)
