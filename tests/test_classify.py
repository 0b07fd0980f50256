from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_config, write_fake_cache

from probekit.stages.classify.train import run_classify, scores_path

# small grids: one class weight and 200 iterations for every logistic regression, C in {0.01, 1} on features
FAST = ["classify.n_jobs=1", "classify.n_bootstrap=50", "classify.models=['dummy', 'logreg', 'random_forest']",
        "classify.tfidf_logreg.C=1.0", "classify.sgd_stream.alpha=[0.1, 0.001]",
        *(f"classify.{m}.n_estimators=20" for m in ("random_forest", "random_forest_ovr")),
        *(f"classify.{m}.{key}" for m in ("logreg", "logreg_chain", "tfidf_logreg")
          for key in ("max_iter=200", "class_weight=['none']")),
        *(f"classify.{m}.C=[0.01, 1.0]" for m in ("logreg", "logreg_chain"))]
METRIC_KEYS = {"micro_auc", "macro_auc", "micro_f1", "macro_f1", "per_label_auc", "per_label_f1", "support"}
ALL_MODELS = ("dummy", "dummy_stratified", "dummy_most_frequent", "tfidf_logreg", "logreg", "logreg_chain",
              "random_forest", "random_forest_ovr", "hybrid_logreg", "sgd_stream")


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
            single = {"confusion_matrix"} if problem_type == "single_label" else set()
            binary = problem_type == "single_label" and n_labels == 2  # the positive class, its tuned decision
            positive = {"positive"} if binary else set()
            assert set(entry[split]) - {"tuned", "ci"} == METRIC_KEYS | {extra} | single | positive
            assert set(entry[split]["tuned"]) == METRIC_KEYS | {extra} | (single if binary else set())
            assert list(entry[split]["per_label_auc"]) == m["labels"]
            P = np.load(scores_path(cfg.run_dir, name, split))
            assert P.shape == (m["n_rows"][split], n_labels) and P.dtype == np.float32
        assert (cfg.run_dir / "models" / f"{name}.skops").is_file()
        binary = problem_type == "single_label" and n_labels == 2
        assert set(entry["test"]["ci"]) == ({"macro_f1", "micro_f1", "micro_auc", "macro_auc"}
                                            | ({"positive_f1", "positive_average_precision"} if binary else set()))
        assert (entry["positive"] is not None) == binary and (m["positive_label"] is not None) == binary
        lo, hi = entry["test"]["ci"]["macro_f1"]
        assert lo <= entry["test"]["tuned"]["macro_f1"] <= hi
        assert entry["selection"]["chosen"]["feature_set"] == "cls"
        if problem_type == "multi_label":
            assert list(entry["thresholds"]) == m["labels"]
        elif binary:  # tuned: the positive class at its threshold from validation; the outer block: argmax
            assert entry["thresholds"] is None
            assert entry["test"]["positive"]["threshold"] == entry["validation"]["positive"]["threshold"] \
                == entry["positive"]["threshold"]
        else:
            assert entry["thresholds"] is None and entry["test"]["tuned"] == {
                k: v for k, v in entry["test"].items() if k not in ("tuned", "ci", "confusion_matrix")}
    test = {k: v["test"] for k, v in m["models"].items()}
    assert test["dummy"]["macro_auc"] == pytest.approx(0.5)
    assert test["logreg"]["macro_auc"] > 0.9 and test["random_forest"]["macro_auc"] > 0.7
    assert test["logreg"]["macro_f1"] > test["dummy"]["macro_f1"]
    assert json.loads((cfg.run_dir / "classify.config.json").read_text())["run"]["seed"] == 0
    assert m["comparisons"]["best"] in ("logreg", "random_forest")
    assert set(m["comparisons"]["p_better"]) == set(m["models"]) - {m["comparisons"]["best"]}
    if problem_type == "single_label":
        cm = np.array(m["models"]["logreg"]["test"]["confusion_matrix"])
        assert cm.shape == (n_labels, n_labels) and cm.sum() == m["n_rows"]["test"]


def test_single_label_scores_are_distributions(tmp_path):
    cfg = make_config(tmp_path, *FAST)
    write_fake_cache(cfg.run_dir, "single_label", 4)
    run_classify(cfg)
    P = np.load(scores_path(cfg.run_dir, "logreg", "test"))
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)


def test_saved_model_reproduces_the_scores(tmp_path):
    from probekit.core.cache_reader import read_cache
    from probekit.core.runfolder import features_dir
    from probekit.stages.classify.models import predict_scores
    from probekit.stages.classify.persist import load_model

    cfg = make_config(tmp_path, *FAST)
    write_fake_cache(cfg.run_dir)
    run_classify(cfg)
    model, meta = load_model(cfg.run_dir, "random_forest", expect={"hidden_size": 12, "feature_set": "cls"})
    assert meta["label_names"] == ["label0", "label1", "label2"] and len(meta["thresholds"]) == 3
    X = read_cache(features_dir(cfg.run_dir)).X("test")
    np.testing.assert_allclose(predict_scores(model, X, 3), np.load(scores_path(cfg.run_dir, "random_forest", "test")))


