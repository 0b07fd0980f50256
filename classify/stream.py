"""Fit a linear model on features larger than memory.

The scaler and an SGD logistic model are fitted with ``partial_fit`` over row blocks of
the memory-mapped cache, so only one block is in memory at a time. Blocks are visited in
a seeded random order each epoch.
"""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import Pipeline


def fit_streaming(model: Pipeline, X: np.ndarray, y: np.ndarray, n_labels: int, multi_label: bool,
                  epochs: int, block_rows: int, seed: int) -> Pipeline:
    """Fit ``StandardScaler -> SGD`` (built by classify.models) block by block.

    Args:
        X: (n_rows, dim), typically a np.memmap; read one block at a time.
        y: class ids (n_rows,) or a 0/1 matrix (n_rows, n_labels).
    """
    scaler, head = model[0], model[-1]
    blocks = [(s, min(s + block_rows, len(X))) for s in range(0, len(X), block_rows)]
    for a, b in blocks:
        scaler.partial_fit(np.asarray(X[a:b], dtype=np.float64))
    classes = [np.array([0, 1])] * n_labels if multi_label else np.arange(n_labels)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for i in rng.permutation(len(blocks)):
            a, b = blocks[i]
            head.partial_fit(scaler.transform(np.asarray(X[a:b], dtype=np.float64)), np.asarray(y[a:b]),
                             classes=classes)
    return model
