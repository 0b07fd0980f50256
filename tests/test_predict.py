"""Prediction on new texts with a finished run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_config, toy_overrides, toy_rows, write_jsonl

from probekit.core.errors import ProbekitError
from probekit.run import format_rows, predict, read_texts
from probekit.stages.classify.train import run_classify

FAST = ["classify.n_jobs=1", "classify.logreg.C=1.0", "classify.logreg.class_weight=['none']",
        "classify.tfidf_logreg.C=4.0", "classify.n_bootstrap=20", "classify.random_forest.n_estimators=10"]


@pytest.fixture(scope="module")
def words_run(tmp_path_factory, _tiny_encoder_dir):
    """A run over toy texts whose words carry the labels, features from the tiny encoder."""
    pytest.importorskip("torch")
    from probekit.stages.extract.encode import run_extract

    tmp = tmp_path_factory.mktemp("predict")
    data = tmp / "toy"
    data.mkdir()
    for split, n, seed in (("train", 48, 0), ("validation", 16, 1), ("test", 16, 2)):
        write_jsonl(data / f"{split}.jsonl", toy_rows(n, seed, multi=True))
    (data / "labels.txt").write_text("joy\nsadness\nanger\nfear\n")
    cfg = make_config(tmp, *toy_overrides(data, _tiny_encoder_dir), *FAST,
                      "classify.models=['dummy', 'tfidf_logreg', 'logreg', 'hybrid_logreg']")
    run_extract(cfg)
    run_classify(cfg)
    return cfg.run_dir


def test_tfidf_model_predicts_from_words(words_run):
    out = predict(words_run, ["happy glad joy smile", "angry mad rage furious"], model="tfidf_logreg")
    assert out["model"] == "tfidf_logreg" and out["labels"] == ["joy", "sadness", "anger", "fear"]
    P = out["probabilities"]
    assert P.shape == (2, 4) and P[0].argmax() == 0 and P[1].argmax() == 2
    thr = np.array([out["thresholds"][k] for k in out["labels"]])
    np.testing.assert_array_equal(out["predicted"], (P >= thr).astype(int))


def test_features_model_runs_the_run_encoder(words_run):
    from probekit.core.cache_reader import read_cache
    from probekit.core.runfolder import features_dir
    from probekit.stages.classify.models import predict_scores
    from probekit.stages.classify.persist import load_model

    cache = read_cache(features_dir(words_run))
    texts = cache.texts("test")[:3]
    out = predict(words_run, texts, model="logreg")
    model, meta = load_model(words_run, "logreg")
    X = np.asarray(cache.X("test", meta["feature_set"]))[:3]  # the pooling chosen on validation
    np.testing.assert_allclose(out["probabilities"], predict_scores(model, X, 4),
                               atol=1e-4)  # the same features as the cache's, so the same scores


def test_hybrid_reads_the_words_and_the_run_encoder(words_run):
    from probekit.core.cache_reader import read_cache
    from probekit.core.runfolder import features_dir
    from probekit.stages.classify.models import BOTH, LogitFusion, model_input, predict_scores
    from probekit.stages.classify.persist import load_model

    cache = read_cache(features_dir(words_run))
    texts = cache.texts("test")[:3]
    out = predict(words_run, texts, model="hybrid_logreg")
    model, meta = load_model(words_run, "hybrid_logreg")
    assert isinstance(model, LogitFusion) and meta["input"] == "both"
    saved = predict_scores(model, model_input(BOTH, np.asarray(cache.X("test"))[:3], texts), 4)
    np.testing.assert_allclose(out["probabilities"], saved, atol=1e-4)
    thr = np.array([out["thresholds"][k] for k in out["labels"]])
    np.testing.assert_array_equal(out["predicted"], (out["probabilities"] >= thr).astype(int))
    words = predict(words_run, ["happy glad joy smile", "angry mad rage furious"], model="hybrid_logreg")
    assert words["probabilities"][0].argmax() == 0 and words["probabilities"][1].argmax() == 2


def test_default_model_is_the_best_on_validation(words_run):
    best = json.loads((words_run / "metrics.json").read_text())["comparisons"]["best"]
    assert predict(words_run, ["so sad"])["model"] == best


def test_formats(words_run):
    texts = ["happy glad", "scared afraid fear"]
    out = predict(words_run, texts, model="tfidf_logreg")
    lines = format_rows(texts, out, "jsonl").splitlines()
    row = json.loads(lines[1])
    assert row["text"] == "scared afraid fear" and set(row["probabilities"]) == {"joy", "sadness", "anger", "fear"}
    table = format_rows(texts, out, "table")
    assert table.startswith("model: tfidf_logreg") and "'happy glad'" in table


def test_unknown_model_lists_the_run_models(words_run):
    with pytest.raises(ProbekitError, match="this run has dummy, tfidf_logreg, logreg, hybrid_logreg"):
        predict(words_run, ["x"], model="svm")


def test_read_texts_from_lines_and_csv(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\r\n")
    assert read_texts(["zero"], str(tmp_path / "a.txt"), None) == ["zero", "one", "two"]
    (tmp_path / "b.csv").write_text('id,body\n1,"hello, world"\n2,bye\n')
    assert read_texts(None, str(tmp_path / "b.csv"), "body") == ["hello, world", "bye"]
    with pytest.raises(ProbekitError, match="no column 'text'"):
        read_texts(None, str(tmp_path / "b.csv"), None)
    with pytest.raises(ProbekitError, match="nothing to predict"):
        read_texts(None, None, None)
