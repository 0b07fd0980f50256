"""Every classifier, declared once: its input, its grid and settings, how it is built and fitted.

A model is one :class:`ModelSpec` in :data:`MODELS`. Its grid keys (a tuple of values each:
every combination is a candidate chosen on validation) and its settings (one value each)
are the keys of its ``[classify.<model>]`` table, with the defaults declared here::

    [classify.logreg]
    C = [0.03, 0.1]                  # a grid key: a list, or one value for a one-point grid
    class_weight = ["none", "balanced"]
    max_iter = 1000                  # a setting

The config is checked against this registry when it loads (probekit.core.sections_classify),
classify enumerates candidates with :func:`candidates` and fits them with :func:`build` and
:func:`fit`, and ``probekit search`` runs the same candidates, one trial each. Adding a model
is one entry here (its build function in classify.models, and a test). Imports nothing heavy:
the build functions (scikit-learn) load on the first build; a config validates without it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from probekit.core.errors import ConfigError
from probekit.core.runfolder import BOTH, FEATURES, TEXTS  # what a model reads: features, texts or both


@dataclass(frozen=True)
class Axis:
    """One grid key: its default values and the rule every value must follow."""

    default: tuple
    kind: str = "number"  # number: > 0; int: an integer >= low; choice: one of `choices`
    low: int = 0
    choices: tuple = ()

    def rule(self) -> str:
        if self.kind == "choice":
            return f"every value must be one of {', '.join(map(repr, self.choices))}"
        return "every value must be a number > 0" if self.kind == "number" else f"integers >= {self.low}"

    def ok(self, v: Any) -> bool:
        if self.kind == "choice":
            return isinstance(v, str) and v in self.choices
        if isinstance(v, bool) or not isinstance(v, (int, float) if self.kind == "number" else int):
            return False
        return v > 0 if self.kind == "number" else v >= self.low


@dataclass(frozen=True)
class Setting:
    """One single-valued setting: its default (whose type a value must have) and its range."""

    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple = ()


@dataclass(frozen=True)
class Env:
    """What building or fitting needs beyond a candidate's params and its model's settings."""

    seed: int = 0
    n_jobs: int = 1
    n_features: int = 0
    n_labels: int = 0
    multi_label: bool = True
    parts: Callable | None = None  # () -> the unfitted estimators of a fusion's parts


@dataclass(frozen=True)
class ModelSpec:
    """A model: the one place its name, input, grid, settings, build and fit are declared.

    Args:
        build: ``build(params, settings, seed, env)`` -> an unfitted scikit-learn estimator.
        fit: ``fit(estimator, X, y, settings, env)``; None = ``estimator.fit(X, y)``.
        parts: a late fusion (classify.models.LogitFusion) of other models' fits:
            ``((model, prefix), ...)``, words first; their grids (keys prefixed) come first in
            this model's grid, and classify reuses their very fits.
        fusion_weight: the grid key holding the weight of the second part's log-odds.
    """

    name: str
    input_kind: str
    build: Callable
    grid: dict = field(default_factory=dict)  # key -> Axis
    settings: dict = field(default_factory=dict)  # key -> Setting
    fit: Callable | None = None
    parts: tuple = ()
    fusion_weight: str = ""
    baseline: bool = False  # the floor every model must beat; never the best unless alone
    multi_label_only: bool = False  # skipped (with a warning) on single-label data
    # the 1-SE tie order of grid points, (key, rule) first key first: "smaller"/"larger" value simpler,
    # "listed" (the axis's choices, first simplest), "shallower" (0 = unlimited, least simple)
    simpler: tuple = ()
    doc: str = ""


@dataclass
class Candidate:
    """One point of one model's grid."""

    model: str
    params: dict = field(default_factory=dict)
    feature_set: str | None = None  # the pooling of the cache it reads; None for texts only

    @property
    def input_kind(self) -> str:
        return spec(self.model).input_kind

    def describe(self) -> dict:
        return {"feature_set": self.feature_set, **self.params}


def _models(fn: str, *extra) -> Callable:
    """Function `fn` of classify.models (the scikit-learn code), imported on the first call."""
    def call(*args):
        from probekit.stages.classify import models

        return getattr(models, fn)(*args, *extra)
    return call


# ---- the models ---------------------------------------------------------------------------------

