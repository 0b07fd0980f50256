"""Tests for analysis/: the report page (content, escaping, self-containment), figures, W&B.

Each test builds a tiny fake run in tmp_path (feature cache, metrics.json, scores) without
torch. The browser checks of the same page are in test_report_browser.py.
Run: PYTHONPATH=. python -m pytest tests/test_analysis.py -q
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

from probekit.core.cache import CacheWriter
from probekit.core.config import load_config
from probekit.core.metrics import predict_labels
from probekit.core.runfolder import features_dir
from probekit.stages.analysis import plots
from probekit.stages.analysis.report import build_report, choose_model, load_metrics

LABELS = ["joy", '<img src=x onerror="window.__pwned=4">', "anger", "fear"]
SIZES = {"train": 60, "validation": 20, "test": 20}
PAYLOADS = [
    '<script>window.__pwned=1;document.title="pwned"</script>',
    "<img src=x onerror=\"window.__pwned=2;document.title='pwned'\">",
    "</script><script>window.__pwned=3</script><!-- & -->",
]
SCRIPT_TEXT = "evil " + PAYLOADS[0] + " text"
UMAP_POINTS = 50


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def _block(Y: np.ndarray, scores: np.ndarray, multi: bool, rich: bool) -> dict:
    pred = predict_labels(scores, "multi_label" if multi else "single_label")
    aucs = {lab: (float(roc_auc_score(Y[:, j], scores[:, j])) if 0 < Y[:, j].sum() < len(Y) else None)
            for j, lab in enumerate(LABELS)}
    defined = [a for a in aucs.values() if a is not None]
    out = {"micro_auc": float(roc_auc_score(Y.ravel(), scores.ravel())), "macro_auc": float(np.mean(defined)),
           "micro_f1": 0.5, "macro_f1": 0.4, "per_label_auc": aucs, "per_label_f1": {lab: 0.5 for lab in LABELS},
           "support": {lab: int(v) for lab, v in zip(LABELS, Y.sum(0))},
           "subset_accuracy" if multi else "accuracy": float((pred == Y).all(axis=1).mean())}
    if rich:  # metrics.json schema 2: tuned thresholds and bootstrap intervals
        out["tuned"] = {**out, "macro_f1": 0.45}
        out["ci"] = {k: [out[k] - 0.05, out[k] + 0.05] for k in ("macro_f1", "micro_f1", "macro_auc", "micro_auc")}
    return out


def make_run(root: Path, problem_type: str, seed: int = 0, rich: bool = True) -> Path:
    """A fake run: a cache with signal in the first 4 dims, scores and metrics for dummy and logreg.

    Texts carry HTML/script payloads (every 4th train row, test rows 0-2); test row 0 is
    logreg's most confident error. `rich`: metrics.json with tuned blocks, intervals,
    thresholds, selection grids, comparisons and a search.json, as classify and search write now.
    """
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
            if split == "train":
                texts = [PAYLOADS[i // 4 % 3] if i % 4 == 0 else t for i, t in enumerate(texts)]
            if split == "test":
                texts[0], texts[1], texts[2] = SCRIPT_TEXT, PAYLOADS[1], PAYLOADS[2]
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
                    entry = models.setdefault(name, {"fit_seconds": 0.01, "predict_seconds": 0.001})
                    entry[split] = _block(Y, s, multi, rich)
        writer.commit({
            "model_id": "fake/encoder", "model_revision": "abc", "pooling": "cls", "layer": -1,
            "max_length": 32, "truncation": True, "hidden_size": 8, "dtype": "float32",
            "dataset_id": "fake-ds", "label_names": LABELS, "problem_type": problem_type,
        })
    metrics = {"run": "t", "problem_type": problem_type, "labels": LABELS, "seed": seed, "models": models}
    if rich:
        grid = [{"feature_set": "cls", "C": c, "class_weight": "none", "validation_score": 0.25 + c / 10,
                 "validation_macro_f1": 0.3 + c / 10, "validation_macro_auc": 0.8, "fit_seconds": 0.1}
                for c in (0.1, 1.0)]
        for name, entry in models.items():
            entry.update(threshold=0.5, thresholds={lab: 0.4 for lab in LABELS} if multi else None, feature_set="cls",
                         input="features", params={"C": 1.0, "class_weight": "none"} if name == "logreg" else {},
                         selection={"chosen": {"feature_set": "cls", "C": 1.0, "class_weight": "none"},
                                    "validation_score": 0.4 if name == "logreg" else 0.1,
                                    "n_candidates": 2, "grid": grid if name == "logreg" else []})
        metrics.update(schema_version=2, comparisons={"best": "logreg", "n_bootstrap": 100, "ci_level": 0.95,
                                                      "p_better": {"dummy": 0.99}})
        trials = [{"trial": i, "params": {"C": c, "class_weight": "none", "pooling": "cls", "thresholds": "tune"},
                   "validation_macro_f1": 0.5 + i / 10, "validation_macro_auc": 0.9, "test_macro_f1": 0.5,
                   "fit_seconds": 0.1} for i, c in enumerate((0.1, 1.0, 10.0))]
        search = {"model": "logreg", "grid": {"C": [0.1, 1.0, 10.0], "class_weight": ["none"], "pooling": ["cls"],
                                              "thresholds": ["tune"]}, "trials": trials, "best": trials[-1]}
        (run_dir / "search").mkdir()
        (run_dir / "search" / "search.json").write_text(json.dumps(search))
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run_dir


def make_cfg(root: Path, *extra: str):
    return load_config(None, overrides=[f"run.artifacts={str(root)!r}", "run.name='t'", "classify.n_jobs=1",
                                        f"report.umap_max_points={UMAP_POINTS}", "report.umap_n_neighbors=10", *extra])


def build(tmp_path_factory, problem_type: str, rich: bool = True) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp(problem_type)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        make_run(root, problem_type, rich=rich)
        html_path = build_report(make_cfg(root))
    return root / "t", html_path, html_path.read_text(encoding="utf-8")


@pytest.fixture(scope="module", params=["multi_label", "single_label"])
def built(request, tmp_path_factory):
    """One report per problem type (single-label with the older metrics.json, without tuned
    blocks, intervals or search), shared by the checks below (UMAP is the slow part)."""
    return build(tmp_path_factory, request.param, rich=request.param == "multi_label")


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
    assert report["umap"]["n_rows"] == UMAP_POINTS
    assert report["label_errors"]["n_rows"] == SIZES["train"]


def test_html_sections_and_self_contained(built):
    run_dir, _, text = built
    assert text.count('<span class="model">') == 2  # one comparison-table row per model
    for name in ("joy", "anger", "fear", "fake/encoder", ">dummy<", ">logreg<", 'id="label-table"',
                 'id="counts-table"' if "multi" in str(run_dir) else "Confusion matrix", 'id="umap"',
                 'id="label-errors"', 'data-group="loss"', "feature manifest", "configuration of this report"):
        assert name in text, name
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert "<link" not in text
    assert re.findall(r"<script[^>]*>", text) == ['<script type="application/json" id="umap-data">', "<script>"]
    assert "default-src 'none'" in text  # the CSP: no network, only the page's own script
    assert text.count('src="data:image/png;base64,') == 1  # the density panels; the rest is HTML


def test_umap_data_one_point_per_sampled_text(built):
    run_dir, _, text = built
    data = json.loads(re.search(r'id="umap-data">(.*?)</script>', text, re.S).group(1))
    rows = np.load(run_dir / "report" / "umap.train.npz")["rows"]
    assert len(data["x"]) == len(data["text"]) == len(data["true"]) == len(data["pred"]) == len(rows) == UMAP_POINTS
    assert data["row"] == rows.tolist() and data["labels"] == LABELS
    assert all(0 <= v <= 1000 for v in data["x"] + data["y"])


def test_html_escapes_data(built):
    _, _, text = built
    body = text.split('<script type="application/json"', 1)[0].replace('<img src="data:image/png;base64,', "")
    assert "<img src=x" not in body and "<script>window" not in body and "<!-- &" not in body
    assert "&lt;img src=x onerror=&quot;window.__pwned=4&quot;&gt;" in body  # the label name, as text
    assert "&lt;script&gt;window.__pwned=1" in body  # a text in the error tables, as text
    data = text.split('id="umap-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data and "\\u003c/script\\u003e" in data


def test_rich_metrics_sections(tmp_path_factory, built):
    run_dir, _, text = built
    if "single" in str(run_dir):
        assert "No search yet" in text and "n/a" in text  # older metrics.json: still a page
        return
    assert text.count('<tr class="best">') >= 2  # the best model and the best search trial
    assert re.search(r'id="search-table".*?</table>', text, re.S).group(0).count("<tr") == 1 + 3
    assert "logreg: 2 grid points" in text and "[0.4" in text  # classify's grid and the intervals
    # the cross-fitted selection score is a column of its own, not a parameter; the in-sample F1 says so
    grid_table = re.search(r"logreg: 2 grid points.*?</table>", text, re.S).group(0)
    assert "selection score (cross-fitted)" in grid_table and "(in-sample thresholds)" in grid_table
    assert ">validation_score</th>" not in grid_table and "0.350" in grid_table
    assert "P(best &gt; it)" in text and "0.990" in text


def test_map_of_test_split_without_label_errors(tmp_path):
    make_run(tmp_path, "single_label")
    cfg = make_cfg(tmp_path, "report.umap_split='test'", "report.label_error_folds=0")
    text = build_report(cfg).read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="umap-data">(.*?)</script>', text, re.S).group(1))
    assert data["split"] == "test" and data["predicted_by"] == "logreg" and data["flagged"] == []
    assert len(data["x"]) == SIZES["test"] and 'id="label-errors"' not in text and "likely label errors" not in text
    report = json.loads((tmp_path / "t" / "report" / "report.json").read_text())
    assert report["label_errors"] is None and report["umap"]["file"] == "umap.test.npz"


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
    assert choose_model({**m, "comparisons": {"best": "b"}}) == "b"
    assert choose_model({"models": {"dummy": {"validation": {"macro_auc": None}}}}) == "dummy"


def test_missing_metrics_and_scores(tmp_path):
    run_dir = make_run(tmp_path, "single_label", rich=False)
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


def _wandb_env(monkeypatch, tmp_path):
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")


def _tables(run_dir: Path) -> dict[str, dict]:
    """The W&B tables of an offline run folder, by key. Shuts the wandb service down first:
    it may still be writing the run's files when finish() returns (a CLI run exits, which flushes)."""
    import wandb

    wandb.teardown()
    found = {}
    for p in (run_dir / "files" / "media" / "table").rglob("*.table.json"):
        key = str(p.relative_to(run_dir / "files" / "media" / "table")).rsplit("_", 2)[0]
        found[key] = json.loads(p.read_text())
    return found


