"""Scores for one model on one split: ROC-AUC, F1 and accuracy, checked against scikit-learn.

Everything is computed on a (n_rows, n_labels) 0/1 label matrix and a matching score
matrix, so single-label and multi-label data share one code path:

- single-label: the prediction is the argmax; ``accuracy`` is reported;
- multi-label: a label is predicted when its probability is >= ``threshold``;
  ``subset_accuracy`` (every label of the row right) is reported.

ROC-AUC is undefined for a label with only one class in the split: its per-label value
is ``None`` and the macro average is taken over the labels where it is defined.

The numbers equal scikit-learn's ``roc_auc_score``, ``f1_score(zero_division=0)`` and
``accuracy_score`` (tests/test_metrics.py compares them), computed for every label at once
from ranks and counts: model selection scores hundreds of candidates on validation.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def predict_labels(P: np.ndarray, problem_type: str, threshold: float | np.ndarray = 0.5) -> np.ndarray:
    """0/1 matrix of predicted labels from probabilities.

    `threshold` is one number or one per label (tuned thresholds); single-label ignores it.
    """
    P = np.asarray(P)
    if problem_type == "single_label":
        return np.eye(P.shape[1], dtype=np.int64)[P.argmax(axis=1)]
    return (P >= np.asarray(threshold, dtype=np.float64)).astype(np.int64)


def per_label_auc(Y: np.ndarray, P: np.ndarray) -> list[float | None]:
    """ROC-AUC of every label at once, as the Mann-Whitney U of average ranks (ties count one
    half, exactly as ``roc_auc_score``); None for a label with one class in the split."""
    Y = np.asarray(Y, dtype=bool)
    ranks = rankdata(np.asarray(P, dtype=np.float64), axis=0)
    n_pos = Y.sum(axis=0)
    n_neg = len(Y) - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((ranks * Y).sum(axis=0) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return [float(a) if 0 < p < len(Y) else None for a, p in zip(auc, n_pos)]


def _f1(tp, fp, fn) -> np.ndarray:
    tp, denom = np.asarray(tp, dtype=np.float64), np.asarray(2 * tp + fp + fn, dtype=np.float64)
    return np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)


def score(Y: np.ndarray, P: np.ndarray, problem_type: str, label_names: list[str],
          threshold: float | np.ndarray = 0.5) -> dict:
    """The metrics.json block of one model on one split.

    Args:
        Y: true labels, (n_rows, n_labels) 0/1.
        P: predicted probabilities, (n_rows, n_labels), columns in `label_names` order.
        problem_type: "single_label" or "multi_label".
        threshold: multi-label decision threshold: one number, or one per label.
    """
    Y = np.asarray(Y, dtype=np.int64)
    P = np.asarray(P, dtype=np.float64)
    if Y.shape != P.shape or Y.shape[1] != len(label_names):
        raise ValueError(f"labels {Y.shape}, scores {P.shape}, {len(label_names)} label names")
    Yhat = predict_labels(P, problem_type, threshold)
    aucs = per_label_auc(Y, P)
    defined = [a for a in aucs if a is not None]
    flat_ok = 0 < Y.sum() < Y.size
    # F1 from the counts, as f1_score(..., zero_division=0) computes it, without its input checks
    # (selection scores hundreds of candidates, so this is on the hot path).
    tp = (Y * Yhat).sum(axis=0)
    fp, fn = Yhat.sum(axis=0) - tp, Y.sum(axis=0) - tp
    f1s = _f1(tp, fp, fn)
    out = {
        "micro_auc": per_label_auc(Y.reshape(-1, 1), P.reshape(-1, 1))[0] if flat_ok else None,
        "macro_auc": float(np.mean(defined)) if defined else None,
        "micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        "macro_f1": float(f1s.mean()),
    }
    if problem_type == "single_label":
        out["accuracy"] = float(np.mean(Y.argmax(axis=1) == Yhat.argmax(axis=1)))
    else:
        out["subset_accuracy"] = float(np.mean((Y == Yhat).all(axis=1)))
    out["per_label_auc"] = dict(zip(label_names, aucs))
    out["per_label_f1"] = {name: float(v) for name, v in zip(label_names, f1s)}
    out["support"] = {name: int(v) for name, v in zip(label_names, Y.sum(axis=0))}
    return out