def test_seeded_runs_are_identical(tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = make_config(tmp_path, *FAST, f"run.name={name!r}")
        write_fake_cache(cfg.run_dir)
        m = json.loads(run_classify(cfg).read_text())
        runs.append((np.load(scores_path(cfg.run_dir, "random_forest", "test")), m["models"]["logreg"]["test"]["ci"],
                     m["comparisons"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1:] == runs[1][1:]  # bootstrap intervals and paired comparisons are seeded too


def test_selection_uses_validation_only(tmp_path):
    """Scrambling the test labels changes test scores but not what was selected."""
    from probekit.core.cache import CacheWriter
    from probekit.core.cache_reader import read_cache
    from probekit.core.runfolder import features_dir

    chosen = []
    for name, scramble in (("plain", False), ("scrambled", True)):
        cfg = make_config(tmp_path, *FAST, f"run.name={name!r}")
        src = read_cache(write_fake_cache(cfg.run_dir))
        if scramble:
            with CacheWriter(features_dir(cfg.run_dir)) as w:
                for s in src.splits:
                    y = np.asarray(src.y(s))
                    y = y[::-1].copy() if s == "test" else y
                    w.add_split(s, np.asarray(src.X(s)), y, src.texts(s), src.ids(s))
                w.commit({k: v for k, v in src.manifest.items() if k not in ("splits", "files")})
        m = json.loads(run_classify(cfg).read_text())
        chosen.append({n: (e["selection"]["chosen"], e["selection"]["validation_score"], e["thresholds"])
                       for n, e in m["models"].items()})
    assert chosen[0] == chosen[1]


def test_every_model_runs_on_multilabel(tmp_path):
    cfg = make_config(tmp_path, *FAST, f"classify.models={list(ALL_MODELS)!r}", "classify.hybrid_logreg.emb_weight=0.3",
                      "classify.sgd_stream.epochs=2")
    write_fake_cache(cfg.run_dir)
    m = json.loads(run_classify(cfg).read_text())
    assert tuple(m["models"]) == ALL_MODELS
    for name in ("logreg", "logreg_chain", "random_forest_ovr", "hybrid_logreg", "sgd_stream"):
        assert m["models"][name]["test"]["macro_auc"] > 0.75, name


def test_multilabel_strategies_are_skipped_for_single_label(tmp_path):
    cfg = make_config(tmp_path, *FAST, "classify.models=['logreg', 'logreg_chain', 'random_forest_ovr', 'sgd_stream']")
    write_fake_cache(cfg.run_dir, "single_label", 3)
    m = json.loads(run_classify(cfg).read_text())
    assert list(m["models"]) == ["logreg", "sgd_stream"]


def test_unknown_feature_set_names_what_the_cache_holds(tmp_path):
    from probekit.core.errors import ProbekitError

    cfg = make_config(tmp_path, *FAST, "classify.features=['mean']")
    write_fake_cache(cfg.run_dir)
    with pytest.raises(ProbekitError, match=r"features=\['mean'\]: the cache .* holds \['cls'\]"):
        run_classify(cfg)


def test_missing_joblib_backend_names_the_install(tmp_path):
    from probekit.core.errors import ProbekitError

    cfg = make_config(tmp_path, *FAST, "classify.joblib_backend='ray'")
    write_fake_cache(cfg.run_dir)
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed")
    except ImportError:
        pass
    with pytest.raises(ProbekitError, match="pip install ray"):
        run_classify(cfg)


def test_dask_backend_fits_the_same_models(tmp_path, monkeypatch):
    """joblib on dask: a local cluster started for the run (no scheduler address set), same results."""
    pytest.importorskip("distributed")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    scores = {}
    for backend in ("loky", "dask"):
        cfg = make_config(tmp_path / backend, *FAST, "classify.n_jobs=2", f"classify.joblib_backend='{backend}'")
        write_fake_cache(cfg.run_dir)
        metrics = json.loads(run_classify(cfg).read_text())
        scores[backend] = {n: m["test"]["tuned"]["macro_auc"] for n, m in metrics["models"].items()}
    assert scores["dask"] == scores["loky"]
    import distributed

    with pytest.raises(ValueError):
        distributed.get_client()  # the cluster started for the run was closed with it


def test_models_subset(tmp_path):
    cfg = make_config(tmp_path, *FAST, "classify.models=['dummy', 'logreg']")
    write_fake_cache(cfg.run_dir)
    m = json.loads(run_classify(cfg).read_text())
    assert list(m["models"]) == ["dummy", "logreg"]


def test_label_absent_from_train_gets_zero_probability(tmp_path):
    from probekit.core.cache import CacheWriter
    from probekit.core.runfolder import features_dir

    cfg = make_config(tmp_path, *FAST)
    rng = np.random.default_rng(0)
    with CacheWriter(features_dir(cfg.run_dir)) as w:
        for split, y in (("train", [0, 1] * 10), ("validation", [0, 1, 2] * 4), ("test", [0, 1, 2] * 4)):
            y = np.array(y, dtype=np.int64)
            w.add_split(split, (rng.normal(size=(len(y), 5)) + y[:, None]).astype(np.float32), y,
                        ["t"] * len(y), [str(i) for i in range(len(y))])
        w.commit({"label_names": ["a", "b", "c"], "problem_type": "single_label", "hidden_size": 5, "pooling": "cls",
                  "dtype": "float32"})
    run_classify(cfg)
    for model in ("dummy", "logreg", "random_forest"):  # OvR LR, a forest and the dummy alike
        P = np.load(scores_path(cfg.run_dir, model, "test"))
        assert P.shape == (12, 3) and (P[:, 2] == 0).all()


def test_missing_cache_names_the_make_target(tmp_path):
    with pytest.raises(FileNotFoundError, match="make extract"):
        run_classify(make_config(tmp_path))


def _words_and_features_cache(run_dir, seed: int = 0):
    """Labels 0 and 1 are in the words only, label 2 in the features only."""
    from probekit.core.cache import CacheWriter
    from probekit.core.runfolder import features_dir

    rng = np.random.default_rng(seed)
    vocab = {0: ["sunny", "bright"], 1: ["rainy", "grey"]}
    with CacheWriter(features_dir(run_dir)) as w:
        for split, n in (("train", 120), ("validation", 60), ("test", 60)):
            Y = (rng.random((n, 3)) < 0.35).astype(np.uint8)
            texts = [" ".join([str(rng.choice(vocab[k])) for k in (0, 1) if Y[i, k]] + ["day"]) for i in range(n)]
            X = rng.normal(size=(n, 6)).astype(np.float32)
            X[:, 0] += 2.0 * Y[:, 2]
            w.add_split(split, X, Y, texts, [f"{split}-{i}" for i in range(n)])
        w.commit({"label_names": ["sun", "rain", "hidden"], "problem_type": "multi_label", "hidden_size": 6,
                  "dtype": "float32", "cache_key": "words+features", "model_id": "fake", "pooling": "cls",
                  "max_length": 16})


def test_hybrid_fuses_words_and_features_with_a_weight_chosen_on_validation(tmp_path):
    from probekit.core.cache_reader import read_cache
    from probekit.core.runfolder import features_dir
    from probekit.stages.classify import models
    from probekit.stages.classify.persist import load_model

    weights = [0.25, 1.0, 4.0]
    cfg = make_config(tmp_path, *FAST, "classify.models=['tfidf_logreg', 'logreg', 'hybrid_logreg']",
                      f"classify.hybrid_logreg.emb_weight={weights}", "classify.tfidf_logreg.min_df=1")
    _words_and_features_cache(cfg.run_dir)
    m = json.loads(run_classify(cfg).read_text())["models"]
    hyb, sel = m["hybrid_logreg"], m["hybrid_logreg"]["selection"]
    # the grid: tfidf_logreg's C (1) x class_weight (1) x logreg's C (2) x class_weight (1) x emb_weight (3)
    assert sel["n_candidates"] == 6 and {g["emb_weight"] for g in sel["grid"]} == set(weights)
    # the cross-fitted score; the winner is the simplest of the candidates within one SE of the best
    assert sel["best"]["validation_score"] == max(g["validation_score"] for g in sel["grid"])
    assert sel["winner"] in sel["tied"] and sel["validation_score"] == sel["winner"]["validation_score"]
    assert all(t["validation_score"] >= sel["best"]["validation_score"] - sel["se"] - 1e-12 for t in sel["tied"])
    assert hyb["input"] == "both" and hyb["params"]["emb_weight"] in weights
    # its parts are the very fits of tfidf_logreg's and logreg's grids: its fit time is theirs
    part = {g["C"]: g["fit_seconds"] for g in m["logreg"]["selection"]["grid"]}
    assert hyb["fit_seconds"] == pytest.approx(m["tfidf_logreg"]["fit_seconds"] + part[hyb["params"]["emb_C"]],
                                               abs=2e-3)
    # words alone miss the hidden label and features alone the other two; the fusion has both
    auc = {n: m[n]["test"]["per_label_auc"] for n in m}
    assert auc["hybrid_logreg"]["sun"] > 0.9 and auc["hybrid_logreg"]["hidden"] > 0.85
    assert auc["tfidf_logreg"]["hidden"] < 0.75 and auc["logreg"]["sun"] < 0.75
    assert hyb["test"]["tuned"]["macro_f1"] > max(m["tfidf_logreg"]["test"]["tuned"]["macro_f1"],
                                                  m["logreg"]["test"]["tuned"]["macro_f1"])
    # saved with skops, reloaded, it reproduces the saved scores; refitted from scratch, the same model
    model, meta = load_model(cfg.run_dir, "hybrid_logreg", expect={"hidden_size": 6, "feature_set": "cls"})
    assert isinstance(model, models.LogitFusion) and meta["input"] == "both"
    cache = read_cache(features_dir(cfg.run_dir))
    frame = models.model_input(models.BOTH, cache.X("test"), cache.texts("test"))
    saved = np.load(scores_path(cfg.run_dir, "hybrid_logreg", "test"))
    np.testing.assert_allclose(models.predict_scores(model, frame, 3), saved, rtol=1e-6)
    train = models.model_input(models.BOTH, cache.X("train"), cache.texts("train"))
    fresh = models.LogitFusion(model.text_model, model.feature_model, model.emb_weight).fit(train, cache.Y("train"))
    np.testing.assert_allclose(models.predict_scores(fresh, frame, 3), saved, rtol=1e-5, atol=1e-7)


def test_fusion_by_hand():
    from scipy.special import logit

    from probekit.stages.classify.models import fuse

    Pw, Pf = np.array([[0.8, 0.1]]), np.array([[0.5, 0.9]])
    np.testing.assert_allclose(logit(fuse(Pw, Pf, 2.0, True)), logit(Pw) + 2.0 * logit(Pf))
    single = fuse(np.array([[0.6, 0.4]]), np.array([[0.2, 0.8]]), 1.0, False)
    np.testing.assert_allclose(single, [[0.12 / 0.44, 0.32 / 0.44]])  # product of experts, renormalised


@pytest.mark.parametrize("n_labels", [2, 4])
def test_hybrid_on_single_label_gives_distributions(tmp_path, n_labels):
    cfg = make_config(tmp_path, *FAST, "classify.models=['hybrid_logreg']",
                      "classify.hybrid_logreg.emb_weight=[0.5, 2.0]")
    write_fake_cache(cfg.run_dir, "single_label", n_labels)
    m = json.loads(run_classify(cfg).read_text())["models"]["hybrid_logreg"]
    P = np.load(scores_path(cfg.run_dir, "hybrid_logreg", "test"))
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    assert m["test"]["macro_auc"] > 0.9 and m["thresholds"] is None


def test_a_model_declared_once_in_the_registry_is_selectable_fitted_and_scored(tmp_path, monkeypatch):
    """Adding a classifier is one registry entry: config, selection, fit, scores and saving follow."""
    from probekit.core.errors import ConfigError
    from probekit.stages.classify import registry
    from probekit.stages.classify.persist import load_model

    def build_nb(params, settings, seed, env):
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.naive_bayes import GaussianNB

        return OneVsRestClassifier(GaussianNB(var_smoothing=params["var_smoothing"]), n_jobs=env.n_jobs)

    toy = registry.ModelSpec("naive_bayes", registry.FEATURES, build_nb,
                             grid={"var_smoothing": registry.Axis((1e-9, 1e-3))})
    monkeypatch.setitem(registry.MODELS, "naive_bayes", toy)
    with pytest.raises(ConfigError, match=r"\[classify\.naive_bayes\] var_smoothing=\[-1\]: every value must be"):
        make_config(tmp_path, "classify.naive_bayes.var_smoothing=-1")
    assert make_config(tmp_path).classify.model_tables["naive_bayes"] == {"var_smoothing": (1e-9, 1e-3)}
    cfg = make_config(tmp_path, *FAST, "classify.models=['dummy', 'naive_bayes']",
                      "classify.naive_bayes.var_smoothing=[1e-9, 1e-6, 1e-3]")
    write_fake_cache(cfg.run_dir)
    m = json.loads(run_classify(cfg).read_text())
    nb = m["models"]["naive_bayes"]
    assert nb["selection"]["n_candidates"] == 3 and nb["params"]["var_smoothing"] in (1e-9, 1e-6, 1e-3)
    assert nb["input"] == "features" and nb["feature_set"] == "cls" and nb["test"]["macro_auc"] > 0.75
    assert m["comparisons"]["best"] == "naive_bayes"  # the dummy is a baseline, the toy is not
    model, _ = load_model(cfg.run_dir, "naive_bayes")
    assert model.estimator.var_smoothing == nb["params"]["var_smoothing"]
