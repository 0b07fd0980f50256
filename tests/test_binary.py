"""Binary data (two labels, single-label): the positive class's metrics, threshold and report.

The positive-class block equals scikit-learn's functions; the threshold is tuned on
validation rows only; selection, intervals and ``p_better`` use the positive class's F1; the
report leads with it (cards, ROC and PR curves, the confusion matrix in counts and rates) and
has no strongest/weakest-label cards. Also the report's rough edges (issue 15): single-label
headers say argmax, map and density colours agree, the header names the models' poolings,
truncation is a summary card, ties are worded as ties. The browser checks of the binary page
are in test_report_binary_browser.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv, to_rgb
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from probekit.core.cache import CacheWriter
from probekit.core.config import load_config
from probekit.core.errors import ConfigError, ProbekitError
from probekit.core.metrics import positive_block, positive_index, predict_labels
from probekit.core.runfolder import features_dir
from probekit.core.thresholds import tune_binary_threshold
from probekit.stages.analysis import plots, results, summary
from probekit.stages.analysis.report import build_report
from probekit.stages.analysis.table import results_table
from probekit.stages.classify import bootstrap
from probekit.stages.classify.compare import compare_predictions, decision_entry, predict_entry
from probekit.stages.classify.select import BINARY_SELECTION_METRIC, Data, positive_for, select

LABELS = ["angry", "other"]  # the positive class first, as the goemotions-binary preset has it
SIZES = {"train": 80, "validation": 40, "test": 40}


def _classify_cfg(*extra: str):
    return load_config(None, ["classify.n_jobs=1", "classify.n_bootstrap=200", *extra]).classify


def binary_data(seed: int = 0, rate: float = 0.25) -> Data:
    """Features with signal for the positive class ("angry", column 0, about `rate` of the rows)."""
    rng = np.random.default_rng(seed)
    X, y, Y, texts = {}, {}, {}, {}
    for split, n in SIZES.items():
        pos = rng.random(n) < rate
        pos[:2] = True  # every split holds both classes
        y[split] = np.where(pos, 0, 1).astype(np.int64)
        Y[split] = np.eye(2, dtype=np.uint8)[y[split]]
        feats = rng.normal(size=(n, 6)).astype(np.float32)
        feats[:, 0] += 1.5 * pos
        X[split] = feats
        texts[split] = [f"{split} row {i}" for i in range(n)]
    return Data(X={"mean": X}, texts=texts, y=y, Y=Y, label_names=LABELS, problem_type="single_label")


# ---- core: the positive class's metrics and threshold ----------------------------------------------------------


def test_positive_block_equals_sklearn():
    y = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.55, 0.3, 0.3, 0.2, 0.6, 0.7, 0.1, 0.4])
    b = positive_block(y, p, "toxic", 0.5)
    pred = (p >= 0.5).astype(int)
    assert b["precision"] == pytest.approx(precision_score(y, pred))
    assert b["recall"] == pytest.approx(recall_score(y, pred))
    assert b["f1"] == pytest.approx(f1_score(y, pred))
    assert b["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert b["average_precision"] == pytest.approx(average_precision_score(y, p))
    assert (b["label"], b["threshold"], b["support"]) == ("toxic", 0.5, 4)
    none = positive_block(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.9]), "toxic", 0.5)
    assert none["roc_auc"] is None and none["average_precision"] is None and none["f1"] == 0.0


def test_positive_index_named_minority_and_ties():
    y = np.array([0, 0, 0, 1])
    assert positive_index(["no", "yes"], "single_label", y) == 1  # the minority
    assert positive_index(["rare", "common"], "single_label", np.array([0, 1, 1, 1])) == 0
    assert positive_index(["False", "True"], "single_label", np.array([0, 1])) == 1  # a tie: the second
    assert positive_index(["no", "yes"], "single_label", y, "no") == 0  # named
    assert positive_index(["a", "b", "c"], "single_label", np.array([0, 1, 2])) is None
    assert positive_index(["a", "b"], "multi_label", np.eye(2)) is None
    with pytest.raises(ValueError, match="positive_label='maybe' is not among"):
        positive_index(["no", "yes"], "single_label", y, "maybe")


def test_binary_decision_predicts_the_positive_column_at_its_threshold():
    P = np.array([[0.3, 0.7], [0.25, 0.75], [0.6, 0.4]])
    assert predict_labels(P, "single_label", 0.25, positive=0).argmax(1).tolist() == [0, 0, 0]
    assert predict_labels(P, "single_label", 0.3, positive=0).argmax(1).tolist() == [0, 1, 0]
    assert predict_labels(P, "single_label", 0.9, positive=1).argmax(1).tolist() == [0, 0, 0]
    assert predict_labels(P, "single_label").argmax(1).tolist() == [1, 1, 0]  # no positive: argmax


def test_binary_threshold_rules():
    y = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.55, 0.3, 0.3, 0.2, 0.6, 0.7, 0.1, 0.4])
    precision, recall, thr = precision_recall_curve(y, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    assert tune_binary_threshold(y, p, "f1") == pytest.approx(thr[np.argmax(f1[:-1])])
    assert tune_binary_threshold(y, p, "fixed", fixed=0.4) == 0.4
    t = tune_binary_threshold(y, p, "recall", recall_target=0.75)  # the highest threshold with recall >= 0.75
    assert t == 0.55 and recall_score(y, p >= t) >= 0.75 > recall_score(y, p >= 0.6)
    assert tune_binary_threshold(y, p, "recall", recall_target=1.0) == 0.3
    assert tune_binary_threshold(np.zeros(3), np.array([0.1, 0.5, 0.9]), "f1", fixed=0.5) == 0.5


def test_config_checks_the_binary_threshold():
    assert _classify_cfg().binary_threshold == "f1"
    with pytest.raises(ConfigError, match="binary_threshold='best' is not one of"):
        _classify_cfg("classify.binary_threshold='best'")
    with pytest.raises(ConfigError, match="recall_target=1.5 must be in"):
        _classify_cfg("classify.recall_target=1.5")


# ---- classify: selection, blocks, intervals ---------------------------------------------------------------------


def test_threshold_is_tuned_on_validation_rows_only():
    cfg = _classify_cfg("classify.logreg.C=[0.1, 1.0]", "classify.logreg.class_weight=['none']")
    data = binary_data()
    sel = select("logreg", data, cfg, 0, ["mean"])
    flipped = binary_data()
    flipped.y["test"] = 1 - flipped.y["test"]
    flipped.Y["test"] = 1 - flipped.Y["test"]
    again = select("logreg", flipped, cfg, 0, ["mean"])
    assert sel.positive[0] == 0 and sel.positive == again.positive
    assert sel.validation_score == again.validation_score
    k, t = sel.positive
    best_f1 = f1_score(data.y["validation"] == k, sel.P_val[:, k] >= t)
    point = next(g for g in sel.grid if g["C"] == sel.candidate.params["C"])
    assert point["validation_positive_f1"] == pytest.approx(best_f1)  # at the threshold tuned on every row
    assert sel.validation_score == point["validation_score"]  # the selection score: cross-fitted (cv_folds)
    assert sel.metric == BINARY_SELECTION_METRIC and "positive_threshold" in sel.grid[0]
    changed = binary_data()
    changed.Y["validation"] = changed.Y["validation"][::-1].copy()
    assert positive_for(sel.P_val, changed, cfg) != sel.positive  # validation labels do move it


def test_positive_label_is_checked_at_classify():
    data = binary_data()
    data.positive_label = "calm"
    with pytest.raises(ProbekitError, match=r"\[data\] positive_label='calm' is not among"):
        _ = data.positive


def _entries(data: Data, cfg) -> tuple[dict, dict]:
    """Entries as classify writes them, for a perfect-ish model, a weaker one and the prior dummy."""
    rng = np.random.default_rng(3)
    models, preds = {}, {}
    for name, noise in (("logreg", 0.6), ("tfidf_logreg", 1.5), ("dummy", None)):
        P = {}
        for s in ("validation", "test"):
            n = len(data.y[s])
            if noise is None:
                p = np.full(n, data.Y["train"][:, 0].mean())
            else:
                p = 1 / (1 + np.exp(-(2.0 * data.Y[s][:, 0] - 1 + noise * rng.normal(size=n))))
            P[s] = np.stack([p, 1 - p], axis=1).astype(np.float32)
        pos = positive_for(P["validation"], data, cfg)
        entry = decision_entry(data, cfg, P, None, pos)
        entry |= {"fit_seconds": 0.1, "input": "texts" if name == "tfidf_logreg" else "features",
                  "feature_set": None if name == "tfidf_logreg" else "mean", "params": {},
                  "selection": {"validation_score": entry["validation"]["positive"]["f1"], "n_candidates": 1,
                                "chosen": {}, "grid": []}}
        models[name] = entry
        preds[name] = (P["test"], predict_labels(P["test"], "single_label"))  # argmax: compare re-decides
    return models, preds


def test_blocks_intervals_and_comparison_use_the_positive_class():
    data, cfg = binary_data(), _classify_cfg()
    models, preds = _entries(data, cfg)
    comp = compare_predictions(models, preds, data.Y["test"], cfg, seed=0)
    assert comp["best"] == "logreg" and comp["chosen_by"] == BINARY_SELECTION_METRIC
    assert comp["positive_label"] == "angry"
    e = models["logreg"]
    assert e["thresholds"] is None and e["positive"]["label"] == "angry" and e["positive"]["index"] == 0
    for split in ("validation", "test"):
        b = e[split]["positive"]
        assert set(b) == {"label", "precision", "recall", "f1", "roc_auc", "average_precision", "threshold", "support"}
        assert b["threshold"] == e["positive"]["threshold"]
        y, p = data.Y[split][:, 0], preds["logreg"][0][:, 0] if split == "test" else None
        if p is not None:
            assert b["f1"] == pytest.approx(f1_score(y, p >= b["threshold"]))
            assert b["average_precision"] == pytest.approx(average_precision_score(y, p))
    # the tuned block is the decision at the threshold; the outer block stays the argmax
    Yhat = predict_entry(preds["logreg"][0], "single_label", e)
    assert e["test"]["tuned"]["accuracy"] == pytest.approx(np.mean(Yhat.argmax(1) == data.y["test"]))
    assert np.asarray(e["test"]["tuned"]["confusion_matrix"]).sum() == SIZES["test"]
    ci = e["test"]["ci"]
    assert {"positive_f1", "positive_average_precision", "macro_f1"} <= set(ci)
    lo, hi = ci["positive_f1"]
    assert lo <= e["test"]["positive"]["f1"] <= hi
    # p_better compares positive-class F1 over the same resamples
    W = bootstrap.resample_weights(SIZES["test"], cfg.n_bootstrap, 0)
    f1 = {m: bootstrap.bootstrap_metrics(data.Y["test"], preds[m][0], predict_entry(preds[m][0], "single_label",
                                                                                    models[m]), W, positive=0)
          ["positive_f1"] for m in models}
    assert comp["p_better"]["tfidf_logreg"] == pytest.approx(np.mean(f1["logreg"] > f1["tfidf_logreg"])
                                                             + 0.5 * np.mean(f1["logreg"] == f1["tfidf_logreg"]))


def test_bootstrap_average_precision_matches_sklearn_on_resampled_rows():
    rng = np.random.default_rng(1)
    y, s = (rng.random(30) < 0.3).astype(int), np.round(rng.random(30), 1)  # ties included
    W = bootstrap.resample_weights(30, 25, 2)
    got = bootstrap.weighted_average_precision(y, s, W)
    for w, g in zip(W, got):
        rows = np.repeat(np.arange(30), w.astype(int))
        want = average_precision_score(y[rows], s[rows]) if y[rows].sum() else np.nan
        assert g == pytest.approx(want, nan_ok=True)


# ---- the report --------------------------------------------------------------------------------------------------


def make_binary_run(root: Path) -> Path:
    """A binary run folder: a cache (with truncated texts), scores and metrics.json as classify writes them."""
    data, cfg = binary_data(), _classify_cfg()
    models, preds = _entries(data, cfg)
    comp = compare_predictions(models, preds, data.Y["test"], cfg, seed=0)
    run_dir = root / "b"
    rng = np.random.default_rng(0)
    with CacheWriter(features_dir(run_dir)) as writer:
        for split in SIZES:
            X = np.concatenate([data.X["mean"][split], rng.normal(size=(SIZES[split], 2)).astype(np.float32)], 1)
            writer.add_split(split, X, data.y[split], data.texts[split], [f"{split}-{i}" for i in range(SIZES[split])],
                             extra={"mean": X})
        writer.commit({"model_id": "fake/encoder", "model_revision": "abc", "pooling": "cls", "layer": -1,
                       "max_length": 32, "truncation": True, "hidden_size": 8, "dtype": "float32",
                       "label_names": LABELS, "problem_type": "single_label", "long_text": {"mode": "truncate"},
                       "poolings": {"cls": {"hidden_size": 8}, "mean": {"hidden_size": 8}},
                       "n_truncated": {"train": 20, "validation": 4, "test": 6}})
    (run_dir / "scores").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for name, (P_test, _) in preds.items():
        np.save(run_dir / "scores" / f"{name}.test.npy", P_test)
        p = rng.random(SIZES["validation"]).astype(np.float32)
        np.save(run_dir / "scores" / f"{name}.validation.npy", np.stack([p, 1 - p], 1))
    metrics = {"schema_version": 2, "run": "b", "problem_type": "single_label", "labels": LABELS, "seed": 0,
               "positive_label": comp.get("positive_label"), "models": models, "comparisons": comp}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run_dir


def build_binary(root: Path) -> tuple[Path, Path, str]:
    make_binary_run(root)
    cfg = load_config(None, [f"run.artifacts={str(root)!r}", "run.name='b'", "classify.n_jobs=1",
                             "report.umap_max_points=60", "report.umap_n_neighbors=10"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        html_path = build_report(cfg)
    return root / "b", html_path, html_path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def binary_report(tmp_path_factory):
    return build_binary(tmp_path_factory.mktemp("binary"))


def _section(text: str, name: str) -> str:
    return re.search(rf'<section id="{name}">(.*?)</section>', text, re.S).group(1)


def test_binary_report_leads_with_the_positive_class(binary_report):
    run_dir, html_path, text = binary_report
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = metrics["models"]["logreg"]["test"]["positive"]
    top = _section(text, "summary")
    assert "test angry F1 <b>" + f"{best['f1']:.3f}" + "</b>" in top
    assert "angry precision / recall" in top and "angry average precision" in top and "threshold" in top
    assert f"{best['threshold']:.3f}" in top
    assert "strongest labels" not in top and "weakest labels" not in top
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["positive_label"] == "angry" and report["images"]["curves"] == "curves.png"
    assert (run_dir / "report" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "ROC and precision-recall curves" in _section(text, "labels")
    models = _section(text, "models")
    assert "angry F1" in models and "average precision" in models and "@ 0.5" not in models
    conf = _section(text, "confusions")
    assert 'id="binary-confusion"' in conf and "of all" in conf and "angry predicted at p ≥" in conf


def test_binary_confusion_counts_are_the_tuned_decision(binary_report):
    run_dir, _, text = binary_report
    metrics = json.loads((run_dir / "metrics.json").read_text())
    counts = metrics["models"]["logreg"]["test"]["tuned"]["confusion_matrix"]
    cells = re.findall(r"<b>([\d,]+)</b><br>", _section(text, "confusions"))
    assert [int(c) for c in cells] == [c for row in counts for c in row]


def test_binary_table_and_header_and_truncation(binary_report):
    run_dir, _, text = binary_report
    metrics = json.loads((run_dir / "metrics.json").read_text())
    md = results_table(metrics)
    assert "test angry F1 [CI]" in md.splitlines()[0] and "threshold" in md.splitlines()[0]
    assert "| **logreg** |" in md
    head = re.search(r"<header>(.*?)</header>", text, re.S).group(1)
    assert "mean features (logreg)" in head and "words (tfidf_logreg)" in head and "cls pooling" not in head
    assert "positive class angry" in head
    top = _section(text, "summary")
    assert "texts cut at 32 tokens" in top and "19%" in top and "encoder.long_text = \"window\"</code>" in top


# ---- rough edges: single-label headers, colours, ties ------------------------------------------------------------


def test_single_label_models_table_says_argmax_and_shows_validation(tmp_path_factory):
    from test_analysis import build

    _, _, text = build(tmp_path_factory, "single_label")
    models = _section(text, "models")
    assert "test, argmax" in models and "@ 0.5" not in models and "tuned on validation" not in models
    assert re.search(r'<th colspan="2">validation</th>', models)
    conf = _section(text, "confusions")
    assert "Per-class precision and recall" in conf and 'id="counts-table"' in conf


def test_density_panels_take_the_map_colours(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 2))
    Y = np.eye(3, dtype=int)[rng.integers(0, 3, 60)]
    seen = {}

    def keep(fig, path, dpi=0):
        seen["fig"] = fig
        return Path(path)

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.plot_umap_density(emb, Y, ["a", "b", "c"], tmp_path / "d.png")
    colors = plots.label_colors(3)
    seen["fig"].canvas.draw()  # hexbin maps counts to colours when drawn
    for k, ax in enumerate(seen["fig"].axes[:3]):
        faces = ax.collections[0].get_facecolors()[:, :3]
        hue = rgb_to_hsv(np.asarray(to_rgb(colors[k])))[0]
        assert np.allclose(rgb_to_hsv(faces)[:, 0], hue, atol=0.02)  # every hexagon in the label's own hue
    assert np.allclose(plots.label_cmap(colors[1])(1.0)[:3], to_rgb(colors[1]), atol=0.01)


def test_ties_are_worded_as_ties():
    def entry(f1, input_="features"):
        return {"input": input_, "test": {"tuned": {"macro_f1": f1}}}

    tie = results.verdict({"models": {"tfidf_logreg": entry(1.0, "texts"), "logreg": entry(1.0)}})
    assert "tie" in tie and "beats" not in tie
    win = results.verdict({"models": {"tfidf_logreg": entry(0.8, "texts"), "logreg": entry(0.9)}})
    assert "The frozen encoder beats words here" in win


def test_truncation_card_is_silent_without_cut_texts_or_with_windows():
    assert summary.truncation({"n_truncated": {"train": 0}, "splits": {"train": 10}}) is None
    assert summary.truncation({"n_truncated": {"train": 3}, "splits": {"train": 10},
                               "long_text": {"mode": "window"}}) is None
    share, parts = summary.truncation({"n_truncated": {"train": 3, "test": 1}, "splits": {"train": 10, "test": 10}})
    assert share == pytest.approx(0.2) and "train 30% (3 of 10)" in parts


def test_fits_and_predictions_leave_the_warning_filters_alone(recwarn):
    """A forest's threads can empty the process's warning filters (warnings.catch_warnings is not
    thread-safe); after that every sklearn task warns that delayed needs sklearn's Parallel and
    ResourceWarnings print. Each fit and predict puts them back and drops that false alarm."""
    import warnings

    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils.parallel import Parallel, delayed

    from probekit.stages.classify import models

    alarm = ("`sklearn.utils.parallel.delayed` should be used with `sklearn.utils.parallel.Parallel` to make it "
             "possible to propagate the scikit-learn configuration of the current thread to the joblib workers.")

    class Scrambler(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            warnings.filters = []  # what interleaved threads can leave behind
            warnings.warn(alarm, UserWarning, stacklevel=2)
            self.classes_ = np.arange(2)
            return self

        def predict_proba(self, X):
            warnings.resetwarnings()
            return np.full((len(X), 2), 0.5)

    before = list(warnings.filters)
    est = Scrambler()
    with models.warning_filters_kept():
        est.fit(np.zeros((3, 1)), np.array([0, 1, 0]))
    assert list(warnings.filters) == before
    assert models.predict_scores(est, np.zeros((3, 1)), 2).shape == (3, 2)
    assert list(warnings.filters) == before
    Parallel(n_jobs=1)(delayed(abs)(i) for i in range(3))  # carries the filters again: no alarm
    assert not [w for w in recwarn if "sklearn.utils.parallel.delayed" in str(w.message)]
    with models.warning_filters_kept():
        warnings.warn("something else", UserWarning, stacklevel=2)  # other warnings still show
    assert [str(w.message) for w in recwarn] == ["something else"]


def test_wandb_logs_the_positive_class_and_its_pr_curve(tmp_path, monkeypatch):
    from test_analysis import _tables, _wandb_env

    _wandb_env(monkeypatch, tmp_path)
    make_binary_run(tmp_path)
    cfg = load_config(None, [f"run.artifacts={str(tmp_path)!r}", "run.name='b'", "classify.n_jobs=1",
                             "report.umap_max_points=60", "report.umap_n_neighbors=10", "report.label_error_folds=0"])
    build_report(cfg)
    (run_dir,) = (tmp_path / "b" / "wandb").glob("offline-run-*")
    tables = _tables(run_dir)
    pr = tables["pr_curve_table"]
    assert pr["columns"] == ["class", "recall", "precision"] and {row[0] for row in pr["data"]} == {"angry"}
    assert "pos_f1" in tables["models"]["columns"] and "val_accuracy" in tables["models"]["columns"]
    assert len(tables["confusion_matrix_table"]["data"]) == 4
    (log,) = run_dir.glob("*.wandb")
    record = log.read_bytes()
    for needle in (b"best_positive/f1", b"best_positive/threshold", b"test/logreg/positive/average_precision",
                   b"test/logreg/ci/positive_f1/lo", b"images/curves"):
        assert needle in record, needle


def test_search_trials_score_the_positive_class():
    from probekit.stages.classify.search import run_trial

    cfg = load_config(None, ["classify.n_jobs=1"])
    data = binary_data()
    tuned = run_trial({"C": 1.0, "class_weight": "none", "pooling": "mean", "thresholds": "tune"}, "logreg", data, cfg)
    fixed = run_trial({"C": 1.0, "class_weight": "none", "pooling": "mean", "thresholds": "fixed"}, "logreg", data, cfg)
    assert fixed["positive_threshold"] == cfg.classify.threshold
    assert tuned["validation_positive_f1"] >= fixed["validation_positive_f1"]  # F1-best on validation
    assert tuned["validation_average_precision"] == fixed["validation_average_precision"]  # threshold-free
