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

Binary data (single-label, two labels) has a positive class (:func:`positive_index`: the
named one, else the train minority); its decision is ``P[:, positive] >= threshold`` with
the threshold tuned on validation (core.thresholds), and :func:`positive_block` reports it
as practitioners read it: positive-class precision, recall, F1, ROC-AUC and average
precision, each from scikit-learn's own function.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score


def predict_labels(P: np.ndarray, problem_type: str, threshold: float | np.ndarray = 0.5,
                   positive: int | None = None) -> np.ndarray:
    """0/1 matrix of predicted labels from probabilities.

    `threshold` is one number or one per label (tuned thresholds). Single-label takes the
    argmax, unless `positive` names the positive column of binary data: then that column is
    predicted where its probability is >= `threshold` (one number), the other one elsewhere.
    """
    P = np.asarray(P)
    if problem_type == "single_label":
        if positive is not None and P.shape[1] == 2:
            hit = P[:, positive] >= float(np.asarray(threshold, dtype=np.float64))
            return np.eye(2, dtype=np.int64)[np.where(hit, positive, 1 - positive)]
        return np.eye(P.shape[1], dtype=np.int64)[P.argmax(axis=1)]
    return (P >= np.asarray(threshold, dtype=np.float64)).astype(np.int64)


def is_binary(label_names: list[str], problem_type: str) -> bool:
    """Binary data: single-label with exactly two labels (reported for its positive class)."""
    return problem_type == "single_label" and len(label_names) == 2


def positive_index(label_names: list[str], problem_type: str, y_train: np.ndarray,
                   positive_label: str = "") -> int | None:
    """The positive class of binary data: `positive_label` when named, else the train minority
    (on a tie, the second label: "True" over "False", 1 over 0); None for other data.

    Raises:
        ValueError: `positive_label` is not one of `label_names`.
    """
    if not is_binary(label_names, problem_type):
        return None
    if positive_label:
        if positive_label not in label_names:
            raise ValueError(f"positive_label={positive_label!r} is not among the labels {list(label_names)}")
        return list(label_names).index(positive_label)
    y = np.asarray(y_train)
    counts = y.sum(axis=0) if y.ndim == 2 else np.bincount(y.astype(np.int64), minlength=2)
    return 1 if counts[1] <= counts[0] else 0


def entry_threshold(entry: dict, labels: list[str] | None = None) -> float | np.ndarray:
    """The decision threshold(s) a metrics.json model entry applies: per label when classify tuned them
    (in `labels` order when given, else as recorded), the positive class's on binary data, else the
    fixed one (0.5 when absent)."""
    per_label = entry.get("thresholds")
    if per_label:
        values = [per_label[label] for label in labels] if labels is not None else list(per_label.values())
        return np.asarray(values, dtype=np.float64)
    pos = entry.get("positive")
    return float(pos["threshold"]) if pos else float(entry.get("threshold", 0.5))


def entry_positive(entry: dict) -> int | None:
    """The positive column a binary metrics.json entry decides on (None: argmax or per-label thresholds)."""
    pos = entry.get("positive")
    return int(pos["index"]) if pos else None


def positive_block(y: np.ndarray, p: np.ndarray, label: str, threshold: float) -> dict:
    """The positive class of binary data on one split, by scikit-learn's own functions.

    Args:
        y: 0/1 (n_rows,): the row is of the positive class.
        p: (n_rows,) the positive class's probability; predicted where ``p >= threshold``.

    Returns:
        {label, precision, recall, f1 (zero_division=0), roc_auc and average_precision (None
        when the split holds one class / no positive), threshold, support}.
    """
    y = np.asarray(y).astype(np.int64)
    p = np.asarray(p, dtype=np.float64)
    pred = (p >= threshold).astype(np.int64)
    prec, rec, f1, _ = precision_recall_fscore_support(y, pred, labels=[1], average=None, zero_division=0)
    both = 0 < y.sum() < len(y)
    return {"label": label, "precision": float(prec[0]), "recall": float(rec[0]), "f1": float(f1[0]),
            "roc_auc": float(roc_auc_score(y, p)) if both else None,
            "average_precision": float(average_precision_score(y, p)) if y.sum() > 0 else None,
            "threshold": float(threshold), "support": int(y.sum())}


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
