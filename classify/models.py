"""The scikit-learn estimators trained on cached features.

- ``dummy``: ``DummyClassifier(strategy="prior")``, the floor every model must beat;
- ``logreg``: standardised features, then one-vs-rest ``LogisticRegression``;
- ``random_forest``: ``RandomForestClassifier`` (multi-output for multi-label data).

:func:`predict_scores` turns any of them into a (n_rows, n_labels) probability matrix
in label order, whatever shape ``predict_proba`` returns.
"""

from __future__ import annotations

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from extract.config import ClassifySection


def build(name: str, cfg: ClassifySection, seed: int):
    """An unfitted estimator for model `name`."""
    if name == "dummy":
        return DummyClassifier(strategy="prior", random_state=seed)
    if name == "logreg":
        lr = LogisticRegression(C=cfg.logreg_C, max_iter=cfg.logreg_max_iter, random_state=seed)
        return make_pipeline(StandardScaler(), OneVsRestClassifier(lr, n_jobs=cfg.n_jobs))
    if name == "random_forest":
        return RandomForestClassifier(
            n_estimators=cfg.rf_n_estimators,
            max_depth=cfg.rf_max_depth or None,
            min_samples_leaf=cfg.rf_min_samples_leaf,
            max_features=cfg.rf_max_features,
            n_jobs=cfg.n_jobs,
            random_state=seed,
        )
    raise ValueError(f"unknown model {name!r}")


def predict_scores(model, X: np.ndarray, n_labels: int) -> np.ndarray:
    """Probabilities as float32 (n_rows, n_labels), columns in label order.

    Multi-output estimators return one (n_rows, n_classes) array per label; a class
    that never occurred in training gets probability 0.
    """
    proba = model.predict_proba(X)
    out = np.zeros((X.shape[0], n_labels), dtype=np.float32)
    if isinstance(proba, list):  # multi-output: one array per label
        for k, (p, classes) in enumerate(zip(proba, model.classes_)):
            hit = np.flatnonzero(np.asarray(classes) == 1)
            if hit.size:
                out[:, k] = p[:, hit[0]]
        return out
    classes = np.asarray(model.classes_)
    if classes.ndim == 1 and len(classes) == proba.shape[1] and proba.shape[1] != n_labels:
        out[:, classes.astype(int)] = proba  # single-label with classes missing from train
        return out
    out[:] = proba
    return out
