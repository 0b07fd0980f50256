"""Per-label decision thresholds tuned on validation.

At a fixed 0.5 threshold a rare label is almost never predicted, so its F1 is 0 while its
ROC-AUC may be fine. For each label we pick the probability threshold that maximises that
label's F1 on the validation split, and apply it unchanged to test.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve


def tune_thresholds(Y: np.ndarray, P: np.ndarray, default: float = 0.5) -> np.ndarray:
    """The F1-best threshold of every label (``default`` where validation has no positive).

    Args:
        Y: validation labels, (n_rows, n_labels) 0/1.
        P: validation probabilities, same shape.

    Returns:
        float array (n_labels,): predict label k when ``P[:, k] >= thresholds[k]``.
    """
    Y, P = np.asarray(Y), np.asarray(P, dtype=np.float64)
    out = np.full(Y.shape[1], default, dtype=np.float64)
    for k in range(Y.shape[1]):
        if Y[:, k].sum() == 0:
            continue
        precision, recall, thr = precision_recall_curve(Y[:, k], P[:, k])
        # precision/recall have one more entry than thr (the final point, recall 0): drop it.
        p, r = precision[:-1], recall[:-1]
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        out[k] = float(thr[int(np.argmax(f1))])
    return out


def apply_thresholds(P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return (np.asarray(P) >= np.asarray(thresholds)[None, :]).astype(np.int64)
