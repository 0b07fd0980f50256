"""Figures for the report: UMAP maps, confusion reports and per-label ROC-AUC bars.

Every ``plot_*`` function takes plain arrays, writes one PNG (matplotlib's Agg backend, so
no display is needed) and returns its path. The table helpers (
:func:`cooccurrence_matrix`, :func:`label_counts`) return numbers for the HTML page.
This module is torch-free; ``umap`` is imported only inside :func:`umap_embedding`.

    emb, rows = umap_embedding(cache.X("train"), seed=0, max_points=5000)
    plot_umap_scatter(emb, cache.Y("train")[rows], cache.label_names, "umap.png", multi_label=True)
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report runs on servers and in CI without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap, to_rgb  # noqa: E402
from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402

logger = logging.getLogger(__name__)

DPI = 110


def plain_text(func):
    """Draw label names literally: a '$' in a name must not switch matplotlib to math text."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context({"text.parse_math": False}):
            return func(*args, **kwargs)
    return wrapper


def save_figure(fig, path: str | Path, dpi: int = DPI) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def label_colors(n: int) -> list:
    """`n` distinct colours: tab10, then the 60 of tab20/tab20b/tab20c, then evenly spaced hues."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 60:
        return [plt.get_cmap(name)(i) for name in ("tab20", "tab20b", "tab20c") for i in range(20)][:n]
    return [plt.get_cmap("gist_rainbow")(i / n) for i in range(n)]


def label_cmap(color) -> LinearSegmentedColormap:
    """A one-hue ramp from a pale tint of `color` to `color` itself (the densest hexagons): each
    label's density panel is drawn in its colour on the map."""
    rgb = np.asarray(to_rgb(color))
    return LinearSegmentedColormap.from_list("label", [0.2 * rgb + 0.8, rgb])


