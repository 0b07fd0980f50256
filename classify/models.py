"""The candidate models and their hyperparameter grids.

Every model is a plain scikit-learn estimator (so skops can save it without pickle):

| name                  | input            | estimator                                                   |
|-----------------------|------------------|-------------------------------------------------------------|
| dummy                 | features         | DummyClassifier(prior): the floor every model must beat     |
| dummy_stratified      | features         | DummyClassifier(stratified)                                 |
| dummy_most_frequent   | features         | DummyClassifier(most_frequent)                              |
| tfidf_logreg          | texts            | TF-IDF word 1..n-grams -> one-vs-rest LogisticRegression     |
| logreg                | features         | StandardScaler -> one-vs-rest LogisticRegression             |
| logreg_chain          | features         | StandardScaler -> ClassifierChain(LogisticRegression)        |
| random_forest         | features         | RandomForestClassifier (one multi-output forest)            |
| random_forest_ovr     | features         | one-vs-rest RandomForestClassifier (a forest per label)     |
| hybrid_logreg         | texts + features | [TF-IDF, weighted standardised features] -> one-vs-rest LR  |
| sgd_stream            | features         | StandardScaler + SGD (log loss) per label, by partial_fit   |

:func:`predict_scores` turns any of them into a (n_rows, n_labels) probability matrix.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from extract.config import ClassifySection

FEATURES, TEXTS, BOTH = "features", "texts", "both"
INPUT_KIND = {"tfidf_logreg": TEXTS, "hybrid_logreg": BOTH}
TEXT_COLUMN = "text"
BASELINES = ("dummy", "dummy_stratified", "dummy_most_frequent")
MULTI_LABEL_ONLY = ("logreg_chain", "random_forest_ovr")


@dataclass
class Candidate:
    """One point of one model's grid."""

    model: str
    params: dict = field(default_factory=dict)
    feature_set: str | None = None  # the pooling of the cache it reads; None for texts only

    @property
    def input_kind(self) -> str:
        return INPUT_KIND.get(self.model, FEATURES)

    def describe(self) -> dict:
        return {"feature_set": self.feature_set, **self.params}


def _grid(**axes) -> list[dict]:
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


def candidates(name: str, cfg: ClassifySection, poolings: list[str]) -> list[Candidate]:
    """Every hyperparameter combination of model `name`, over every feature set."""
    if name in BASELINES:
        return [Candidate(name, {}, poolings[0])]
    if name == "tfidf_logreg":
        return [Candidate(name, p) for p in _grid(C=cfg.tfidf_C, class_weight=cfg.logreg_class_weight)]
    if name in ("logreg", "logreg_chain"):
        grid = _grid(C=cfg.logreg_C, class_weight=cfg.logreg_class_weight)
    elif name in ("random_forest", "random_forest_ovr"):
        grid = _grid(n_estimators=cfg.rf_n_estimators, max_depth=cfg.rf_max_depth,
                     min_samples_leaf=cfg.rf_min_samples_leaf, class_weight=cfg.rf_class_weight)
    elif name == "hybrid_logreg":
        grid = _grid(C=cfg.tfidf_C, emb_weight=cfg.hybrid_emb_weight, class_weight=cfg.logreg_class_weight)
    elif name == "sgd_stream":
        grid = _grid(alpha=tuple(1.0 / (c * 1000.0) for c in cfg.logreg_C))
    else:
        raise ValueError(f"unknown model {name!r}")
    return [Candidate(name, p, pool) for pool in poolings for p in grid]


def _cw(value: str):
    return None if value == "none" else value


def _tfidf(cfg: ClassifySection) -> TfidfVectorizer:
    return TfidfVectorizer(ngram_range=(1, cfg.tfidf_ngram_max), min_df=cfg.tfidf_min_df,
                           max_features=cfg.tfidf_max_features, sublinear_tf=True, dtype=np.float32)


