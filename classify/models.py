"""The candidate models and their hyperparameter grids.

Every model is a scikit-learn estimator (so skops can save it without pickle; the one class
of our own, LogitFusion, is on classify.persist's trusted list):

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
| hybrid_logreg         | texts + features | LogitFusion: tfidf_logreg + emb_weight x logreg, log-odds    |
| sgd_stream            | features         | StandardScaler + SGD (log loss) per label, by partial_fit   |

:func:`predict_scores` turns any of them into a (n_rows, n_labels) probability matrix.

``hybrid_logreg`` is one linear logistic model over [TF-IDF words, standardised features]
fitted block by block (late fusion): a TF-IDF logistic regression and a logistic regression
on the features are fitted on train separately, and their log-odds are added,
``logit p = logit p_words + emb_weight * logit p_features``; ``emb_weight`` is a grid axis
chosen on validation like every other hyperparameter. Fitting both blocks in one LR (a CSR
matrix holding the words and a dense feature block) took about 150 s a fit on GoEmotions
on 2 cores; the two blocks take 10-20 s together, and select.py reuses the very fits of
tfidf_logreg's and logreg's grids, so the fusion grid costs only its validation scoring.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from probekit.core.config import ClassifySection

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
    elif name == "hybrid_logreg":  # the words' LR (tfidf_logreg's grid) x the features' LR (logreg's) x weight
        grid = _grid(C=cfg.tfidf_C, class_weight=cfg.logreg_class_weight, emb_C=cfg.logreg_C,
                     emb_class_weight=cfg.logreg_class_weight, emb_weight=cfg.hybrid_emb_weight)
    elif name == "sgd_stream":
        grid = _grid(alpha=tuple(1.0 / (c * 1000.0) for c in cfg.logreg_C))
    else:
        raise ValueError(f"unknown model {name!r}")
    return [Candidate(name, p, pool) for pool in poolings for p in grid]


def hybrid_parts(c: Candidate) -> tuple[Candidate, Candidate]:
    """The tfidf_logreg and logreg candidates whose log-odds hybrid candidate `c` adds."""
    p = c.params
    return (Candidate("tfidf_logreg", {"C": p["C"], "class_weight": p["class_weight"]}),
            Candidate("logreg", {"C": p["emb_C"], "class_weight": p["emb_class_weight"]}, c.feature_set))


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
    if c.model == "tfidf_logreg":
        # lbfgs, not liblinear: liblinear cannot train on the read-only memmaps that joblib's
        # loky workers receive, and it is no faster here (6.8 s vs 6.7 s per fit on GoEmotions).
        lr = LogisticRegression(C=p["C"], class_weight=_cw(p["class_weight"]), max_iter=cfg.logreg_max_iter,
                                random_state=seed)
        return Pipeline([("tfidf", _tfidf(cfg)), ("ovr", OneVsRestClassifier(lr, n_jobs=cfg.n_jobs))])
    if c.model == "hybrid_logreg":
        words, feats = hybrid_parts(c)
        return LogitFusion(build(words, cfg, seed), build(feats, cfg, seed, n_features, multi_label),
                           emb_weight=p["emb_weight"])
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


_EPS = 1e-12  # probabilities are clipped to [_EPS, 1 - _EPS] before taking log-odds


def fuse(P_words: np.ndarray, P_features: np.ndarray, emb_weight: float, multi_label: bool) -> np.ndarray:
    """Late fusion of two models' probabilities (n_rows, n_classes).

    Multi-label: per label, ``expit(logit p_words + emb_weight * logit p_features)``.
    Single-label: ``softmax(log p_words + emb_weight * log p_features)`` (a product of experts).
    """
    P_words = np.clip(np.asarray(P_words, dtype=np.float64), _EPS, 1 - _EPS)
    P_features = np.clip(np.asarray(P_features, dtype=np.float64), _EPS, 1 - _EPS)
    if multi_label:
        return expit(np.log(P_words) - np.log1p(-P_words) + emb_weight * (np.log(P_features) - np.log1p(-P_features)))
    return softmax(np.log(P_words) + emb_weight * np.log(P_features), axis=1)


def split_frame(frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The texts and the (n_rows, dim) float32 features of a :func:`model_input` frame."""
    return frame[TEXT_COLUMN].tolist(), frame.drop(columns=[TEXT_COLUMN]).to_numpy(dtype=np.float32)


class LogitFusion(ClassifierMixin, BaseEstimator):
    """A words model and a features model whose log-odds are added (see the module docstring).

    Args:
        text_model: an estimator on a list of texts (tfidf_logreg's pipeline).
        feature_model: an estimator on the (n_rows, dim) features (logreg's pipeline).
        emb_weight: weight of the features model's log-odds; 0 is the words model alone.

    ``fit`` and ``predict_proba`` take the frame of :func:`model_input` (a text column and
    one column per feature).
    """

    def __init__(self, text_model=None, feature_model=None, emb_weight: float = 0.5):
        self.text_model = text_model
        self.feature_model = feature_model
        self.emb_weight = emb_weight

    def fit(self, X: pd.DataFrame, y):
        texts, feats = split_frame(X)
        return self._set_fitted(clone(self.text_model).fit(texts, y), clone(self.feature_model).fit(feats, y),
                                np.ndim(y) == 2)

    @classmethod
    def from_fitted(cls, text_model, feature_model, emb_weight: float, multi_label: bool) -> LogitFusion:
        """The fusion of two models already fitted on the same train rows (no refit)."""
        return cls(clone(text_model), clone(feature_model), emb_weight)._set_fitted(text_model, feature_model,
                                                                                   multi_label)

    def _set_fitted(self, text_model, feature_model, multi_label: bool) -> LogitFusion:
        self.text_model_, self.feature_model_, self.multi_label_ = text_model, feature_model, bool(multi_label)
        self.classes_ = np.asarray(text_model.classes_)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        texts, feats = split_frame(X)
        return fuse(self.text_model_.predict_proba(texts), self.feature_model_.predict_proba(feats),
                    self.emb_weight, self.multi_label_)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        P = self.predict_proba(X)
        return (P >= 0.5).astype(np.int64) if self.multi_label_ else self.classes_[P.argmax(axis=1)]


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


def predict_scores(model, inputs, n_labels: int, dtype=np.float32) -> np.ndarray:
    """Probabilities as float32 (n_rows, n_labels), columns in label order.

    Multi-output estimators return one (n_rows, n_classes) array per label; a class
    that never occurred in training gets probability 0.
    """
    proba = model.predict_proba(inputs)
    n_rows = len(inputs)
    out = np.zeros((n_rows, n_labels), dtype=dtype)
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
