"""Tests for analysis/: figures, tables, the self-contained HTML report and W&B logging.

Each test builds a tiny fake run in tmp_path (feature cache, metrics.json, scores) without
torch. Run: PYTHONPATH=. python -m pytest tests/test_analysis.py -q
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from analysis import plots
from classify.metrics import predict_labels
from analysis.report import build_report, choose_model, load_metrics
from extract.cache import CacheWriter, features_dir
from extract.config import load_config

LABELS = ["joy", "<b>x</b>", "anger", "fear"]
SIZES = {"train": 60, "validation": 20, "test": 20}
SCRIPT_TEXT = "evil <script>alert(1)</script> text"


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def _metrics_for(Y: np.ndarray, scores: np.ndarray, multi: bool) -> dict:
    pred = predict_labels(scores, "multi_label" if multi else "single_label")
    aucs = {lab: (float(roc_auc_score(Y[:, j], scores[:, j])) if 0 < Y[:, j].sum() < len(Y) else None)
            for j, lab in enumerate(LABELS)}
    defined = [a for a in aucs.values() if a is not None]
    out = {
        "micro_auc": float(roc_auc_score(Y.ravel(), scores.ravel())), "macro_auc": float(np.mean(defined)),
        "micro_f1": 0.5, "macro_f1": 0.4, "per_label_auc": aucs,
        "per_label_f1": {lab: 0.5 for lab in LABELS},
    }
    key = "subset_accuracy" if multi else "accuracy"
    out[key] = float((pred == Y).all(axis=1).mean())
    return out


def make_run(root: Path, problem_type: str, seed: int = 0) -> Path:
    """A fake run: cache with signal in the first 4 dims, scores and metrics for dummy and logreg."""
    multi = problem_type == "multi_label"
    rng = np.random.default_rng(seed)
    run_dir = root / "t"
    models: dict = {}
    with CacheWriter(features_dir(run_dir)) as writer:
        for split, n in SIZES.items():
            if multi:
                Y = (rng.random((n, len(LABELS))) < 0.35).astype(np.uint8)
                y = Y
            else:
                y = rng.integers(0, len(LABELS), size=n).astype(np.int64)
                Y = np.eye(len(LABELS), dtype=np.uint8)[y]
            X = rng.normal(size=(n, 8)).astype(np.float32)
            X[:, :4] += 2.5 * Y
            texts = [f"{split} row {i}" for i in range(n)]
            if split == "test":
                texts[0] = SCRIPT_TEXT
            writer.add_split(split, X, y, texts, [f"{split}-{i}" for i in range(n)])
            logits = X[:, :4] - 1.25
            good = 1 / (1 + np.exp(-logits)) if multi else np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            if split == "test":  # row 0 (the <script> text) is the most confident error
                good[0] = np.where(Y[0], 0.0005, 0.9995) if multi else np.eye(len(LABELS))[(y[0] + 1) % 4]
            dummy = np.tile(Y.mean(axis=0), (n, 1))
            (run_dir / "scores").mkdir(parents=True, exist_ok=True)
            for name, s in (("dummy", dummy), ("logreg", good)):
                np.save(run_dir / "scores" / f"{name}.{split}.npy", s.astype(np.float32))
                if split != "train":
                    models.setdefault(name, {"fit_seconds": 0.01, "predict_seconds": 0.001})[split] = \
                        _metrics_for(Y, s, multi)
        writer.commit({
            "model_id": "fake/encoder", "model_revision": "abc", "pooling": "cls", "layer": -1,
            "max_length": 32, "truncation": True, "hidden_size": 8, "dtype": "float32",
            "dataset_id": "fake-ds", "label_names": LABELS, "problem_type": problem_type,
        })
    metrics = {"run": "t", "problem_type": problem_type, "labels": LABELS, "seed": seed, "models": models}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run_dir


def make_cfg(root: Path, *extra: str):
    return load_config(None, overrides=[f"run.artifacts={str(root)!r}", "run.name='t'",
                                        "report.umap_max_points=50", "report.umap_n_neighbors=10", *extra])


@pytest.fixture(scope="module", params=["multi_label", "single_label"])
def built(request, tmp_path_factory):
    """One report per problem type, shared by the checks below (UMAP is the slow part)."""
    root = tmp_path_factory.mktemp(request.param)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        make_run(root, request.param)
        html_path = build_report(make_cfg(root))
    return root / "t", html_path, html_path.read_text(encoding="utf-8")


def test_report_files(built):
    run_dir, html_path, _ = built
    assert html_path == run_dir / "report" / "index.html"
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["chosen_model"] == "logreg" and report["wandb_run_dir"] is None
    assert set(report["images"]) == {"confusion", "per_label_auc", "umap_scatter", "umap_density"}
    for name in report["images"].values():
        png = run_dir / "report" / name
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run_dir / "report" / "config.json").read_text())["run"]["name"] == "t"
    assert report["umap"]["n_rows"] == 50


def test_html_content_and_self_contained(built):
    _, _, text = built
    assert text.count('class="model-row') == 2  # dummy and logreg
    for name in ("joy", "anger", "fear", "fake/encoder", "dummy", "logreg"):
        assert name in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert "<link" not in text and "<script" not in text
    assert text.count('src="data:image/png;base64,') == 4


def test_html_escapes_data(built):
    _, _, text = built
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_cooccurrence_and_counts_by_hand():
    Y_true = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    Y_pred = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 1], [1, 0, 0]])
    M = plots.cooccurrence_matrix(Y_true, Y_pred)
    np.testing.assert_allclose(M[:2], [[0.5, 1.0, 0.0], [0.0, 1.0, 0.5]])
    assert np.isnan(M[2]).all()  # no row carries label 2
    rows = plots.label_counts(Y_true, Y_pred, ["a", "b", "c"])
    assert [(r["tp"], r["fp"], r["fn"], r["tn"], r["support"]) for r in rows] == [
        (1, 1, 1, 1, 2), (2, 1, 0, 1, 2), (0, 1, 0, 3, 0)]
    assert rows[0]["precision"] == 0.5 and rows[0]["recall"] == 0.5
    assert rows[1]["precision"] == pytest.approx(2 / 3) and rows[1]["recall"] == 1.0
    assert rows[2]["precision"] == 0.0 and rows[2]["recall"] is None


def test_predicted_matrix_and_choose_model():
    s = np.array([[0.2, 0.7, 0.6], [0.5, 0.1, 0.4]])
    np.testing.assert_array_equal(predict_labels(s, "single_label"), [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(predict_labels(s, "multi_label", 0.5), [[0, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(predict_labels(s, "multi_label", 0.65), [[0, 1, 0], [0, 0, 0]])
    m = {"models": {"dummy": {"validation": {"macro_auc": 0.9}}, "a": {"validation": {"macro_auc": None}},
                    "b": {"validation": {"macro_auc": 0.7}}, "c": {"validation": {"macro_auc": 0.8}}}}
    assert choose_model(m) == "c"
    assert choose_model({"models": {"dummy": {"validation": {"macro_auc": None}}}}) == "dummy"


def test_missing_metrics_and_scores(tmp_path):
    run_dir = make_run(tmp_path, "single_label")
    (run_dir / "scores" / "logreg.test.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"logreg\.test\.npy.*make classify"):
        build_report(make_cfg(tmp_path))
    (run_dir / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"metrics\.json.*make classify"):
        load_metrics(run_dir)
    with pytest.raises(FileNotFoundError, match="make classify"):
        build_report(make_cfg(tmp_path))


def test_umap_tiny_input():
    X = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    emb, rows = plots.umap_embedding(X, seed=1, max_points=50, n_neighbors=15)
    assert emb.shape == (6, 2) and list(rows) == list(range(6)) and np.isfinite(emb).all()


def test_wandb_offline_logs_table(tmp_path, monkeypatch):
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    make_run(tmp_path, "multi_label")
    build_report(make_cfg(tmp_path))
    run_dirs = list((tmp_path / "t" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    report = json.loads((tmp_path / "t" / "report" / "report.json").read_text())
    assert Path(report["wandb_run_dir"]) == run_dirs[0]
    tables = list((run_dirs[0] / "files" / "media" / "table").glob("per_label_auc*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["label", "support", "auc_dummy", "auc_logreg"]
    assert sorted(row[0] for row in table["data"]) == sorted(LABELS)
    assert len(list((run_dirs[0] / "files" / "media" / "images").rglob("*.png"))) == 4
    (log,) = run_dirs[0].glob("*.wandb")  # the offline record `wandb sync` uploads
    record = log.read_bytes()
    assert b"test/logreg/macro_auc" in record and b"index.html" in record  # metrics and the artifact


def test_analysis_imports_no_heavy_libraries():
    code = ("import sys, analysis.report, analysis.plots, analysis.wandb_log; "
            "bad = [m for m in ('torch', 'transformers', 'datasets', 'wandb') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
