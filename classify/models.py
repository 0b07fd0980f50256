"""The estimators of the registered models, and how any of them scores.

Every model is declared in classify.registry (name, input, grid, settings); its build function
lives here, where scikit-learn is imported. Every model is a scikit-learn estimator (so skops
can save it without pickle; the one class of our own, LogitFusion, is on classify.persist's
trusted list). A build function takes ``(params, settings, seed, env)``: the candidate's grid
point, its model's ``[classify.<model>]`` settings, the seed and a ``registry.Env`` (not
imported here: the registry imports this module when it first builds, not the reverse).

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

import contextlib
import warnings

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
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from probekit.core.errors import ProbekitError
from probekit.core.runfolder import BOTH, FEATURES, TEXTS  # noqa: F401  (re-exported)
from probekit.stages.classify.stream import fit_streaming as _fit_blocks

TEXT_COLUMN = "text"


def _cw(value: str):
    return None if value == "none" else value


def build_dummy(params: dict, settings: dict, seed: int, env, strategy: str):
    return DummyClassifier(strategy=strategy, random_state=seed)


def _lr(params: dict, settings: dict, seed: int) -> LogisticRegression:
    # lbfgs, not liblinear: liblinear cannot train on the read-only memmaps that joblib's
    # loky workers receive, and it is no faster here (6.8 s vs 6.7 s per fit on GoEmotions).
    return LogisticRegression(C=params["C"], class_weight=_cw(params["class_weight"]),
                              max_iter=settings["max_iter"], random_state=seed)


def build_logreg(params: dict, settings: dict, seed: int, env):
    return make_pipeline(StandardScaler(), OneVsRestClassifier(_lr(params, settings, seed), n_jobs=env.n_jobs))


def build_chain(params: dict, settings: dict, seed: int, env):
    return make_pipeline(StandardScaler(), ClassifierChain(_lr(params, settings, seed), order="random",
                                                           random_state=seed))


def build_tfidf(params: dict, settings: dict, seed: int, env):
    analyzer = params.get("analyzer", "word")
    lo, hi = settings.get("char_ngram_min", 2), settings.get("char_ngram_max", 5)
    if "char" in analyzer and lo > hi:
        raise ProbekitError(f"[classify.tfidf_logreg] char_ngram_min={lo} > char_ngram_max={hi}: "
                            "set char_ngram_min <= char_ngram_max.")
    common = dict(min_df=settings["min_df"], max_features=settings["max_features"], sublinear_tf=True,
                  dtype=np.float32)
    vectors = {"word": TfidfVectorizer(ngram_range=(1, settings["ngram_max"]), **common),
               "char_wb": TfidfVectorizer(analyzer="char_wb", ngram_range=(lo, hi), **common)}
    # word+char_wb: both vocabularies side by side (each up to max_features terms)
    tfidf = vectors.get(analyzer) or FeatureUnion(list(vectors.items()))
    return Pipeline([("tfidf", tfidf), ("ovr", OneVsRestClassifier(_lr(params, settings, seed), n_jobs=env.n_jobs))])


def build_forest(params: dict, settings: dict, seed: int, env, per_label: bool):
    rf = RandomForestClassifier(
        n_estimators=params["n_estimators"], max_depth=params["max_depth"] or None,
        min_samples_leaf=params["min_samples_leaf"], max_features=settings["max_features"],
        class_weight=_cw(params["class_weight"]), max_samples=settings["max_samples"] or None,
        n_jobs=env.n_jobs, random_state=seed,
    )
    return OneVsRestClassifier(rf) if per_label else rf


def build_fusion(params: dict, settings: dict, seed: int, env):
    words, feats = env.parts()
    return LogitFusion(words, feats, emb_weight=params["emb_weight"])


def build_sgd(params: dict, settings: dict, seed: int, env):
    sgd = SGDClassifier(loss="log_loss", alpha=params["alpha"], random_state=seed)
    return make_pipeline(StandardScaler(), MultiOutputClassifier(sgd, n_jobs=env.n_jobs) if env.multi_label else sgd)


def fit_streaming(est, X, y, settings: dict, env):
    """sgd_stream's fit: partial_fit over row blocks of the memory-mapped features (classify.stream)."""
    _fit_blocks(est, X, y, env.n_labels, env.multi_label, settings["epochs"], settings["batch_rows"], env.seed)


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


def stack_inputs(kind: str, first, second):
    """Two splits' :func:`model_input` one after the other (a refit on train + validation)."""
    if kind == FEATURES:
        return np.concatenate([np.asarray(first), np.asarray(second)])
    if kind == TEXTS:
        return list(first) + list(second)
    return pd.concat([first, second], ignore_index=True)


# scikit-learn's warning for a task run outside its Parallel; raised in error when the filters were scrambled
_FALSE_ALARM = "sklearn.utils.parallel.delayed` should be used with `sklearn.utils.parallel.Parallel"


@contextlib.contextmanager
def warning_filters_kept():
    """Leave Python's warning filters as they were, whatever the estimator's threads did to them.

    ``warnings.catch_warnings`` is not thread-safe, and scikit-learn enters it in every task of
    its threaded loops (a forest's trees are fitted and scored in threads): two threads that
    interleave can leave the process's filters emptied. Every later ``Parallel`` call then
    hands its tasks empty filters, each task warns "``sklearn.utils.parallel.delayed`` should
    be used with ``sklearn.utils.parallel.Parallel``" (353 times in one classify), and warnings
    ignored by default (``ResourceWarning``) start to print. So each fit and predict runs in
    this guard: it puts the filters back afterwards, and meanwhile drops that one warning,
    which then only says the filters were scrambled mid-loop (every task here does run in
    scikit-learn's Parallel).
    """
    kept, shown = warnings.filters, warnings.showwarning
    saved = list(kept)

    def show(message, category, *args, **kwargs):
        if not (issubclass(category, UserWarning) and _FALSE_ALARM in str(message)):
            shown(message, category, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
        if warnings.filters is not kept or kept != saved:
            kept[:] = saved
            warnings.filters = kept
            getattr(warnings, "_filters_mutated", lambda: None)()


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
    with warning_filters_kept():
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
