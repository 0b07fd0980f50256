"""Unit tests for the report's numbers: losses, label errors, model choice, safe JSON, W&B keys.

Small literal inputs checked by hand; no UMAP, no browser, no W&B run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from probekit.core.config import ClassifySection, SearchSection, load_config
from probekit.core.errors import ConfigError, ProbekitError
from probekit.core.tracking import resolve_mode
from probekit.stages.analysis import errors, interactive, results
from probekit.stages.analysis.html import esc, heatmap, table, value_cell
from probekit.stages.analysis.wandb_log import flatten_metrics

LABELS = ["a", "b", "c"]


def test_row_losses_by_hand():
    Y = np.array([[1, 0, 0], [0, 1, 0]])
    P = np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])
    np.testing.assert_allclose(errors.row_losses(Y, P, "single_label"), [np.log(2), np.log(4)])
    Ym, Pm = np.array([[1, 0, 1]]), np.array([[0.5, 0.5, 1.0]])
    np.testing.assert_allclose(errors.row_losses(Ym, Pm, "multi_label"), [2 * np.log(2) - np.log(1 - 1e-6)])


def test_highest_loss_orders_and_names():
    Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    P = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.3, 0.3, 0.4]])
    Yhat = np.eye(3, dtype=int)[P.argmax(1)]
    rows = errors.highest_loss(Y, P, Yhat, ["x", "y", "z"], ["0", "1", "2"], LABELS, "single_label", n=2)
    assert [r["id"] for r in rows] == ["1", "2"]
    assert rows[0]["true"] == ["b"] and rows[0]["predicted"] == ["a"] and rows[0]["top"][0] == ("a", 0.8)


def test_label_errors_single_and_multi():
    Y = np.eye(3, dtype=int)[[0, 1, 2, 0]]
    P = np.array([[0.02, 0.97, 0.01], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.05, 0.0, 0.95]])
    rows, flagged = errors.label_errors(Y, P, list("wxyz"), list("0123"), LABELS, "single_label")
    assert flagged.tolist() == [True, False, False, True]
    assert [r["id"] for r in rows] == ["0", "3"]  # margin 0.95 then 0.90
    assert rows[0]["doubtful"] == ["a"] and rows[0]["missing"] == ["b"] and rows[0]["suggested"] == ["b"]
    # multi-label: row 0 misses c (p 0.93); row 1 reads as b, not the given a; row 2 has no
    # evidence; row 3's a is doubtful but the probe suggests nothing else: not flagged.
    Ym = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]])
    Pm = np.array([[0.95, 0.2, 0.93], [0.05, 0.7, 0.1], [0.5, 0.5, 0.5], [0.05, 0.9, 0.1]])
    rows, flagged = errors.label_errors(Ym, Pm, list("wxyz"), list("0123"), LABELS, "multi_label")
    assert flagged.tolist() == [True, True, False, False]
    assert [r["id"] for r in rows] == ["0", "1"]  # 0.93, then (0.95 + 0.7) / 2
    assert rows[0]["missing"] == ["c"] and rows[0]["doubtful"] == [] and rows[0]["suggested"] == ["a", "c"]
    assert rows[1]["doubtful"] == ["a"] and rows[1]["missing"] == ["b"] and rows[1]["given"] == ["a"]


def test_out_of_fold_scores_never_see_the_row():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    X = (rng.normal(size=(60, 6)) + 3 * np.eye(3, 6)[y]).astype(np.float32)
    y_noisy = y.copy()
    y_noisy[7] = (y[7] + 1) % 3  # a flipped label: out of fold, the probe sees the truth
    P = errors.out_of_fold_scores(X, y_noisy, 3, False, {"C": 1.0, "class_weight": "none"}, ClassifySection(n_jobs=1),
                                  seed=0, n_folds=5)
    assert P.shape == (60, 3) and np.allclose(P.sum(1), 1, atol=1e-5)
    assert P[7].argmax() == y[7] and (P.argmax(1) == y).mean() > 0.9
    _, flagged = errors.label_errors(np.eye(3, dtype=int)[y_noisy], P, ["t"] * 60, [str(i) for i in range(60)],
                                     LABELS, "single_label", confident=0.6)
    assert flagged[7]


def test_probe_settings_follow_classify():
    metrics = {"labels": LABELS, "features": {"pooling": "cls"}, "models": {"logreg": {
        "params": {"C": 0.3, "class_weight": "balanced"}, "feature_set": "mean",
        "thresholds": {"a": 0.2, "b": 0.3, "c": 0.4}}}}
    params, fs, thr = errors.probe_settings(metrics)
    assert params == {"C": 0.3, "class_weight": "balanced"} and fs == "mean" and thr.tolist() == [0.2, 0.3, 0.4]
    assert errors.probe_settings({"labels": LABELS, "models": {"dummy": {}}}) == (
        {"C": 1.0, "class_weight": "none"}, "cls", 0.5)


def test_compare_models_and_top_confusions():
    m = {"models": {"dummy": {}, "logreg": {"input": "features", "selection": {"validation_score": 0.5}},
                    "rf": {"input": "features", "selection": {"validation_score": 0.3}},
                    "tfidf_logreg": {"input": "texts", "selection": {"validation_score": 0.4}}}}
    assert results.compare_models(m, "logreg") == ["logreg", "tfidf_logreg", "rf", "dummy"]
    assert results.compare_models(m, "logreg", k=2) == ["logreg", "tfidf_logreg", "dummy"]
    assert results.compare_models(m, "logreg", ("rf",)) == ["rf"]
    with pytest.raises(ProbekitError, match=r"compare_models.*'nope'.*not in metrics\.json"):
        results.compare_models(m, "logreg", ("nope",))
    counts = np.array([[8, 2, 0], [5, 5, 0], [0, 0, 0]])
    top = results.top_confusions(counts, LABELS, np.array([10, 10, 0]))
    assert [(t["true"], t["predicted"], t["count"]) for t in top] == [("b", "a", 5), ("a", "b", 2)]
    assert top[0]["share"] == 0.5


def test_script_json_cannot_close_its_block():
    text = interactive.script_json({"t": ["</script><script>alert(1)</script>", "<!-- x -->", "a & b"]})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["t"][0] == "</script><script>alert(1)</script>"


def test_umap_payload_is_compact_and_complete():
    emb = np.array([[0.0, 0.0], [2.0, 1.0], [1.0, 0.5]])
    Y = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    p = interactive.umap_payload(emb, np.array([3, 5, 9]), Y, Y, ["x" * 300, "y", "z"], LABELS, ["#000"] * 3, "train",
                                 10, "probe", np.array([False, True, False]), n_chars=20)
    assert p["x"] == [0, 1000, 500] and p["y"] == [1000, 0, 500] and p["row"] == [3, 5, 9]
    assert p["true"] == [[0, 2], [], [1]] and p["flagged"] == [1] and len(p["text"][0]) == 20


def test_html_helpers_escape():
    html = table(["<h>"], [([esc("<x>")], "")], left=1)
    assert "&lt;h&gt;" in html and "&lt;x&gt;" in html and "<x>" not in html
    assert 'data-v="0.5"' in table(["v"], [([value_cell(0.5)], "")])
    M = np.array([[1.0, 0.0], [np.nan, 0.5]])
    hm = heatmap(M, ['"a"', "b"], ['"a"', "b"], np.array([[3, 0], [0, 1]]))
    assert "&quot;a&quot; → b: 0.00, 0 rows" in hm and '"a"' not in hm


def test_flatten_metrics_keys():
    metrics = {"models": {"logreg": {
        "fit_seconds": 1.5, "threshold": 0.5, "thresholds": {"a": 0.3}, "params": {"C": 1.0},
        "test": {"macro_f1": 0.4, "per_label_auc": {"a": 0.9, "b": None}, "tuned": {"macro_f1": 0.5},
                 "ci": {"macro_f1": [0.3, 0.5]}, "confusion_matrix": [[1, 0], [0, 1]]},
        "selection": {"validation_score": 0.6, "grid": [{"C": 1.0}]}}},
        "comparisons": {"best": "logreg", "p_better": {"dummy": 0.99}}}
    flat = flatten_metrics(metrics)
    assert flat == {"time/logreg/fit_seconds": 1.5, "threshold/logreg": 0.5, "thresholds/logreg/a": 0.3,
                    "test/logreg/macro_f1": 0.4, "test/logreg/per_label_auc/a": 0.9, "test/logreg/tuned/macro_f1": 0.5,
                    "test/logreg/ci/macro_f1/lo": 0.3, "test/logreg/ci/macro_f1/hi": 0.5,
                    "selection/logreg/validation_score": 0.6, "comparisons/p_better/dummy": 0.99}


def test_wandb_mode_resolution(monkeypatch):
    cfg = load_config(None)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_mode(cfg) == "offline"  # the default: never a login prompt
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode(cfg) == "offline"
    monkeypatch.setenv("WANDB_MODE", "bogus")
    with pytest.raises(ProbekitError, match="WANDB_MODE='bogus'"):
        resolve_mode(cfg)


def test_settings_defaults_and_validation():
    cfg = load_config(None)
    assert cfg.report.n_errors == 15 and cfg.report.label_error_folds == 5
    with pytest.raises(ConfigError, match=r"\[search\.grid\] C=\[0\]"):
        SearchSection(grid={"C": (0,)})
    with pytest.raises(ConfigError, match=r"\[search\] thresholds=\['best'\]"):
        SearchSection(thresholds=("best",))
    with pytest.raises(ConfigError, match=r"\[search\] model='svm'"):
        SearchSection(model="svm")


def test_mistakes_count_only_missed_labels_taken_for_absent_ones():
    from probekit.stages.analysis.report import _confusion

    Y = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1]])
    Yhat = np.array([[0, 1, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]])
    c = _confusion(Y, Yhat, LABELS, multi=True)
    # a -> b: row 0 only (row 1 found a; in row 2, b was given); a -> c: row 2
    assert {(t["true"], t["predicted"]): t["count"] for t in c["top"]} == {("a", "b"): 1, ("a", "c"): 1}
    assert c["counts"][0].tolist() == [1, 3, 1]  # co-occurrence: rows with a whose prediction holds each label
    assert [r["label"] for r in c["counts_rows"]] == ["a", "b", "c"]  # by support


def test_online_without_credentials_fails_instead_of_prompting(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from probekit.core.tracking import start_run

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var, path in (("HOME", "home"), ("NETRC", "netrc"), ("WANDB_CONFIG_DIR", "config")):
        monkeypatch.setenv(var, str(tmp_path / path))
    with pytest.raises(ProbekitError, match="no credentials are set: run 'wandb login'"):
        start_run(load_config(None, [f"run.artifacts={str(tmp_path)!r}"]), "report")