def umap_embedding(
    X: np.ndarray, seed: int = 0, max_points: int = 5000, n_neighbors: int = 15, min_dist: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Project a seeded sample of rows of `X` to 2-D with UMAP.

    Features are min-max scaled, then embedded with the cosine metric: for transformer
    [CLS] vectors the direction carries the meaning while the norm mostly tracks a few
    outlier dimensions and the text length (the book's chapter 2 makes the same choice).

    Returns:
        The (n_sample, 2) embedding and the sorted row indices of the sample in `X`.
    """
    import umap  # numba compiles on first use: keep it out of module import time

    n_rows = X.shape[0]
    if n_rows < 4:
        raise ValueError(
            f"UMAP needs at least 4 rows, the split has {n_rows}; choose another with --set report.umap_split=..."
        )
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n_rows, size=max_points, replace=False)) if n_rows > max_points else np.arange(n_rows)
    X_scaled = MinMaxScaler().fit_transform(np.asarray(X[rows], dtype=np.float32))
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=max(2, min(n_neighbors, len(rows) - 1)),
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
        # spectral init needs a connected graph of some size; tiny samples use random init
        init="spectral" if len(rows) > 20 else "random",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        warnings.filterwarnings("ignore", message=".*[Gg]raph is not fully connected.*")
        emb = reducer.fit_transform(X_scaled)
    return np.asarray(emb, dtype=np.float32), rows


@plain_text
def plot_umap_scatter(
    emb: np.ndarray, Y: np.ndarray, label_names: list[str], path: str | Path, multi_label: bool = False,
    pooling: str = "cls",
) -> Path:
    """Scatter the 2-D embedding, one colour per label.

    A multi-label row takes the colour of its first label in label order; rows with no
    label are grey.
    """
    Y = np.asarray(Y)
    first = np.where(Y.any(axis=1), Y.argmax(axis=1), -1)
    colors = label_colors(len(label_names))
    fig, ax = plt.subplots(figsize=(7.5, 6))
    point_size = max(2.0, min(20.0, 4000.0 / max(len(emb), 1)))
    if (first < 0).any():
        m = first < 0
        ax.scatter(emb[m, 0], emb[m, 1], s=point_size, color="lightgrey", alpha=0.6, label="(no label)")
    for i, name in enumerate(label_names):
        m = first == i
        if m.any():
            ax.scatter(emb[m, 0], emb[m, 1], s=point_size, color=colors[i], alpha=0.7, label=f"{name} ({m.sum()})")
    title = f"UMAP of the {pooling} features"
    if multi_label:
        title += "\ncoloured by each row's first label in label order"
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=2, frameon=False)
    return save_figure(fig, path)


@plain_text
def plot_umap_density(emb: np.ndarray, Y: np.ndarray, label_names: list[str], path: str | Path) -> Path:
    """One hexbin density panel per label, of the points that carry that label.

    All panels share the same extent, so regions can be compared across labels, and each is
    drawn in its label's colour on the map (:func:`label_colors`, as the scatter and the page's map).
    """
    Y = np.asarray(Y)
    colors = label_colors(len(label_names))
    n_labels = len(label_names)
    ncols = min(4, n_labels)
    nrows = int(np.ceil(n_labels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 2.8 * nrows), squeeze=False)
    pad_x = 0.05 * (np.ptp(emb[:, 0]) or 1.0)
    pad_y = 0.05 * (np.ptp(emb[:, 1]) or 1.0)
    extent = (emb[:, 0].min() - pad_x, emb[:, 0].max() + pad_x, emb[:, 1].min() - pad_y, emb[:, 1].max() + pad_y)
    for i, ax in enumerate(axes.flat):
        if i >= n_labels:
            ax.axis("off")
            continue
        m = Y[:, i].astype(bool)
        if m.any():
            ax.hexbin(emb[m, 0], emb[m, 1], cmap=label_cmap(colors[i]), gridsize=20,
                      linewidths=(0,), extent=extent, mincnt=1, vmin=0)  # vmin=0: a lone point stays visible
        else:
            ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_title(f"{label_names[i]} ({int(m.sum())})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, path, dpi=DPI if n_labels <= 12 else 80)  # many panels: keep the page light


def _heatmap(ax, M: np.ndarray, row_names: list[str], col_names: list[str]) -> None:
    """Draw a [0, 1] matrix with its values written in the cells (NaN cells left blank)."""
    ax.imshow(np.nan_to_num(M, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(col_names)), labels=col_names, rotation=45, ha="right")
    ax.set_yticks(range(len(row_names)), labels=row_names)
    fontsize = 9 if len(row_names) <= 10 else 6
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            if not np.isnan(M[i, j]):
                ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=fontsize,
                        color="white" if M[i, j] > 0.5 else "black")


@plain_text
def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str], path: str | Path,
                   title: str = "") -> Path:
    """Single-label: the row-normalised confusion matrix (rows = true class) as a heatmap."""
    n = len(label_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes absent from y_true give 0/0 rows: shown blank
        M = confusion_matrix(y_true, y_pred, labels=list(range(n)), normalize="true")
    M[np.bincount(np.asarray(y_true), minlength=n)[:n] == 0] = np.nan
    side = max(4.5, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(side, side))
    _heatmap(ax, M, label_names, label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix (rows normalised)")
    return save_figure(fig, path)


def cooccurrence_matrix(Y_true: np.ndarray, Y_pred: np.ndarray) -> np.ndarray:
    """Multi-label: cell (i, j) = share of rows with true label i whose predicted set holds j.

    Rows of labels with no true examples are NaN.
    """
    Y_true = np.asarray(Y_true, dtype=np.float64)
    Y_pred = np.asarray(Y_pred, dtype=np.float64)
    counts = Y_true.T @ Y_pred  # (n_labels, n_labels): rows with true i and predicted j
    support = Y_true.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support[:, None] > 0, counts / support[:, None], np.nan)


@plain_text
def plot_cooccurrence(M: np.ndarray, label_names: list[str], path: str | Path, title: str = "") -> Path:
    """Multi-label: draw :func:`cooccurrence_matrix` as a heatmap (rows = true label)."""
    side = max(4.5, 0.45 * len(label_names) + 2)
    fig, ax = plt.subplots(figsize=(side, side))
    _heatmap(ax, M, label_names, label_names)
    ax.set_xlabel("predicted label in the row's predicted set")
    ax.set_ylabel("true label")
    ax.set_title(title or "True x predicted labels (rows normalised)")
    return save_figure(fig, path)


def label_counts(Y_true: np.ndarray, Y_pred: np.ndarray, label_names: list[str]) -> list[dict]:
    """Per-label 2x2 counts (one label against the rest) with precision, recall and support.

    Precision or recall is None where it is 0/0 (no predicted or no true rows).
    """
    mcm = multilabel_confusion_matrix(np.asarray(Y_true), np.asarray(Y_pred), labels=list(range(len(label_names))))
    rows = []
    for name, ((tn, fp), (fn, tp)) in zip(label_names, mcm):
        tp, fp, fn, tn = int(tp), int(fp), int(fn), int(tn)
        rows.append({
            "label": name, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "support": tp + fn,
        })
    return rows


@plain_text
def plot_per_label_auc(
    per_label_auc: dict[str, dict[str, float | None]], labels: list[str], support: dict[str, int],
    path: str | Path, title: str = "",
) -> Path:
    """Grouped horizontal bars: one group per label (in the given order, top first), one bar per model.

    A missing or None AUC (undefined, e.g. a label without positives) draws no bar and an
    "n/a" mark.
    """
    models = list(per_label_auc)
    n_labels, n_models = len(labels), max(len(models), 1)
    height = 0.8 / n_models
    colors = label_colors(n_models)
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.22 * n_labels * n_models + 1.5)))
    for k, model in enumerate(models):
        offsets = np.arange(n_labels) - 0.4 + height * (k + 0.5)
        values = [per_label_auc[model].get(lab) for lab in labels]
        present = [v is not None for v in values]
        ax.barh(offsets[present], [v for v in values if v is not None], height=height, color=colors[k], label=model)
        for y, ok in zip(offsets, present):
            if not ok:
                ax.text(0.01, y, "n/a", va="center", fontsize=7, color=colors[k])
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(n_labels), labels=[f"{lab} (n={support.get(lab, 0)})" for lab in labels])
    ax.invert_yaxis()  # largest support on top
    ax.set_xlim(0, 1)
    ax.set_xlabel("ROC-AUC (dashed: chance)")
    ax.set_title(title or "Per-label ROC-AUC")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return save_figure(fig, path)
