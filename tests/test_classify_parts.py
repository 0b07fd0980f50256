"""Threshold tuning, bootstrap, skops persistence and the streaming fit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from probekit.core.thresholds import apply_thresholds, tune_thresholds
from probekit.stages.classify.bootstrap import bootstrap_metrics, interval, resample_weights, weighted_auc


def test_thresholds_by_hand():
    Y = np.array([[1, 0], [1, 0], [0, 0], [0, 1], [0, 0]])
    P = np.array([[0.3, 0.9], [0.2, 0.1], [0.1, 0.2], [0.05, 0.4], [0.25, 0.3]])
    thr = tune_thresholds(Y, P)
    # label 0: at >= 0.2 three rows predicted (0.3, 0.25, 0.2): TP 2, FP 1 -> F1 0.8; at 0.3: TP1 -> 0.67
    assert thr[0] == pytest.approx(0.2)
    # label 1: its only positive scores 0.4, below the negative 0.9: F1-best is >= 0.4 (TP1 FP1 -> 0.67)
    assert thr[1] == pytest.approx(0.4)
    assert apply_thresholds(P, thr)[:, 0].tolist() == [1, 1, 0, 0, 1]


def test_label_without_positives_keeps_the_default():
    Y = np.array([[1, 0], [0, 0]])
    assert tune_thresholds(Y, np.array([[0.6, 0.2], [0.3, 0.1]]), default=0.5)[1] == 0.5


def test_weighted_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    s = np.round(rng.random(40), 1)  # many ties
    W = rng.integers(0, 3, size=(5, 40)).astype(float)
    got = weighted_auc(y, s, W)
    for w, g in zip(W, got):
        assert g == pytest.approx(roc_auc_score(y, s, sample_weight=w))


def test_bootstrap_is_seeded_and_unit_weights_give_the_point_estimate():
    rng = np.random.default_rng(1)
    Y = (rng.random((50, 3)) < 0.3).astype(int)
    P = np.clip(Y * 0.5 + rng.random((50, 3)) * 0.6, 0, 1)
    Yhat = (P >= 0.5).astype(int)
    a = bootstrap_metrics(Y, P, Yhat, resample_weights(50, 20, seed=7))
    b = bootstrap_metrics(Y, P, Yhat, resample_weights(50, 20, seed=7))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    ones = bootstrap_metrics(Y, P, Yhat, np.ones((1, 50)))
    from probekit.core.metrics import score

    point = score(Y, P, "multi_label", ["a", "b", "c"])
    for k in ("macro_f1", "micro_f1", "micro_auc", "macro_auc"):
        assert ones[k][0] == pytest.approx(point[k])
    lo, hi = interval(a["macro_f1"])
    assert lo <= np.median(a["macro_f1"]) <= hi


def test_resamples_keep_the_row_count():
    W = resample_weights(30, 4, seed=0)
    assert W.shape == (4, 30) and (W.sum(axis=1) == 30).all()


# ---- persistence ------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    from probekit.stages.classify.persist import save_model

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 2, 30)
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    meta = {"model_id": "m", "model_revision": "r", "feature_set": "cls", "hidden_size": 4, "max_length": 16,
            "label_names": ["a", "b"]}
    save_model(model, tmp_path, "random_forest", meta)
    return tmp_path, model, X, meta


def test_round_trip_without_pickle(saved):
    from probekit.stages.classify.persist import load_model, model_paths

    run, model, X, meta = saved
    loaded, got_meta = load_model(run, "random_forest", expect=meta)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert model_paths(run, "random_forest")[0].suffix == ".skops" and got_meta["sha256"]


def test_tampered_model_is_refused(saved):
    from probekit.core.errors import ProbekitError
    from probekit.stages.classify.persist import load_model, model_paths

    run, *_ = saved
    path = model_paths(run, "random_forest")[0]
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ProbekitError, match="sha256 differs .* Refusing to load"):
        load_model(run, "random_forest")


@pytest.mark.parametrize("key, value", [("hidden_size", 768), ("feature_set", "mean"), ("model_id", "bert")])
def test_other_feature_space_is_refused(saved, key, value):
    from probekit.core.errors import ProbekitError
    from probekit.stages.classify.persist import load_model

    run, _, _, meta = saved
    with pytest.raises(ProbekitError, match=f"trained on {key}="):
        load_model(run, "random_forest", expect={**meta, key: value})


def _not_allowed(X):
    return X


def test_untrusted_type_is_refused(tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from probekit.core.errors import ProbekitError
    from probekit.stages.classify.persist import load_model, save_model

    # a function outside numpy/sklearn inside the model: what a hostile file would carry
    model = make_pipeline(FunctionTransformer(_not_allowed)).fit(np.ones((3, 2)))
    save_model(model, tmp_path, "odd", {})
    with pytest.raises(ProbekitError, match="outside the trusted list"):
        load_model(tmp_path, "odd")


# ---- streaming ------------------------------------------------------------------------------

class Spy:
    """An array that records the largest block read from it."""

    def __init__(self, a):
        self.a, self.max_rows, self.shape = a, 0, a.shape

    def __len__(self):
        return len(self.a)

    def __getitem__(self, key):
        out = self.a[key]
        self.max_rows = max(self.max_rows, len(out))
        return out


@pytest.mark.parametrize("multi", [True, False])
def test_streaming_fit_reads_blocks_and_learns(tmp_path, multi):
    from probekit.core.config import ClassifySection
    from probekit.stages.classify.models import predict_scores
    from probekit.stages.classify.registry import Candidate, build
    from probekit.stages.classify.stream import fit_streaming

    rng = np.random.default_rng(0)
    Y = (rng.random((600, 3)) < 0.4).astype(int) if multi else np.eye(3, dtype=int)[rng.integers(0, 3, 600)]
    X = rng.normal(size=(600, 8)) + 2.5 * Y @ rng.normal(size=(3, 8))
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=X.shape)
    mm[:] = X
    mm.flush()
    spy = Spy(np.load(tmp_path / "X.npy", mmap_mode="r"))
    model = build(Candidate("sgd_stream", {"alpha": 1e-4}, "cls"), ClassifySection(n_jobs=1), 0, multi_label=multi)
    fit_streaming(model, spy, Y if multi else Y.argmax(1), 3, multi, epochs=3, block_rows=64, seed=0)
    assert spy.max_rows == 64
    P = predict_scores(model, X, 3)
    assert roc_auc_score(Y, P, average="macro") > 0.9


def test_weighted_auc_edge_cases_match_sklearn():
    rng = np.random.default_rng(4)
    W = rng.integers(0, 4, size=(6, 30)).astype(float)
    for y, s in (
        (np.r_[np.ones(15), np.zeros(15)], np.r_[np.full(15, 0.3), np.full(15, 0.3)]),  # every score tied
        (rng.integers(0, 2, 30), rng.integers(0, 3, 30) / 2),  # three tied levels, 0 and 1 included
        (np.r_[1, np.zeros(29)], rng.random(30)),  # a single positive
    ):
        for w, got in zip(W, weighted_auc(y, s, W)):
            if 0 < (w * y).sum() < w.sum():
                assert got == pytest.approx(roc_auc_score(y, s, sample_weight=w))
            else:
                assert np.isnan(got)  # a resample without positives (or negatives) has no AUC
    assert np.isnan(weighted_auc(np.zeros(30), rng.random(30), W)).all()


def test_bootstrap_micro_auc_pools_cells_with_their_row_weights():
    rng = np.random.default_rng(5)
    Y = (rng.random((40, 4)) < 0.3).astype(int)
    P = np.round(rng.random((40, 4)) * 0.6 + 0.3 * Y, 2)
    W = resample_weights(40, 5, seed=1)
    got = bootstrap_metrics(Y, P, (P >= 0.5).astype(int), W)
    for b, w in enumerate(W):
        cells = np.repeat(w, 4)
        assert got["micro_auc"][b] == pytest.approx(roc_auc_score(Y.ravel(), P.ravel(), sample_weight=cells))
        per_label = [roc_auc_score(Y[:, k], P[:, k], sample_weight=w) for k in range(4)]
        assert got["macro_auc"][b] == pytest.approx(np.mean(per_label))


def test_vectorised_thresholds_are_f1_best_like_sklearn_curve():
    from sklearn.metrics import f1_score, precision_recall_curve

    rng = np.random.default_rng(6)
    for trial in range(40):
        Y = (rng.random((50, 3)) < rng.random()).astype(int)
        P = np.round(rng.random((50, 3)), 1) if trial % 2 else rng.random((50, 3))
        thr = tune_thresholds(Y, P)
        for k in range(3):
            if Y[:, k].sum() == 0:
                assert thr[k] == 0.5
                continue
            prec, rec, cuts = precision_recall_curve(Y[:, k], P[:, k])
            best = np.max(np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(prec), where=prec + rec > 0))
            assert f1_score(Y[:, k], P[:, k] >= thr[k]) == pytest.approx(best)
            assert thr[k] in cuts
