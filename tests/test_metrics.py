"""Metrics against values worked out by hand on 4-6 literal rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from probekit.core.metrics import predict_labels, score


def test_multilabel_by_hand():
    Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    P = np.array([[0.9, 0.2], [0.4, 0.8], [0.6, 0.3], [0.1, 0.6]])
    m = score(Y, P, "multi_label", ["a", "b"], threshold=0.5)
    # predictions: [1,0] [0,1] [1,0] [0,1] -> label a: TP2 FP0 FN0 (F1 1); label b: TP1 FP1 FN1 (F1 0.5)
    assert m["per_label_f1"] == {"a": 1.0, "b": 0.5}
    assert m["macro_f1"] == pytest.approx(0.75)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))  # TP 3, FP 1, FN 1
    assert m["subset_accuracy"] == pytest.approx(0.5)  # rows 0 and 1 exactly right
    # label a: positives 0.9, 0.6 beat negatives 0.4, 0.1 -> AUC 1.
    # label b: positives 0.8, 0.3 vs negatives 0.2, 0.6 -> pairs won: (0.8>0.2, 0.8>0.6, 0.3>0.2) = 3/4
    assert m["per_label_auc"] == {"a": 1.0, "b": 0.75}
    assert m["macro_auc"] == pytest.approx(0.875)
    assert m["micro_auc"] == pytest.approx(roc_auc_score(Y.ravel(), P.ravel()))
    assert m["support"] == {"a": 2, "b": 2}


def test_single_label_by_hand():
    y = np.array([0, 1, 2, 2, 1])
    Y = np.eye(3, dtype=int)[y]
    P = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    m = score(Y, P, "single_label", ["x", "y", "z"])
    # argmax: 0, 1, 1, 2, 1 -> 4 of 5 right
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["micro_f1"] == pytest.approx(0.8)
    # per class F1: x 1; y: TP2 FP1 FN0 -> 0.8; z: TP1 FP0 FN1 -> 2/3
    assert m["per_label_f1"]["y"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((1 + 0.8 + 2 / 3) / 3)
    assert m["macro_auc"] == pytest.approx(roc_auc_score(y, P, multi_class="ovr", average="macro"))
    assert "subset_accuracy" not in m


def test_binary_is_single_label_with_two_columns():
    y = np.array([0, 1, 1, 0])
    P = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1]])
    m = score(np.eye(2, dtype=int)[y], P, "single_label", ["clean", "toxic"])
    assert m["macro_auc"] == pytest.approx(roc_auc_score(y, P[:, 1])) == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(0.75)


def test_auc_is_none_where_a_label_has_one_class():
    Y = np.array([[1, 0], [0, 0], [1, 0]])
    P = np.array([[0.9, 0.1], [0.2, 0.3], [0.7, 0.2]])
    m = score(Y, P, "multi_label", ["a", "rare"])
    assert m["per_label_auc"] == {"a": 1.0, "rare": None}
    assert m["macro_auc"] == 1.0  # over the labels where it is defined


def test_constant_scores_give_chance_auc():
    Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    m = score(Y, np.full((4, 2), 0.3), "multi_label", ["a", "b"])
    assert m["macro_auc"] == 0.5 and m["macro_f1"] == 0.0


def test_threshold_moves_multilabel_predictions_only():
    P = np.array([[0.3, 0.6]])
    assert predict_labels(P, "multi_label", 0.5).tolist() == [[0, 1]]
    assert predict_labels(P, "multi_label", 0.25).tolist() == [[1, 1]]
    assert predict_labels(P, "single_label", 0.25).tolist() == [[0, 1]]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 label names"):
        score(np.zeros((2, 2)), np.zeros((2, 2)), "multi_label", ["a", "b", "c"])


def test_scores_match_sklearn_on_random_data_with_ties():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(3)
    Y = (rng.random((200, 6)) < [0.5, 0.2, 0.05, 0.01, 0.0, 1.0]).astype(int)
    P = np.round(rng.random((200, 6)) * 0.5 + 0.4 * Y, 1)  # coarse scores: many ties
    thr = np.array([0.5, 0.4, 0.3, 0.6, 0.5, 0.2])
    m = score(Y, P, "multi_label", list("abcdef"), thr)
    Yhat = (P >= thr).astype(int)
    assert m["macro_f1"] == pytest.approx(f1_score(Y, Yhat, average="macro", zero_division=0), abs=1e-12)
    assert m["micro_f1"] == pytest.approx(f1_score(Y, Yhat, average="micro", zero_division=0), abs=1e-12)
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(Y, Yhat))
    for k, name in enumerate("abcdef"):
        expect = roc_auc_score(Y[:, k], P[:, k]) if 0 < Y[:, k].sum() < len(Y) else None
        assert m["per_label_auc"][name] == (None if expect is None else pytest.approx(expect, abs=1e-12))
    assert m["micro_auc"] == pytest.approx(roc_auc_score(Y.ravel(), P.ravel()), abs=1e-12)
