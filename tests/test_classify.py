from __future__ import annotations

import json

import joblib
import numpy as np
import pytest
from conftest import make_config, write_fake_cache

from classify.train import run_classify, scores_path

FAST = ["classify.rf_n_estimators=20", "classify.n_jobs=1", "classify.logreg_max_iter=200"]
METRIC_KEYS = {"micro_auc", "macro_auc", "micro_f1", "macro_f1", "per_label_auc", "per_label_f1", "support"}


@pytest.mark.parametrize("problem_type, n_labels, extra", [
    ("multi_label", 3, "subset_accuracy"),
    ("single_label", 4, "accuracy"),
    ("single_label", 2, "accuracy"),  # binary
])
def test_metrics_json_contract(tmp_path, problem_type, n_labels, extra):
    cfg = make_config(tmp_path, *FAST)
    write_fake_cache(cfg.run_dir, problem_type, n_labels)
    out = run_classify(cfg)
    m = json.loads(out.read_text())
    assert m["run"] == "demo" and m["problem_type"] == problem_type and m["seed"] == 0
    assert m["labels"] == [f"label{k}" for k in range(n_labels)]
    assert set(m["models"]) == {"dummy", "logreg", "random_forest"}
    for name, entry in m["models"].items():
        assert entry["fit_seconds"] >= 0
        for split in ("validation", "test"):
            assert set(entry[split]) == METRIC_KEYS | {extra}
            assert list(entry[split]["per_label_auc"]) == m["labels"]
            P = np.load(scores_path(cfg.run_dir, name, split))
            assert P.shape == (m["n_rows"][split], n_labels) and P.dtype == np.float32
        assert (cfg.run_dir / "models" / f"{name}.joblib").is_file()
    test = {k: v["test"] for k, v in m["models"].items()}
    assert test["dummy"]["macro_auc"] == pytest.approx(0.5)
    assert test["logreg"]["macro_auc"] > 0.9 and test["random_forest"]["macro_auc"] > 0.7
    assert test["logreg"]["macro_f1"] > test["dummy"]["macro_f1"]
    assert json.loads((cfg.run_dir / "classify.config.json").read_text())["run"]["seed"] == 0


def test_single_label_scores_are_distributions(tmp_path):
    cfg = make_config(tmp_path, *FAST)
    write_fake_cache(cfg.run_dir, "single_label", 4)
    run_classify(cfg)
    P = np.load(scores_path(cfg.run_dir, "logreg", "test"))
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)


def test_saved_model_reproduces_the_scores(tmp_path):
    from classify.models import predict_scores
    from extract.cache import features_dir, read_cache

    cfg = make_config(tmp_path, *FAST)
    write_fake_cache(cfg.run_dir)
    run_classify(cfg)
    model = joblib.load(cfg.run_dir / "models" / "random_forest.joblib")
    X = read_cache(features_dir(cfg.run_dir)).X("test")
    np.testing.assert_allclose(predict_scores(model, X, 3), np.load(scores_path(cfg.run_dir, "random_forest", "test")))


def test_seeded_runs_are_identical(tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = make_config(tmp_path, *FAST, f"run.name={name!r}")
        write_fake_cache(cfg.run_dir)
        run_classify(cfg)
        runs.append(np.load(scores_path(cfg.run_dir, "random_forest", "test")))
    np.testing.assert_array_equal(*runs)


def test_models_subset(tmp_path):
    cfg = make_config(tmp_path, *FAST, "classify.models=['dummy','logreg']")
    write_fake_cache(cfg.run_dir)
    m = json.loads(run_classify(cfg).read_text())
    assert list(m["models"]) == ["dummy", "logreg"]


def test_label_absent_from_train_gets_zero_probability(tmp_path):
    from extract.cache import CacheWriter, features_dir

    cfg = make_config(tmp_path, *FAST)
    rng = np.random.default_rng(0)
    with CacheWriter(features_dir(cfg.run_dir)) as w:
        for split, y in (("train", [0, 1] * 10), ("validation", [0, 1, 2] * 4), ("test", [0, 1, 2] * 4)):
            y = np.array(y, dtype=np.int64)
            w.add_split(split, (rng.normal(size=(len(y), 5)) + y[:, None]).astype(np.float32), y,
                        ["t"] * len(y), [str(i) for i in range(len(y))])
        w.commit({"label_names": ["a", "b", "c"], "problem_type": "single_label", "hidden_size": 5,
                  "dtype": "float32"})
    run_classify(cfg)
    for model in ("dummy", "logreg", "random_forest"):
        P = np.load(scores_path(cfg.run_dir, model, "test"))
        assert P.shape == (12, 3) and (P[:, 2] == 0).all()


def test_missing_cache_names_the_make_target(tmp_path):
    with pytest.raises(FileNotFoundError, match="make extract"):
        run_classify(make_config(tmp_path))
