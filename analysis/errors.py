"""Error analysis: the test texts each model finds hardest, and likely label errors in train.

- :func:`row_losses`: cross-entropy of each row (single-label: -log p(true class);
  multi-label: the binary cross-entropy summed over labels).
- :func:`highest_loss`: the `n` test rows with the highest loss, for one model.
- :func:`out_of_fold_scores`: probabilities for every train row from a logistic-regression
  probe that never saw that row (k folds), with the settings classify chose for ``logreg``.
- :func:`label_errors`: rows where that probe is confident and disagrees with the given
  label (confident learning, in its simplest form): candidates for relabelling.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from probekit.core.metrics import predict_labels
from probekit.stages.classify import models, registry

logger = logging.getLogger(__name__)

EPS = 1e-6
CONFIDENT = 0.9  # a label error needs the probe to be this sure (p >= 0.9 against a 0, p <= 0.1 against a 1)


def label_names_of(row: np.ndarray, labels: list[str]) -> list[str]:
    return [labels[j] for j in np.flatnonzero(row)]


def row_losses(Y: np.ndarray, P: np.ndarray, problem_type: str) -> np.ndarray:
    """Cross-entropy per row (natural log), probabilities clipped to [1e-6, 1 - 1e-6]."""
    Y = np.asarray(Y, dtype=np.float64)
    P = np.clip(np.asarray(P, dtype=np.float64), EPS, 1 - EPS)
    if problem_type == "single_label":
        return -np.log((P * Y).sum(axis=1).clip(EPS, 1.0))
    return -(Y * np.log(P) + (1 - Y) * np.log(1 - P)).sum(axis=1)


def top_scores(p: np.ndarray, labels: list[str], k: int = 3) -> list[tuple[str, float]]:
    order = np.argsort(-p, kind="stable")[:k]
    return [(labels[j], float(p[j])) for j in order]


def highest_loss(Y: np.ndarray, P: np.ndarray, Yhat: np.ndarray, texts: list[str], ids: list[str],
                 labels: list[str], problem_type: str, n: int = 15) -> list[dict]:
    """The `n` rows with the highest loss, hardest first.

    Returns:
        Rows {id, text, loss, true: [names], predicted: [names], top: [(name, p), ...]}.
    """
    P = np.asarray(P)
    loss = row_losses(Y, P, problem_type)
    order = np.argsort(-loss, kind="stable")[:n]
    return [{"id": ids[i], "text": texts[i], "loss": float(loss[i]), "true": label_names_of(Y[i], labels),
             "predicted": label_names_of(Yhat[i], labels), "top": top_scores(P[i], labels)} for i in order]


def probe_settings(metrics: dict) -> tuple[dict, str | None, float | np.ndarray]:
    """The logistic-regression settings classify chose (C, class_weight, feature set,
    thresholds), or C=1 without class weights on the cache's pooling when it fitted none."""
    entry = metrics["models"].get("logreg")
    pooling = (metrics.get("features") or {}).get("pooling") or "cls"
    if not entry:
        return {"C": 1.0, "class_weight": "none"}, pooling, 0.5
    params = entry.get("params") or {}
    params = {"C": params.get("C", 1.0), "class_weight": params.get("class_weight", "none")}
    thr = entry.get("thresholds")
    thr = np.array([thr[lab] for lab in metrics["labels"]]) if thr else float(entry.get("threshold", 0.5))
    return params, entry.get("feature_set") or pooling, thr


