"""The fine-tuning losses: BCE or cross entropy, with the configured remedy for class imbalance.

Imports torch inside the function, so importing the module stays cheap.
"""

from __future__ import annotations

import numpy as np


def label_matrix(y: np.ndarray, n_labels: int) -> np.ndarray:
    """(n, n_labels) 0/1 labels from class ids (single-label) or the 0/1 matrix itself (multi-label)."""
    return np.eye(n_labels, dtype=np.uint8)[y] if y.ndim == 1 else np.asarray(y, dtype=np.uint8)


def make_loss(kind: str, problem_type: str, Y_train: np.ndarray, max_pos_weight: float, gamma: float, device: str):
    """loss(logits, labels) -> scalar: the configured remedy for class imbalance.

    Args:
        kind: "none", "pos_weight" (multi-label: BCE with each label's negatives/positives,
            clipped to [1, max_pos_weight]; single-label: balanced class weights) or "focal".
        Y_train: train labels as a (n, L) 0/1 matrix.
    """
    import torch
    import torch.nn.functional as F

    pos = Y_train.sum(axis=0).astype(np.float64)
    n = len(Y_train)
    if problem_type == "multi_label":
        ratio = np.divide(n - pos, pos, out=np.full_like(pos, max_pos_weight), where=pos > 0)
        pos_weight = torch.tensor(np.clip(ratio, 1.0, max_pos_weight), dtype=torch.float32, device=device)

        def loss(logits, labels):
            if kind == "pos_weight":
                return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
            bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
            if kind == "focal":  # down-weights the cells the model already gets right
                return ((1 - torch.exp(-bce)) ** gamma * bce).mean()
            return bce.mean()
    else:
        balanced = np.divide(n, len(pos) * pos, out=np.zeros_like(pos), where=pos > 0)
        weight = torch.tensor(balanced, dtype=torch.float32, device=device) if kind == "pos_weight" else None

        def loss(logits, labels):
            ce = F.cross_entropy(logits, labels, weight=weight, reduction="none" if kind == "focal" else "mean")
            return ((1 - torch.exp(-ce)) ** gamma * ce).mean() if kind == "focal" else ce
    return loss