def build(c: Candidate, cfg: ClassifySection, seed: int, n_features: int = 0, multi_label: bool = True):
    """An unfitted estimator for candidate `c`."""
    p = c.params
    if c.model in BASELINES:
        strategy = {"dummy": "prior", "dummy_stratified": "stratified", "dummy_most_frequent": "most_frequent"}
        return DummyClassifier(strategy=strategy[c.model], random_state=seed)
    if c.model in ("logreg", "logreg_chain"):
        lr = LogisticRegression(C=p["C"], class_weight=_cw(p["class_weight"]), max_iter=cfg.logreg_max_iter,
                                random_state=seed)
        head = OneVsRestClassifier(lr, n_jobs=cfg.n_jobs) if c.model == "logreg" else \
            ClassifierChain(lr, order="random", random_state=seed)
        return make_pipeline(StandardScaler(), head)
    if c.model in ("tfidf_logreg", "hybrid_logreg"):
        # lbfgs, not liblinear: liblinear cannot train on the read-only memmaps that joblib's
        # loky workers receive, and it is no faster here (6.8 s vs 6.7 s per fit on GoEmotions).
        lr = LogisticRegression(C=p["C"], class_weight=_cw(p["class_weight"]), max_iter=cfg.logreg_max_iter,
                                random_state=seed)
        if c.model == "tfidf_logreg":
            return Pipeline([("tfidf", _tfidf(cfg)), ("ovr", OneVsRestClassifier(lr, n_jobs=cfg.n_jobs))])
        # One CSR matrix holds the words and the dense feature block: correct, but slow on
        # large data (about 150 s a fit on GoEmotions on 2 cores), so it is opt-in there.
        columns = ColumnTransformer(
            [("tfidf", _tfidf(cfg), TEXT_COLUMN), ("emb", StandardScaler(), [f"f{i}" for i in range(n_features)])],
            transformer_weights={"tfidf": 1.0, "emb": p["emb_weight"]},
        )
        return Pipeline([("columns", columns), ("ovr", OneVsRestClassifier(lr, n_jobs=cfg.n_jobs))])
    if c.model in ("random_forest", "random_forest_ovr"):
        rf = RandomForestClassifier(
            n_estimators=p["n_estimators"], max_depth=p["max_depth"] or None,
            min_samples_leaf=p["min_samples_leaf"], max_features=cfg.rf_max_features,
            class_weight=_cw(p["class_weight"]), max_samples=cfg.rf_max_samples or None,
            n_jobs=cfg.n_jobs, random_state=seed,
        )
        return rf if c.model == "random_forest" else OneVsRestClassifier(rf)
    if c.model == "sgd_stream":  # fitted by classify.stream.fit_streaming, never by fit()
        sgd = SGDClassifier(loss="log_loss", alpha=p["alpha"], random_state=seed)
        head = MultiOutputClassifier(sgd, n_jobs=cfg.n_jobs) if multi_label else sgd
        return make_pipeline(StandardScaler(), head)
    raise ValueError(f"unknown model {c.model!r}")


def model_input(kind: str, X: np.ndarray | None, texts: list[str] | None):
    """What the estimator's fit/predict take: the features, the texts, or a frame of both."""
    if kind == FEATURES:
        return X
    if kind == TEXTS:
        return list(texts)
    frame = pd.DataFrame(np.asarray(X), columns=[f"f{i}" for i in range(X.shape[1])])
    frame.insert(0, TEXT_COLUMN, list(texts))
    return frame


def _output_classes(model) -> list:
    last = model[-1] if isinstance(model, Pipeline) else model
    if hasattr(last, "classes_"):
        return list(last.classes_)
    return [e.classes_ for e in last.estimators_]  # MultiOutputClassifier after partial_fit


def predict_scores(model, inputs, n_labels: int) -> np.ndarray:
    """Probabilities as float32 (n_rows, n_labels), columns in label order.

    Multi-output estimators return one (n_rows, n_classes) array per label; a class
    that never occurred in training gets probability 0.
    """
    proba = model.predict_proba(inputs)
    n_rows = len(inputs)
    out = np.zeros((n_rows, n_labels), dtype=np.float32)
    if isinstance(proba, list):  # multi-output: one array per label
        for k, (p, classes) in enumerate(zip(proba, _output_classes(model))):
            hit = np.flatnonzero(np.asarray(classes) == 1)
            if hit.size:
                out[:, k] = p[:, hit[0]]
        return out
    classes = np.asarray(getattr(model, "classes_", np.arange(n_labels)))
    if classes.ndim == 1 and len(classes) == proba.shape[1] and proba.shape[1] != n_labels:
        out[:, classes.astype(int)] = proba  # single-label with classes missing from train
        return out
    out[:] = proba
    return out