def test_wandb_offline_report_run(tmp_path, monkeypatch):
    _wandb_env(monkeypatch, tmp_path)
    make_run(tmp_path, "multi_label")
    build_report(make_cfg(tmp_path))
    run_dirs = list((tmp_path / "t" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    report = json.loads((tmp_path / "t" / "report" / "report.json").read_text())
    assert Path(report["wandb_run_dir"]) == run_dirs[0]
    tables = _tables(run_dirs[0])
    auc = tables["per_label_auc"]
    assert auc["columns"] == ["label", "support", "auc_dummy", "auc_logreg"]
    assert sorted(row[0] for row in auc["data"]) == sorted(__import__("html").escape(lab) for lab in LABELS)
    assert tables["per_label_f1"]["columns"] == ["label", "support", "f1_dummy", "f1_logreg"]
    assert len(tables["confusion_matrix_table"]["data"]) == len(LABELS) ** 2  # true x predicted counts
    assert {row[0] for row in tables["roc_per_label_table"]["data"]} <= {row[0] for row in auc["data"]}
    for key in ("errors/highest_loss", "errors/label_errors"):  # texts escaped in W&B tables too
        blob = json.dumps(tables[key]["data"])
        assert "<script" not in blob and "<img" not in blob
    assert "&lt;script&gt;" in json.dumps(tables["errors/highest_loss"]["data"])
    assert len(list((run_dirs[0] / "files" / "media" / "images").rglob("*.png"))) == 4
    (log,) = run_dirs[0].glob("*.wandb")  # the offline record `wandb sync` uploads
    record = log.read_bytes()
    for needle in (b"test/logreg/macro_auc", b"test/logreg/ci/macro_f1/lo", b"index.html", b"t-report",
                   b"encoder:fake/encoder"):
        assert needle in record, needle


def test_wandb_offline_extract_and_classify_runs(tmp_path, monkeypatch):
    from probekit.stages.analysis.wandb_evidence import log_classify
    from probekit.stages.analysis.wandb_log import log_extract

    _wandb_env(monkeypatch, tmp_path)
    run_dir = make_run(tmp_path, "single_label")
    extract_dir = Path(log_extract(make_cfg(tmp_path), run_dir / "features"))
    out = log_classify(make_cfg(tmp_path), run_dir / "metrics.json")
    tables = _tables(Path(out))
    record = next(extract_dir.glob("*.wandb")).read_bytes()
    assert b"t-extract" in record and b"rows/train" in record and b"fake/encoder" in record
    assert {"per_label_auc", "per_label_f1", "models", "confusion_matrix_table", "roc_per_label_table"} <= set(tables)
    assert tables["confusion_matrix_table"]["columns"] == ["Actual", "Predicted", "nPredictions"]
    record = next(Path(out).glob("*.wandb")).read_bytes()
    assert b"t-classify" in record and b"metrics.json" in record


def test_wandb_run_finishes_failed_on_an_exception_and_reraises(tmp_path, monkeypatch):
    from probekit.core.tracking import wandb_run

    _wandb_env(monkeypatch, tmp_path)
    codes = []
    with pytest.raises(RuntimeError, match="boom"), wandb_run(make_cfg(tmp_path), "report") as run:
        finish = run.finish  # the real one still runs, so the offline run is closed
        monkeypatch.setattr(run, "finish", lambda exit_code=None: (codes.append(exit_code), finish(exit_code)))
        raise RuntimeError("boom")
    assert codes == [1]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with wandb_run(make_cfg(tmp_path), "report") as run:
        assert run is None


def test_analysis_imports_no_heavy_libraries():
    code = ("import sys, probekit.stages.analysis.report, probekit.stages.analysis.plots, "
            "probekit.stages.analysis.wandb_log, probekit.stages.classify.search; "
            "bad = [m for m in ('torch', 'transformers', 'datasets', 'wandb', 'umap') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr


def test_the_verdict_says_what_words_and_fine_tuning_add():
    from probekit.stages.analysis.results import verdict

    def entry(f1, input_="features", **more):
        return {"input": input_, "test": {"macro_f1": f1 / 2, "tuned": {"macro_f1": f1}}, **more}

    metrics = {"models": {"dummy": entry(0.07), "tfidf_logreg": entry(0.45, "texts"), "logreg": entry(0.35),
                          "hybrid_logreg": entry(0.47, "both")}}
    assert verdict(metrics) == ("Words beat the frozen encoder here: TF-IDF + logistic regression reaches test "
                                "macro-F1 0.450, the best model on the encoder's features alone (logreg) 0.350.")
    metrics["models"]["finetuned"] = entry(0.52, "texts", history=[{}, {}, {}], train_rows=43410)
    assert verdict(metrics).endswith("Fine-tuning (3 epochs on 43410 train rows) reaches test macro-F1 0.520, "
                                     "above the best model without fine-tuning (hybrid_logreg, 0.470) by 0.050.")
