"""Selection scores that do not fit noise: cross-fitted thresholds, a bootstrap SE, the 1-SE rule.

A candidate's thresholds are tuned on validation rows; scoring it on those same rows rewards
thresholds that fit their noise (on GoEmotions the in-sample validation macro-F1 sat 0.05 above
test, and the top two grid points differed by 0.0005). So the selection score is cross-fitted:
the validation rows are split into ``[classify] cv_folds`` seeded folds (multi-label: KFold,
shuffled; single-label: StratifiedKFold on the class), each fold is decided with thresholds
tuned on the other folds, and the score is the macro-F1 (binary data: the positive class's F1)
of those pooled out-of-fold decisions over every validation row. No model is refitted: only
thresholds are tuned, K times. ``cv_folds`` 0 or 1 tunes and scores on the same rows (the old
rule). Single-label data with more than two classes is decided by the argmax: nothing is tuned,
so the folds change nothing.

The tie rule (``[classify] tie_rule = "one_se"``): the best score's standard error is the
standard deviation of that score over ``selection_bootstrap`` seeded resamples of the best
candidate's out-of-fold decisions; every candidate within one SE of the best is tied, and the
simplest of them wins (:func:`simplicity`, from the ``simpler`` keys of classify.registry).
``"one_se_paired"`` ties a candidate when its gap to the best is within the SE of that gap (the
same resamples for both: the gap varies far less than either score, so fewer candidates tie).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from probekit.core.errors import ProbekitError
from probekit.core.metrics import predict_labels
from probekit.core.thresholds import tune_binary_threshold, tune_thresholds
from probekit.stages.classify import registry
from probekit.stages.classify.bootstrap import resample_weights

TIE_RULES = ("one_se", "one_se_paired", "best")
REFITS = ("train", "train+validation")


@dataclass(frozen=True)
class Decider:
    """How a candidate's probabilities become 0/1 decisions, and what of that is tuned on rows.

    kind: "labels" (multi-label, per-label F1-best thresholds), "fixed" (multi-label, one fixed
    threshold), "positive" (binary data: the positive column's threshold by `rule`) or "argmax".
    """

    kind: str
    threshold: float = 0.5
    positive: int | None = None
    rule: str = "f1"
    recall_target: float = 0.9

    @classmethod
    def of(cls, multi_label: bool, positive: int | None, cfg) -> Decider:
        """The decision of data (multi-label or not, binary's positive column) under ``[classify]`` `cfg`."""
        if multi_label:
            return cls("labels" if cfg.thresholds == "tune" else "fixed", cfg.threshold)
        if positive is not None:
            return cls("positive", cfg.threshold, positive, cfg.binary_threshold, cfg.recall_target)
        return cls("argmax")

    @property
    def tuned(self) -> bool:
        """Whether any threshold is tuned on rows (else the folds change nothing)."""
        return self.kind == "labels" or (self.kind == "positive" and self.rule != "fixed")

    def tune(self, Y: np.ndarray, P: np.ndarray):
        if self.kind == "labels":
            return tune_thresholds(Y, P, default=self.threshold)
        if self.kind == "positive":
            k = self.positive
            return tune_binary_threshold(Y[:, k], P[:, k], self.rule, self.threshold, self.recall_target)
        return self.threshold

    def apply(self, P: np.ndarray, tuned) -> np.ndarray:
        if self.kind in ("labels", "fixed"):
            return predict_labels(P, "multi_label", tuned)
        return predict_labels(P, "single_label", tuned, self.positive)


def check_folds(cv_folds: int, n_rows: int) -> None:
    """``[classify] cv_folds`` against the validation rows, as one line."""
    if cv_folds > n_rows:
        raise ProbekitError(f"[classify] cv_folds={cv_folds} is more than the {n_rows} validation rows; "
                            f"set classify.cv_folds to at most {n_rows} (0 = tune and score on the same rows).")


def folds(Y: np.ndarray, decider: Decider, cv_folds: int, seed: int) -> list[np.ndarray] | None:
    """The validation rows of each fold (seeded), or None: one fold, tuned and scored in-sample."""
    if cv_folds < 2 or not decider.tuned:
        return None
    rows = np.arange(len(Y))
    if decider.kind == "labels":
        return [test for _, test in KFold(cv_folds, shuffle=True, random_state=seed).split(rows)]
    with warnings.catch_warnings():  # a class rarer than cv_folds: some folds hold none of it, as said
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        split = StratifiedKFold(cv_folds, shuffle=True, random_state=seed).split(rows, np.asarray(Y).argmax(1))
        return [test for _, test in split]


def oof_decisions(Y: np.ndarray, P: np.ndarray, decider: Decider, fold_rows: list[np.ndarray] | None) -> np.ndarray:
    """0/1 decisions (n_rows, n_labels): each fold's rows at thresholds tuned on the other folds."""
    Y, P = np.asarray(Y), np.asarray(P)
    if fold_rows is None:
        return decider.apply(P, decider.tune(Y, P))
    out = np.zeros(P.shape, dtype=np.int64)
    for test in fold_rows:
        rest = np.setdiff1d(np.arange(len(Y)), test, assume_unique=True)
        out[test] = decider.apply(P[test], decider.tune(Y[rest], P[rest]))
    return out


def _f1(tp, fp, fn):
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)


def decision_score(Y: np.ndarray, Yhat: np.ndarray, positive: int | None, W: np.ndarray | None = None):
    """Macro-F1 of decisions `Yhat` (binary data: the `positive` column's F1), as core.metrics scores it.

    With row weights W (n_boot, n_rows): one score per resample, (n_boot,).
    """
    Y, Yhat = np.asarray(Y, dtype=np.float64), np.asarray(Yhat, dtype=np.float64)
    w = np.ones((1, len(Y))) if W is None else np.asarray(W, dtype=np.float64)
    f1 = _f1(w @ (Y * Yhat), w @ ((1 - Y) * Yhat), w @ (Y * (1 - Yhat)))
    out = f1[:, positive] if positive is not None else f1.mean(axis=1)
    return float(out[0]) if W is None else out


def standard_error(Y: np.ndarray, Yhat: np.ndarray, positive: int | None, n_boot: int, seed: int) -> float:
    """The score's bootstrap standard error over `n_boot` seeded resamples of the rows (0 when n_boot = 0)."""
    if n_boot < 2:
        return 0.0
    return float(np.std(decision_score(Y, Yhat, positive, resample_weights(len(Y), n_boot, seed)), ddof=1))


def rule_text(decider: Decider, cv_folds: int, tie_rule: str, n_boot: int) -> str:
    """What metrics.json's ``selection.rule`` says."""
    what = "positive-class F1" if decider.kind == "positive" else "macro-F1"
    if decider.tuned and cv_folds >= 2:
        kind = "StratifiedKFold" if decider.kind == "positive" else "KFold"
        how = (f"validation {what} of out-of-fold decisions: the validation rows in {cv_folds} seeded folds "
               f"({kind}, shuffled), each fold decided at thresholds tuned on the other {cv_folds - 1}")
    elif decider.tuned:
        how = f"validation {what} at thresholds tuned on the same validation rows (cv_folds={cv_folds})"
    else:
        how = f"validation {what} ({'argmax' if decider.kind == 'argmax' else 'fixed threshold'}: nothing tuned)"
    if tie_rule == "one_se":
        how += (f"; candidates within one standard error of the best (the sd of the best's score over {n_boot} "
                "bootstrap resamples of its validation decisions) are tied and the simplest wins")
    elif tie_rule == "one_se_paired":
        how += (f"; candidates whose score is below the best's by at most the standard error of that difference "
                f"(the sd of the paired difference over {n_boot} bootstrap resamples of the validation rows) "
                "are tied and the simplest wins")
    else:
        how += "; the best wins (ties: validation macro AUC, binary: average precision)"
    return how + ". The chosen model's final thresholds are tuned on the whole validation split."


@dataclass
class Scored:
    """One candidate's place in the selection."""

    index: int  # its grid position
    candidate: object  # registry.Candidate
    score: float  # the selection score (out-of-fold)
    tie_break: float  # validation macro AUC (binary: average precision)
    boot: np.ndarray | None = None  # the score under each bootstrap resample of the validation rows


def paired_se(best: Scored, other: Scored) -> float:
    """The bootstrap standard error of the difference of two candidates' scores (the same resamples)."""
    if best.boot is None or other.boot is None or len(best.boot) < 2:
        return 0.0
    return float(np.std(best.boot - other.boot, ddof=1))


def tied_set(scored: list[Scored], best: Scored, se: float, tie_rule: str) -> list[Scored]:
    """The candidates tied with `best`: within `se` of its score ("one_se"), within one standard error
    of their paired difference ("one_se_paired"), or `best` alone ("best")."""
    if tie_rule == "one_se":
        return [s for s in scored if s.score >= best.score - se - 1e-12]
    if tie_rule == "one_se_paired":
        return [s for s in scored if best.score - s.score <= paired_se(best, s) + 1e-12]
    return [best]


def winner(tied: list[Scored], simplicity) -> Scored:
    """The simplest of the tied (`simplicity(candidate)` -> a sort key), then the higher score, then grid order."""
    return min(tied, key=lambda s: (simplicity(s.candidate), -s.score, -s.tie_break, s.index))


def simpler_keys(name: str) -> tuple:
    """(grid key, rule) of `name` in tie order: its own, then its parts' (prefixed)."""
    s = registry.spec(name)
    parts = tuple((prefix + k, rule) for model, prefix in s.parts for k, rule in registry.spec(model).simpler)
    return s.simpler + parts


def simplicity(c: registry.Candidate, poolings: list[str] = ()) -> tuple:
    """A sort key of candidate `c`, simplest first (its model's ``simpler``), then its pooling's order."""
    out = []
    for key, rule in simpler_keys(c.model):
        v = c.params[key]
        if rule == "listed":
            out.append(registry.axes(c.model)[key].choices.index(v))
        else:
            out.append({"smaller": v, "larger": -v, "shallower": v if v > 0 else float("inf")}[rule])
    pools = list(poolings)
    return (*out, pools.index(c.feature_set) if c.feature_set in pools else -1)


def model_rank(name: str) -> int:
    """Where model `name` stands in the tie order across models (lower = simpler)."""
    if name in registry.SIMPLICITY_ORDER:
        return registry.SIMPLICITY_ORDER.index(name)
    names = list(registry.MODELS)
    return len(registry.SIMPLICITY_ORDER) + (names.index(name) if name in names else len(names))
