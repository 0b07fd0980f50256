"""Scores for one model on one split, with scikit-learn's metrics.

Everything is computed on a (n_rows, n_labels) 0/1 label matrix and a matching score
matrix, so single-label and multi-label data share one code path:

- single-label: the prediction is the argmax; ``accuracy`` is reported;
- multi-label: a label is predicted when its probability is >= ``threshold``;
  ``subset_accuracy`` (every label of the row right) is reported.

ROC-AUC is undefined for a label with only one class in the split: its per-label value
is ``None`` and the macro average is taken over the labels where it is defined.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score


def predict_labels(P: np.ndarray, problem_type: str, threshold: float | np.ndarray = 0.5) -> np.ndarray:
    """0/1 matrix of predicted labels from probabilities.

    `threshold` is one number or one per label (tuned thresholds); single-label ignores it.
    """
    P = np.asarray(P)
    if problem_type == "single_label":
        return np.eye(P.shape[1], dtype=np.int64)[P.argmax(axis=1)]
    return (P >= np.asarray(threshold, dtype=np.float64)).astype(np.int64)


def per_label_auc(Y: np.ndarray, P: np.ndarray) -> list[float | None]:
    return [
        float(roc_auc_score(Y[:, k], P[:, k])) if 0 < Y[:, k].sum() < len(Y) else None
        for k in range(Y.shape[1])
    ]


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
    out = {
        "micro_auc": float(roc_auc_score(Y.ravel(), P.ravel())) if flat_ok else None,
        "macro_auc": float(np.mean(defined)) if defined else None,
        "micro_f1": float(f1_score(Y, Yhat, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(Y, Yhat, average="macro", zero_division=0)),
    }
    if problem_type == "single_label":
        out["accuracy"] = float(accuracy_score(Y.argmax(axis=1), Yhat.argmax(axis=1)))
    else:
        out["subset_accuracy"] = float(accuracy_score(Y, Yhat))
    f1s = f1_score(Y, Yhat, average=None, zero_division=0)
    out["per_label_auc"] = dict(zip(label_names, aucs))
    out["per_label_f1"] = {name: float(v) for name, v in zip(label_names, f1s)}
    out["support"] = {name: int(v) for name, v in zip(label_names, Y.sum(axis=0))}
    return out
