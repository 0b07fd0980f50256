"""Selection that does not fit noise: cross-fitted thresholds, the 1-SE tie rule, refit, bad keys."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold

from probekit.core.config import load_config
from probekit.core.errors import ConfigError, ProbekitError
from probekit.stages.classify import crossfit
from probekit.stages.classify.bootstrap import resample_weights
from probekit.stages.classify.compare import tied_models
from probekit.stages.classify.registry import Candidate
from probekit.stages.classify.select import Data, refit, select

SIZES = {"train": 60, "validation": 40, "test": 30}
FAST = ["classify.n_jobs=1", "classify.logreg.max_iter=200", "classify.tfidf_logreg.max_iter=200"]


def _cfg(*extra: str):
    return load_config(None, [*FAST, *extra]).classify


def multi_data(seed: int = 0, n_labels: int = 3, signal: float = 1.0) -> Data:
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n_labels, 8))
    X, Y, texts = {}, {}, {}
    for split, n in SIZES.items():
        Y[split] = (rng.random((n, n_labels)) < 0.35).astype(np.uint8)
        X[split] = (rng.normal(size=(n, 8)) + signal * Y[split] @ W).astype(np.float32)
        texts[split] = [" ".join(f"w{k}" for k in np.flatnonzero(row)) + f" {split} {i}"
                        for i, row in enumerate(Y[split])]
    return Data(X={"cls": X}, texts=texts, y=Y, Y=Y, label_names=[f"l{k}" for k in range(n_labels)],
                problem_type="multi_label")


def hand_threshold(y: np.ndarray, p: np.ndarray, default: float = 0.5) -> float:
    """The F1-best threshold by brute force over the scores (the lowest among equals)."""
    if y.sum() == 0:
        return default
    best = max(sorted(set(p.tolist())), key=lambda t: (f1_score(y, p >= t, zero_division=0), -t))
    return best


# ---- cross-fitted thresholds ---------------------------------------------------------------------------------


def test_out_of_fold_score_by_hand():
    # fold A = rows 0-2, fold B = rows 3-5; one label
    Y = np.array([[1], [0], [1], [0], [1], [0]])
    P = np.array([[0.9], [0.8], [0.3], [0.7], [0.6], [0.2]])
    decider = crossfit.Decider("labels")
    Yhat = crossfit.oof_decisions(Y, P, decider, [np.arange(3), np.arange(3, 6)])
    # tuned on B: t=0.6 (F1 2/3) -> A decided [1, 1, 0]; tuned on A: t=0.3 (F1 4/5) -> B decided [1, 1, 0]
    np.testing.assert_array_equal(Yhat[:, 0], [1, 1, 0, 1, 1, 0])
    assert crossfit.decision_score(Y, Yhat, None) == pytest.approx(4 / 7)  # TP 2, FP 2, FN 1
    # in-sample (one fold): t=0.3 on all six rows, F1 6/8
    assert crossfit.decision_score(Y, crossfit.oof_decisions(Y, P, decider, None), None) == pytest.approx(0.75)


def test_select_scores_out_of_fold_and_cv0_is_the_old_in_sample_score():
    data = multi_data()
    old = select("logreg", data, _cfg("classify.cv_folds=0", "classify.tie_rule='best'"), 0, ["cls"])
    assert all(g["validation_score"] == g["validation_macro_f1"] for g in old.grid)
    assert old.rule["cv_folds"] == 0 and "same validation rows" in old.rule["rule"]
    sel = select("logreg", data, _cfg("classify.cv_folds=4", "classify.tie_rule='best'"), 7, ["cls"])
    assert sel.rule["cv_folds"] == 4 and "4 seeded folds" in sel.rule["rule"]
    assert any(g["validation_score"] != g["validation_macro_f1"] for g in sel.grid)
    # by hand, from the chosen candidate's validation probabilities: KFold(4, shuffled, seed 7)
    Y, P = data.Y["validation"], sel.P_val
    Yhat = np.zeros_like(Y)
    for rest, fold in KFold(4, shuffle=True, random_state=7).split(Y):
        thr = [hand_threshold(Y[rest, k], P[rest, k].astype(np.float64)) for k in range(Y.shape[1])]
        Yhat[fold] = P[fold] >= np.array(thr)
    assert sel.validation_score == pytest.approx(f1_score(Y, Yhat, average="macro", zero_division=0), abs=1e-12)
    # the chosen model's own thresholds are still tuned on every validation row
    np.testing.assert_allclose(sel.thresholds, [hand_threshold(Y[:, k], P[:, k].astype(np.float64))
                                                for k in range(Y.shape[1])])


def test_binary_folds_are_stratified_and_seeded():
    Y = np.eye(2, dtype=np.uint8)[np.r_[np.zeros(8, int), np.ones(32, int)]]
    d = crossfit.Decider("positive", positive=0, rule="f1")
    folds = crossfit.folds(Y, d, 4, 3)
    assert [int(Y[f, 0].sum()) for f in folds] == [2, 2, 2, 2]  # the 8 positives spread evenly
    assert all(np.array_equal(a, b) for a, b in zip(folds, crossfit.folds(Y, d, 4, 3)))
    assert crossfit.folds(Y, crossfit.Decider("argmax"), 4, 3) is None  # nothing tuned: nothing to cross-fit
    assert crossfit.folds(Y, crossfit.Decider("positive", positive=0, rule="fixed"), 4, 3) is None


# ---- the 1-SE tie rule -------------------------------------------------------------------------------------------


def _scored(*points):
    return [crossfit.Scored(i, Candidate("logreg", {"C": C, "class_weight": w}, "cls"), s, 0.5)
            for i, (C, w, s) in enumerate(points)]


def test_tie_rule_picks_the_simplest_within_one_se_and_the_best_when_clearly_better():
    scored = _scored((1.0, "none", 0.60), (0.1, "balanced", 0.595), (0.1, "none", 0.59), (0.03, "none", 0.50))
    best = scored[0]
    simple = lambda c: crossfit.simplicity(c, ["cls"])  # noqa: E731
    tied = crossfit.tied_set(scored, best, 0.02, "one_se")
    assert [s.index for s in tied] == [0, 1, 2]
    assert crossfit.winner(tied, simple).index == 2  # C=0.1 (stronger L2) and no class weight
    assert crossfit.winner(crossfit.tied_set(scored, best, 0.001, "one_se"), simple) is best
    assert crossfit.tied_set(scored, best, 0.5, "best") == [best]


def test_paired_rule_ties_on_the_se_of_the_gap():
    rng = np.random.default_rng(0)
    common = rng.normal(0.6, 0.03, size=200)  # the resampled scores move together (paired)
    best, close, far = _scored((1.0, "none", 0.60), (0.1, "none", 0.595), (0.03, "none", 0.58))
    best.boot, close.boot, far.boot = common, common - 0.005 + rng.normal(0, 0.008, 200), common - 0.02
    assert crossfit.paired_se(best, far) == pytest.approx(0.0, abs=1e-12)
    tied = crossfit.tied_set([best, close, far], best, 0.03, "one_se_paired")
    assert tied == [best, close]  # `far` is 0.02 below with a gap that never varies: clearly worse
    assert crossfit.tied_set([best, close, far], best, 0.03, "one_se") == [best, close, far]


def test_simplicity_orders_declared_per_model():
    s = crossfit.simplicity

    def forest(leaf, depth):
        return s(Candidate("random_forest", {"n_estimators": 9, "max_depth": depth, "min_samples_leaf": leaf,
                                             "class_weight": "none"}))
    assert forest(5, 0) < forest(1, 3) < forest(1, 0)  # bigger leaves, then shallower (0 = unlimited)
    hyb = {"C": 4.0, "class_weight": "none", "analyzer": "word", "emb_C": 1.0, "emb_class_weight": "none"}
    assert s(Candidate("hybrid_logreg", {**hyb, "emb_weight": 0.25}, "cls")) < \
        s(Candidate("hybrid_logreg", {**hyb, "C": 1.0, "emb_weight": 0.5}, "cls"))
    assert s(Candidate("sgd_stream", {"alpha": 0.1})) < s(Candidate("sgd_stream", {"alpha": 0.001}))
    assert s(Candidate("logreg", {"C": 1.0, "class_weight": "none"}, "mean"), ["cls", "mean"]) > \
        s(Candidate("logreg", {"C": 1.0, "class_weight": "none"}, "cls"), ["cls", "mean"])
    assert crossfit.model_rank("logreg") < crossfit.model_rank("tfidf_logreg") < crossfit.model_rank("hybrid_logreg")
    assert crossfit.model_rank("finetuned") > crossfit.model_rank("random_forest_ovr")


def test_select_one_se_reports_the_tied_set_and_the_se_by_hand():
    data = multi_data(signal=0.6)
    cfg = _cfg("classify.logreg.C=[0.01, 0.1, 1.0, 10.0]", "classify.logreg.class_weight=['none', 'balanced']",
               "classify.selection_bootstrap=300", "classify.tie_rule='one_se'")
    sel = select("logreg", data, cfg, 0, ["cls"])
    r = sel.rule
    assert r["tie_rule"] == "one_se" and r["se"] > 0 and r["n_bootstrap"] == 300
    top = max(sel.grid, key=lambda g: g["validation_score"])
    assert r["best"]["validation_score"] == top["validation_score"]
    tied = [g for g in sel.grid if g["validation_score"] >= top["validation_score"] - r["se"] - 1e-12]
    assert [(t["C"], t["class_weight"]) for t in r["tied"]] == [(t["C"], t["class_weight"]) for t in tied]
    simplest = min(tied, key=lambda g: (g["C"], g["class_weight"] != "none"))
    chosen = sel.candidate.params
    assert (chosen["C"], chosen["class_weight"]) == (simplest["C"], simplest["class_weight"])
    assert r["winner"]["validation_score"] == sel.validation_score == simplest["validation_score"]
    # the SE: sd of the best's score over seeded resamples of its out-of-fold decisions
    best = select("logreg", data, _cfg(f"classify.logreg.C=[{r['best']['C']!r}]",
                                       f"classify.logreg.class_weight=[{r['best']['class_weight']!r}]"), 0, ["cls"])
    Y, labels = data.Y["validation"], crossfit.Decider("labels")
    Yhat = crossfit.oof_decisions(Y, best.P_val, labels, crossfit.folds(Y, labels, 5, 0))
    W = resample_weights(len(Y), 300, 0)
    boot = [f1_score(np.repeat(Y, w.astype(int), 0), np.repeat(Yhat, w.astype(int), 0), average="macro",
                     zero_division=0) for w in W]
    assert r["se"] == pytest.approx(np.std(boot, ddof=1), rel=1e-9)
    # "best": the top candidate, whatever its complexity
    plain = select("logreg", data, _cfg(*cfg_keys(cfg), "classify.tie_rule='best'"), 0, ["cls"])
    assert plain.validation_score == top["validation_score"] and plain.rule["tied"] == [plain.rule["best"]]


def cfg_keys(cfg) -> list[str]:
    t = cfg.model_tables["logreg"]
    return [f"classify.logreg.C={list(t['C'])}", f"classify.logreg.class_weight={list(t['class_weight'])}"]


def _entry(score, se, params=None):
    return {"params": params or {}, "selection": {"validation_score": score, "validation_score_se": se},
            "validation": {"macro_auc": 0.5}}


def test_tie_across_models_prefers_the_simpler_model():
    models = {"dummy": _entry(0.2, 0.01), "hybrid_logreg": _entry(0.60, 0.02), "logreg": _entry(0.59, 0.02),
              "tfidf_logreg": _entry(0.585, 0.02), "random_forest": _entry(0.40, 0.02)}
    assert tied_models(models, "one_se")[:2] == (["hybrid_logreg", "logreg", "tfidf_logreg"], "logreg")
    assert tied_models(models, "best")[:2] == (["hybrid_logreg"], "hybrid_logreg")
    # paired: the gap to the best against the SE of that gap over the same resamples
    rng = np.random.default_rng(0)
    common = rng.normal(0.6, 0.02, 200)
    boots = {"hybrid_logreg": common, "logreg": common - 0.01 + rng.normal(0, 0.02, 200),
             "tfidf_logreg": common - 0.015 + rng.normal(0, 0.002, 200), "random_forest": common - 0.2}
    tied, won, se = tied_models(models, "one_se_paired", boots)
    assert tied == ["hybrid_logreg", "logreg"] and won == "logreg" and se["tfidf_logreg"] < 0.005
    models["hybrid_logreg"]["selection"]["validation_score_se"] = 0.001  # clearly better
    assert tied_models(models, "one_se")[1] == "hybrid_logreg"


# ---- refit on train + validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["logreg", "hybrid_logreg"])
def test_refit_on_train_and_validation(model):
    data = multi_data()
    cfg = _cfg("classify.logreg.C=[0.1]", "classify.logreg.class_weight=['none']", "classify.tfidf_logreg.C=[1.0]",
               "classify.tfidf_logreg.class_weight=['none']", "classify.tfidf_logreg.min_df=1",
               "classify.hybrid_logreg.emb_weight=[0.5]", f"classify.models=['{model}']",
               "classify.refit='train+validation'")
    sel = select(model, data, cfg, 0, ["cls"])
    est, seconds, n_rows = refit(sel, data, cfg, 0)
    assert n_rows == SIZES["train"] + SIZES["validation"] and seconds >= 0
    feats = est.feature_model_ if model == "hybrid_logreg" else est
    assert feats[0].n_samples_seen_ == n_rows  # the StandardScaler saw train + validation
    if model == "hybrid_logreg":  # both parts refitted: the words model knows validation-only words
        assert "validation" in est.text_model_[0].vocabulary_
        assert "validation" not in sel.model.text_model_[0].vocabulary_


def test_refit_in_metrics_json(tmp_path):
    import json

    from conftest import make_config, write_fake_cache

    from probekit.stages.classify.train import run_classify

    cfg = make_config(tmp_path, "classify.n_jobs=1", "classify.n_bootstrap=20", "classify.models=['dummy', 'logreg']",
                      "classify.logreg.C=[0.1]", "classify.logreg.class_weight=['none']",
                      "classify.refit='train+validation'", "classify.tie_rule='one_se_paired'")
    write_fake_cache(cfg.run_dir)
    m = json.loads(run_classify(cfg).read_text())
    r = m["models"]["logreg"]["refit"]
    assert r["on"] == "train+validation" and r["n_rows"] == 80 + 30 and "tuned on validation" in r["thresholds"]
    assert m["models"]["dummy"]["refit"] == {"on": "train", "n_rows": 80}  # a baseline is not refitted
    sel = m["models"]["logreg"]["selection"]
    assert {"rule", "cv_folds", "tie_rule", "se", "tied", "winner", "validation_score_se"} <= set(sel)
    tie = m["comparisons"]["tie"]
    assert tie["winner"] == m["comparisons"]["best"] == "logreg" and tie["rule"] == "one_se_paired"
    assert tie["tied"][0]["tie_se"] == 0.0  # logreg against itself (the dummy is a baseline)


# ---- bad keys ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override, match", [
    ("classify.cv_folds=-1", r"cv_folds=-1 must be an integer >= 0"),
    ("classify.cv_folds='3'", r"cv_folds='3' should be of type int"),
    ("classify.selection_bootstrap=-5", r"selection_bootstrap=-5 must be an integer >= 0"),
    ("classify.tie_rule='simplest'", r"tie_rule='simplest' is not one of 'one_se', 'one_se_paired', 'best'"),
    ("classify.refit='all'", r"refit='all' is not one of 'train', 'train\+validation'"),
])
def test_bad_keys_are_one_line(override, match):
    with pytest.raises(ConfigError, match=match) as e:
        _cfg(override)
    assert "\n" not in str(e.value)


def test_more_folds_than_validation_rows_is_one_line():
    with pytest.raises(ProbekitError, match=r"cv_folds=41 is more than the 40 validation rows; set classify.cv_folds"):
        select("logreg", multi_data(), _cfg("classify.cv_folds=41"), 0, ["cls"])