LOGREG_C = (0.03, 0.1, 0.3, 1.0)  # inverse L2 strength, on standardised features
_WEIGHT = Axis(("none", "balanced"), "choice", choices=("none", "balanced"))
_LR_GRID = {"C": Axis(LOGREG_C), "class_weight": _WEIGHT}
_LR_SIMPLER = (("C", "smaller"), ("class_weight", "listed"))  # stronger L2 first, unweighted before balanced
_MAX_ITER = {"max_iter": Setting(1000, low=1)}
_FOREST = dict(
    grid={"n_estimators": Axis((200,), "int", 1), "max_depth": Axis((0,), "int", 0),  # 0 = grow until pure
          "min_samples_leaf": Axis((1,), "int", 1),
          "class_weight": Axis(("none",), "choice", choices=("none", "balanced", "balanced_subsample"))},
    # bigger leaves and shallower trees are simpler; the number of trees only lowers variance
    simpler=(("min_samples_leaf", "larger"), ("max_depth", "shallower"), ("class_weight", "listed")),
    settings={"max_features": Setting("sqrt", choices=("sqrt", "log2")),
              "max_samples": Setting(0.0, low=0.0, high=1.0)},  # >0: each tree sees this fraction of train
)

MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("dummy", FEATURES, _models("build_dummy", "prior"), baseline=True, doc="DummyClassifier(prior)"),
    ModelSpec("dummy_stratified", FEATURES, _models("build_dummy", "stratified"), baseline=True,
              doc="DummyClassifier(stratified)"),
    ModelSpec("dummy_most_frequent", FEATURES, _models("build_dummy", "most_frequent"), baseline=True,
              doc="DummyClassifier(most_frequent)"),
    ModelSpec("tfidf_logreg", TEXTS, _models("build_tfidf"), grid={"C": Axis((1.0, 4.0, 16.0)), "class_weight": _WEIGHT,
              "analyzer": Axis(("word",), "choice", choices=("word", "char_wb", "word+char_wb"))},
              settings={**_MAX_ITER, "ngram_max": Setting(2, low=1), "min_df": Setting(2, low=1),
                        "max_features": Setting(200_000, low=1), "char_ngram_min": Setting(2, low=1),
                        "char_ngram_max": Setting(5, low=1)}, simpler=(("analyzer", "listed"), *_LR_SIMPLER),
              doc="TF-IDF of the texts' word 1..ngram_max-grams and/or char_wb n-grams -> one-vs-rest LR"),
    ModelSpec("logreg", FEATURES, _models("build_logreg"), grid=_LR_GRID, settings=_MAX_ITER, simpler=_LR_SIMPLER,
              doc="StandardScaler -> one-vs-rest LogisticRegression"),
    ModelSpec("random_forest", FEATURES, _models("build_forest", False), **_FOREST,
              doc="one multi-output RandomForestClassifier"),
    ModelSpec("random_forest_ovr", FEATURES, _models("build_forest", True), **_FOREST, multi_label_only=True,
              doc="one-vs-rest RandomForestClassifier (a forest per label)"),
    ModelSpec("logreg_chain", FEATURES, _models("build_chain"), grid=_LR_GRID, settings=_MAX_ITER,
              simpler=_LR_SIMPLER, multi_label_only=True, doc="StandardScaler -> ClassifierChain(LogisticRegression)"),
    ModelSpec("hybrid_logreg", BOTH, _models("build_fusion"), grid={"emb_weight": Axis((0.25, 0.5, 0.75, 1.0))},
              parts=(("tfidf_logreg", ""), ("logreg", "emb_")), fusion_weight="emb_weight",
              simpler=(("emb_weight", "smaller"),),  # less weight on the features: closer to the words alone
              doc="LogitFusion: tfidf_logreg's log-odds + emb_weight x logreg's"),
    ModelSpec("sgd_stream", FEATURES, _models("build_sgd"), fit=_models("fit_streaming"),
              grid={"alpha": Axis(tuple(1.0 / (c * 1000.0) for c in LOGREG_C))},  # logreg's C, as SGD's alpha
              settings={"epochs": Setting(5, low=1), "batch_rows": Setting(4096, low=1)},
              simpler=(("alpha", "larger"),),
              doc="StandardScaler + SGD (log loss) per label, by partial_fit over the memory-mapped features"),
)}
BASELINES = tuple(n for n, s in MODELS.items() if s.baseline)
# The 1-SE tie rule across models: the first listed wins; unlisted models follow (MODELS order), fine-tuned last
SIMPLICITY_ORDER = ("dummy", "dummy_most_frequent", "dummy_stratified", "logreg", "sgd_stream", "logreg_chain",
                    "tfidf_logreg", "hybrid_logreg", "random_forest", "random_forest_ovr")


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; models: {', '.join(MODELS)}.")
    return MODELS[name]


def axes(name: str) -> dict[str, Axis]:
    """Every grid key of `name` (a fusion's parts' keys first, prefixed), with its rule."""
    s = spec(name)
    out = {prefix + k: a for model, prefix in s.parts for k, a in spec(model).grid.items()}
    return out | s.grid


