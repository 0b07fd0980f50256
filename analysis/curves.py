"""Binary data's curves: ROC and precision-recall of the positive class, for the report and W&B.

:func:`curve_points` computes both curves of one model with scikit-learn's ``roc_curve`` and
``precision_recall_curve`` (thinned to at most ``max_points`` for W&B tables);
:func:`plot_roc_pr` draws them side by side for several models, each with a dot at the
model's operating point (its threshold tuned on validation, applied to test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from probekit.stages.analysis.plots import label_colors, plain_text, plt, save_figure


def _thin(n: int, max_points: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))


def curve_points(y: np.ndarray, p: np.ndarray, max_points: int | None = None) -> dict:
    """ROC (fpr, tpr) and precision-recall (recall, precision) points of scores `p` for 0/1 `y`.

    Returns:
        {"fpr", "tpr", "recall", "precision" (lists), "roc_auc", "average_precision"}; empty
        curves and None where the split holds one class.
    """
    y, p = np.asarray(y).astype(np.int64), np.asarray(p, dtype=np.float64)
    if not 0 < y.sum() < len(y):
        return {"fpr": [], "tpr": [], "recall": [], "precision": [], "roc_auc": None, "average_precision": None}
    fpr, tpr, _ = roc_curve(y, p)
    precision, recall, _ = precision_recall_curve(y, p)
    out = {"fpr": fpr, "tpr": tpr, "recall": recall, "precision": precision}
    if max_points:
        keep_roc, keep_pr = _thin(len(fpr), max_points), _thin(len(recall), max_points)
        out = {"fpr": fpr[keep_roc], "tpr": tpr[keep_roc], "recall": recall[keep_pr], "precision": precision[keep_pr]}
    return {**{k: [float(v) for v in a] for k, a in out.items()}, "roc_auc": float(roc_auc_score(y, p)),
            "average_precision": float(average_precision_score(y, p))}


def operating_point(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(false positive rate, recall, precision) of predicting the positive class at ``p >= threshold``."""
    y, hit = np.asarray(y).astype(bool), np.asarray(p) >= threshold
    tp, fp = int((hit & y).sum()), int((hit & ~y).sum())
    return fp / max(int((~y).sum()), 1), tp / max(int(y.sum()), 1), tp / (tp + fp) if tp + fp else 1.0


@plain_text
def plot_roc_pr(y: np.ndarray, scores: dict[str, np.ndarray], thresholds: dict[str, float], positive: str,
                path: str | Path) -> Path:
    """ROC (left) and precision-recall (right) curves of the positive class, one line per model.

    Args:
        y: test 0/1 (n_rows,): the row is of the positive class.
        scores: model -> the positive class's test probabilities (n_rows,), best model first.
        thresholds: model -> its threshold (the dot on its curves).
    """
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.6))
    colors = label_colors(max(len(scores), 1))
    prevalence = float(np.mean(y)) if len(y) else 0.0
    for k, (model, p) in enumerate(scores.items()):
        c = curve_points(y, p)
        if c["roc_auc"] is None:
            continue
        roc_ax.plot(c["fpr"], c["tpr"], color=colors[k], label=f"{model} (AUC {c['roc_auc']:.3f})")
        pr_ax.step(c["recall"], c["precision"], where="post", color=colors[k],
                   label=f"{model} (AP {c['average_precision']:.3f})")
        if model in thresholds:
            fpr, rec, prec = operating_point(y, p, thresholds[model])
            roc_ax.plot([fpr], [rec], "o", color=colors[k], markeredgecolor="black")
            pr_ax.plot([rec], [prec], "o", color=colors[k], markeredgecolor="black")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    pr_ax.axhline(prevalence, color="grey", linestyle="--", linewidth=1)
    roc_ax.set(xlabel="false positive rate", ylabel=f"true positive rate (recall of {positive})",
               title=f"ROC, {positive} (dashed: chance)", xlim=(0, 1), ylim=(0, 1.01))
    pr_ax.set(xlabel=f"recall of {positive}", ylabel=f"precision of {positive}",
              title=f"Precision-recall, {positive} (dashed: prevalence {prevalence:.1%})", xlim=(0, 1),
              ylim=(0, 1.01))
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="lower right" if ax is roc_ax else "upper right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