def out_of_fold_scores(X: np.ndarray, y: np.ndarray, n_labels: int, multi_label: bool, params: dict,
                       classify_cfg, seed: int = 0, n_folds: int = 5) -> np.ndarray:
    """(n_rows, n_labels) probabilities for every row from a probe fitted on the other folds.

    Args:
        X: train features; y: class ids (single-label) or the 0/1 matrix (multi-label).
        params: ``C`` and ``class_weight`` of the logistic regression.
        classify_cfg: the ``[classify]`` section (n_jobs; logreg's max_iter in [classify.logreg]).
    """
    t0 = time.perf_counter()
    X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
    n_folds = max(2, min(n_folds, len(X)))
    if multi_label:
        splitter = KFold(n_folds, shuffle=True, random_state=seed).split(X)
    else:
        smallest = np.bincount(y).min(initial=0) if len(y) else 0
        kind = StratifiedKFold if smallest >= n_folds else KFold
        splitter = kind(n_folds, shuffle=True, random_state=seed).split(X, y)
    out = np.zeros((len(X), n_labels), dtype=np.float32)
    if len(X) < 5000:  # worker start-up would cost more than the fits
        classify_cfg = dataclasses.replace(classify_cfg, n_jobs=1)
    cand = registry.Candidate("logreg", dict(params), "oof")
    for fit_rows, held_out in splitter:
        est = registry.build(cand, classify_cfg, seed, n_features=X.shape[1], multi_label=multi_label)
        with models.warning_filters_kept():
            est.fit(X[fit_rows], y[fit_rows])
        out[held_out] = models.predict_scores(est, X[held_out], n_labels)
    logger.info("report: out-of-fold probe on %d rows, %d folds (%.1fs)", len(X), n_folds, time.perf_counter() - t0)
    return out


def label_errors(Y: np.ndarray, P: np.ndarray, texts: list[str], ids: list[str], labels: list[str],
                 problem_type: str, n: int = 15, confident: float = CONFIDENT) -> tuple[list[dict], np.ndarray]:
    """Rows whose given label a confident out-of-fold prediction contradicts.

    Single-label: the probe gives another class p >= `confident`. Multi-label: a label that
    was not given gets p >= `confident` ("missing"), or a given label gets p <= 1 - `confident`
    ("doubtful") while another label that was not given gets p >= 0.5.

    Returns:
        The `n` most confident disagreements (rows {id, text, given, suggested, doubtful,
        missing, margin}), and a boolean mask of every flagged row.
    """
    Y, P = np.asarray(Y, dtype=np.int64), np.asarray(P, dtype=np.float64)
    if problem_type == "single_label":
        given = Y.argmax(axis=1)
        other = np.where(Y.astype(bool), -1.0, P)
        margin = other.max(axis=1) - P[np.arange(len(P)), given]
        flagged = other.max(axis=1) >= confident
    else:
        doubt = np.where(Y == 1, 1 - P, 0.0).max(axis=1)  # the given label the probe rejects most
        alt = np.where(Y == 0, P, 0.0).max(axis=1)  # the absent label the probe asserts most
        missing = alt >= confident
        # A rejected given label alone is weak evidence (a weak probe rejects many): it counts
        # when the probe also asserts another label, i.e. the text reads as something else.
        swapped = (doubt >= confident) & (alt >= 0.5)
        margin = np.maximum(np.where(missing, alt, 0.0), np.where(swapped, (doubt + alt) / 2, 0.0))
        flagged = missing | swapped
    rows = []
    for i in np.flatnonzero(flagged)[np.argsort(-margin[flagged], kind="stable")][:n]:
        if problem_type == "single_label":
            doubtful, missing = label_names_of(Y[i], labels), [labels[int(P[i].argmax())]]
        else:
            doubtful = [labels[j] for j in np.flatnonzero((Y[i] == 1) & (P[i] <= 1 - confident))]
            missing = [labels[j] for j in np.flatnonzero((Y[i] == 0) & (P[i] >= (confident if not doubtful else 0.5)))]
        suggested = label_names_of(predict_labels(P[i:i + 1], problem_type, 0.5)[0], labels)
        rows.append({"id": ids[i], "text": texts[i], "given": label_names_of(Y[i], labels), "suggested": suggested,
                     "doubtful": doubtful, "missing": missing, "margin": float(margin[i]),
                     "top": top_scores(P[i], labels)})
    return rows, flagged