def check_grid(where: str, name: str, key: str, value: Any) -> tuple:
    """A grid key's values as a tuple (one value is a one-point grid), or a one-line ConfigError."""
    axis = axes(name)[key]
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values:
        raise ConfigError(f"{where} {key} is an empty grid: give at least one value.")
    if not all(axis.ok(v) for v in values):
        raise ConfigError(f"{where} {key}={list(values)}: {axis.rule()}.")
    return values


def _check_setting(where: str, key: str, st: Setting, value: Any) -> Any:
    kind = type(st.default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        raise ConfigError(f"{where} {key}={value!r} should be of type {kind.__name__}.")
    if st.choices and value not in st.choices:
        raise ConfigError(f"{where} {key}={value!r} is not one of {', '.join(map(repr, st.choices))}.")
    if (st.low is not None and value < st.low) or (st.high is not None and value > st.high):
        bounds = f">= {st.low:g}" if st.high is None else f"in [{st.low:g}, {st.high:g}]"
        raise ConfigError(f"{where} {key}={value!r} must be {bounds}.")
    return value


def resolve(name: str, table: dict) -> dict:
    """The ``[classify.<name>]`` table checked, with every default filled in."""
    s, where = spec(name), f"[classify.{name}]"
    valid = [*s.grid, *s.settings]
    for key in table:
        if key not in valid:
            inherited = "; ".join(f"{', '.join(prefix + k for k in spec(m).grid)} come from [classify.{m}]"
                                  for m, prefix in s.parts)
            raise ConfigError(f"{where} has no key {key!r}; valid keys: {', '.join(valid) or 'none'}"
                              + (f" ({inherited})" if inherited else "") + ".")
    out = {k: check_grid(where, name, k, table.get(k, a.default)) for k, a in s.grid.items()}
    return out | {k: _check_setting(where, k, st, table.get(k, st.default)) for k, st in s.settings.items()}


def resolve_tables(tables: dict) -> dict:
    """Every registered model's table, checked and completed (unknown model names refused)."""
    for name in tables:
        if name not in MODELS:
            raise ConfigError(f"[classify.{name}] is not a model; models: {', '.join(MODELS)}.")
    return {name: resolve(name, tables.get(name, {})) for name in MODELS}


def product(grid: dict) -> list[dict]:
    """Every combination of a grid's values, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def grid_of(name: str, tables: dict) -> dict[str, tuple]:
    """The resolved grid of `name`: its parts' grids (keys prefixed) from their own tables, then its own."""
    s = spec(name)
    out = {prefix + k: tables[model][k] for model, prefix in s.parts for k in spec(model).grid}
    return out | {k: tables[name][k] for k in s.grid}


def candidates(name: str, cfg, poolings: list[str], grid: dict | None = None) -> list[Candidate]:
    """Every hyperparameter combination of model `name`, over every feature set.

    Args:
        cfg: the ``[classify]`` section (its resolved ``model_tables``).
        grid: values replacing some of the model's grid keys (``[search.grid]``).
    """
    s = spec(name)
    values = grid_of(name, cfg.model_tables) | dict(grid or {})
    pools = [None] if s.input_kind == TEXTS else poolings[:1] if s.baseline else poolings
    return [Candidate(name, p, pool) for pool in pools for p in product(values)]


def parts(c: Candidate) -> list[Candidate]:
    """The candidates of the models whose fits fusion candidate `c` combines (words first)."""
    out = []
    for model, prefix in spec(c.model).parts:
        params = {k: c.params[prefix + k] for k in spec(model).grid}
        out.append(Candidate(model, params, None if spec(model).input_kind == TEXTS else c.feature_set))
    return out


def part_models(names) -> set[str]:
    """The models whose fits the fusion models among `names` reuse."""
    return {model for n in names for model, _ in spec(n).parts}


def _env(c: Candidate, cfg, seed: int, n_features: int, n_labels: int, multi_label: bool) -> Env:
    def built_parts() -> list:
        return [build(p, cfg, seed, n_features, multi_label, n_labels) for p in parts(c)]
    return Env(seed, cfg.n_jobs, n_features, n_labels, multi_label, built_parts)


def build(c: Candidate, cfg, seed: int, n_features: int = 0, multi_label: bool = True, n_labels: int = 0):
    """An unfitted estimator for candidate `c`, with its model's settings from `cfg` ([classify])."""
    return spec(c.model).build(c.params, cfg.model_tables[c.model], seed,
                               _env(c, cfg, seed, n_features, n_labels, multi_label))


def fit(c: Candidate, est, X, y, cfg, seed: int, n_labels: int, multi_label: bool):
    """Fit `est` (built for `c`) on train as its model declares; returns it."""
    s = spec(c.model)
    if s.fit is None:
        return est.fit(X, y)
    s.fit(est, X, y, cfg.model_tables[c.model], _env(c, cfg, seed, 0, n_labels, multi_label))
    return est

