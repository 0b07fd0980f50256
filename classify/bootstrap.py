"""Bootstrap intervals and paired comparisons on the test split, vectorised.

Each resample is a vector of row counts (a multinomial draw), so every metric becomes a
weighted sum: F1 from weighted TP/FP/FN counts, ROC-AUC from weighted ranks. One set of
resamples is shared by every model, which makes the comparison paired: "best beats other
in p% of resamples of the same rows".
"""

from __future__ import annotations

import numpy as np

METRICS = ("macro_f1", "micro_f1", "micro_auc", "macro_auc")


def resample_weights(n_rows: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_rows) row counts of `n_boot` bootstrap resamples."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_rows, np.full(n_rows, 1.0 / n_rows), size=n_boot).astype(np.float64)


def _f1(tp, fp, fn):
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)


def weighted_auc(y: np.ndarray, s: np.ndarray, W: np.ndarray) -> np.ndarray:
    """ROC-AUC of scores `s` for 0/1 labels `y` under each row-weight vector in W (n_boot, n).

    Ties count one half, as in sklearn. NaN where a resample holds no positive or no negative.
    """
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])  # groups of tied scores
    Wp = W[:, order] * y_sorted
    Wn = W[:, order] * ~y_sorted
    pos_g = np.add.reduceat(Wp, starts, axis=1)
    neg_g = np.add.reduceat(Wn, starts, axis=1)
    neg_below = np.cumsum(neg_g, axis=1) - neg_g
    num = (pos_g * (neg_below + 0.5 * neg_g)).sum(axis=1)
    den = pos_g.sum(axis=1) * neg_g.sum(axis=1)
    return np.divide(num, den, out=np.full(len(W), np.nan), where=den > 0)


def bootstrap_metrics(Y: np.ndarray, P: np.ndarray, Yhat: np.ndarray, W: np.ndarray,
                      chunk: int = 100) -> dict[str, np.ndarray]:
    """Each metric of METRICS under every resample: {name: (n_boot,)}.

    Macro AUC averages the labels whose AUC is defined in that resample.
    """
    Y = np.asarray(Y, dtype=np.float64)
    Yhat = np.asarray(Yhat, dtype=np.float64)
    tp, fp, fn = W @ (Y * Yhat), W @ ((1 - Y) * Yhat), W @ (Y * (1 - Yhat))
    out = {"macro_f1": _f1(tp, fp, fn).mean(axis=1),
           "micro_f1": _f1(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1))}
    per_label = np.stack([weighted_auc(Y[:, k], P[:, k], W) for k in range(Y.shape[1])], axis=1)
    with np.errstate(all="ignore"):
        out["macro_auc"] = np.nanmean(np.where(np.isnan(per_label), np.nan, per_label), axis=1)
    # micro AUC pools every (row, label) cell; the weight of a cell is its row's weight.
    n_labels = Y.shape[1]
    micro = [weighted_auc(Y.ravel(), P.ravel(), np.repeat(W[i:i + chunk], n_labels, axis=1))
             for i in range(0, len(W), chunk)]
    out["micro_auc"] = np.concatenate(micro)
    return out


def interval(values: np.ndarray, level: float = 0.95) -> list[float | None]:
    v = values[~np.isnan(values)]
    if v.size == 0:
        return [None, None]
    lo, hi = np.quantile(v, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]
