"""Per-label decision thresholds tuned on validation.

At a fixed 0.5 threshold a rare label is almost never predicted, so its F1 is 0 while its
ROC-AUC may be fine. For each label we pick the probability threshold that maximises that
label's F1 on the validation split, and apply it unchanged to test.

Every label is tuned at once: one sort of the score matrix, cumulative true and false
positives at each distinct score, F1 = 2TP / (2TP + FP + FN) as one exact division (so
equal F1 values tie exactly). Among equally good thresholds the lowest wins, as with
scikit-learn's ``precision_recall_curve`` followed by ``argmax``.
"""

from __future__ import annotations

import numpy as np


def tune_thresholds(Y: np.ndarray, P: np.ndarray, default: float = 0.5) -> np.ndarray:
    """The F1-best threshold of every label (``default`` where validation has no positive).

    Args:
        Y: validation labels, (n_rows, n_labels) 0/1.
        P: validation probabilities, same shape.

    Returns:
        float array (n_labels,): predict label k when ``P[:, k] >= thresholds[k]``.
    """
    thr, _ = tune_thresholds_f1(Y, P, default)
    return thr


def tune_thresholds_f1(Y: np.ndarray, P: np.ndarray, default: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The F1-best threshold of every label and the validation F1 it reaches (0 without positives)."""
    Y, P = np.asarray(Y), np.asarray(P, dtype=np.float64)
    n_rows, n_labels = Y.shape
    order = np.argsort(-P, axis=0, kind="stable")  # descending scores, per label
    s = np.take_along_axis(P, order, axis=0)
    y = np.take_along_axis(Y, order, axis=0).astype(np.int64)
    tp = np.cumsum(y, axis=0)
    fp = np.arange(1, n_rows + 1)[:, None] - tp
    n_pos = tp[-1]
    # A threshold t = s[i] predicts every row scoring >= t: only the last row of a run of tied scores counts.
    last = np.ones_like(s, dtype=bool)
    last[:-1] = s[:-1] != s[1:]
    f1 = np.where(last, 2 * tp / np.maximum(2 * tp + fp + (n_pos - tp), 1), -1.0)
    # Rows run from the highest score down: the last maximum is the lowest F1-best threshold.
    best = n_rows - 1 - np.argmax(f1[::-1], axis=0)
    cols = np.arange(n_labels)
    out = np.where(n_pos > 0, s[best, cols], default)
    return out.astype(np.float64), np.where(n_pos > 0, f1[best, cols], 0.0)


def apply_thresholds(P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return (np.asarray(P) >= np.asarray(thresholds)[None, :]).astype(np.int64)


BINARY_RULES = ("f1", "fixed", "recall")  # [classify] binary_threshold


def tune_binary_threshold(y: np.ndarray, p: np.ndarray, rule: str = "f1", fixed: float = 0.5,
                          recall_target: float = 0.9) -> float:
    """The positive-class threshold of binary data, from validation rows only.

    Args:
        y: validation 0/1 (n_rows,): the row is of the positive class.
        p: the positive class's validation probabilities (n_rows,).
        rule: "f1": the F1-best threshold (the lowest among equals, as :func:`tune_thresholds`);
            "fixed": `fixed`; "recall": the highest threshold whose recall is >= `recall_target`
            (the most precise such decision).

    Returns:
        Predict the positive class where ``p >= threshold``; `fixed` where validation has no positive.
    """
    y, p = np.asarray(y).astype(np.int64), np.asarray(p, dtype=np.float64)
    if rule == "fixed" or y.sum() == 0:
        return float(fixed)
    if rule == "f1":
        return float(tune_thresholds(y[:, None], p[:, None], default=fixed)[0])
    if rule != "recall":
        raise ValueError(f"binary threshold rule {rule!r}: choose one of {', '.join(BINARY_RULES)}")
    order = np.argsort(-p, kind="stable")
    s, tp = p[order], np.cumsum(y[order])
    last = np.r_[s[:-1] != s[1:], True]  # a threshold s[i] keeps every row scoring >= s[i]
    ok = last & (tp >= recall_target * y.sum() - 1e-9)
    return float(s[np.argmax(ok)])  # the first (highest) threshold reaching the target
