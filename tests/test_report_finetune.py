"""The report's "What fine-tuning adds" section (analysis.finetune_section), on a tiny fake run.

The run of test_analysis (cache, metrics.json, scores; no torch) gains a words model and two
fine-tuned models with a training history; the section's numbers are checked against a
direct scikit-learn computation, its intervals against classify's resamples.
Run: .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_report_finetune.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score
from test_analysis import LABELS, _block, _tables, _wandb_env, make_cfg, make_run

from probekit.core.cache_reader import read_cache
from probekit.core.metrics import predict_labels
from probekit.core.runfolder import features_dir
from probekit.stages.analysis import finetune_section
from probekit.stages.analysis.report import build_report
from probekit.stages.classify import bootstrap

N_BOOT = 200
FAST = ("report.umap_split='test'", "report.label_error_folds=0")


def _history(n: int, best: int) -> list[dict]:
    return [{"epoch": e, "phase": "all", "train_loss": 0.7 / e, "validation_loss": 0.6 / e + 0.01 * (e == n),
             "validation_metric": 0.3 + 0.05 * e - 0.06 * (e == n), "best": e <= best} for e in range(1, n + 1)]


def add_finetuned(run_dir: Path, problem_type: str, seed: int = 1) -> dict:
    """Add to a make_run folder a words model (the best on validation, not frozen) and two
    fine-tuned models ("finetuned": train_layers 2 with its wall-clock minutes; "finetuned_all":
    every layer, timed by fit_seconds only); returns metrics.json."""
    multi = problem_type == "multi_label"
    cache = read_cache(features_dir(run_dir))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    models, rng = metrics["models"], np.random.default_rng(seed)
    for name, noise in (("tfidf_logreg", 2.0), ("finetuned", 0.6), ("finetuned_all", 0.9)):
        entry = json.loads(json.dumps(models["logreg"]))
        for split in ("validation", "test"):
            Y = cache.Y(split)
            logits = 3.0 * Y - 1.5 + noise * rng.normal(size=Y.shape)
            P = 1 / (1 + np.exp(-logits)) if multi else np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            np.save(run_dir / "scores" / f"{name}.{split}.npy", P.astype(np.float32))
            entry[split] = _block(Y, P, multi, rich=True)
        entry["input"], entry["feature_set"] = "texts", None
        entry["thresholds"] = {lab: 0.3 + 0.1 * k for k, lab in enumerate(LABELS)} if multi else None
        if name == "tfidf_logreg":
            entry["selection"]["validation_score"] = 0.9  # above logreg, but it reads words, not the frozen encoder
        else:
            entry.update(history=_history(3, 2), train_rows=60, examples_per_s=123.4, device="cpu", dtype="bfloat16",
                         fit_seconds=90.0, config={"metric": "macro_f1"})
            entry["selection"] = {"chosen": {"epoch": 2}, "validation_score": 0.35, "seconds": 90.0, "n_candidates": 3}
            entry.update(wall_minutes=2.5, train_layers=2) if name == "finetuned" else entry.update(train_layers=0)
        models[name] = entry
    models["logreg"]["selection"]["seconds"] = 4.0
    metrics["comparisons"]["n_bootstrap"] = N_BOOT
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return metrics


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One multi-label report with the fine-tuned models, logged to an offline W&B run."""
    root = tmp_path_factory.mktemp("ft")
    with pytest.MonkeyPatch.context() as mp:
        _wandb_env(mp, root)
        run_dir = make_run(root, "multi_label", seed=3)
        metrics = add_finetuned(run_dir, "multi_label")
        html = build_report(make_cfg(root, *FAST)).read_text(encoding="utf-8")
        report = json.loads((run_dir / "report" / "report.json").read_text())
        tables = _tables(Path(report["wandb_run_dir"]))
    return run_dir, metrics, html, report, tables


def _direct(run_dir: Path, metrics: dict, model: str, problem_type: str) -> tuple:
    Y = read_cache(features_dir(run_dir)).Y("test")
    P = np.load(run_dir / "scores" / f"{model}.test.npy")
    thr = metrics["models"][model].get("thresholds")
    Yhat = predict_labels(P, problem_type, np.array(list(thr.values())) if thr else 0.5)
    return Y, P, Yhat


def test_section_numbers_equal_a_direct_computation(built):
    run_dir, metrics, _, report, _ = built
    ft = report["finetune"]
    assert ft["frozen"] == "logreg" and ft["finetuned"] == ["finetuned", "finetuned_all"]  # not tfidf_logreg
    Y, P0, Yhat0 = _direct(run_dir, metrics, "logreg", "multi_label")
    W = bootstrap.resample_weights(len(Y), N_BOOT, metrics["seed"])
    boot0 = np.array([f1_score(Y, Yhat0, average=None, zero_division=0, sample_weight=w) for w in W])
    rows = {r["label"]: r for r in ft["rows"]}
    assert [r["support"] for r in ft["rows"]] == sorted(Y.sum(0).tolist(), reverse=True)
    for m in ft["finetuned"]:
        _, P, Yhat = _direct(run_dir, metrics, m, "multi_label")
        f1, f10 = f1_score(Y, Yhat, average=None, zero_division=0), f1_score(Y, Yhat0, average=None, zero_division=0)
        boot = np.array([f1_score(Y, Yhat, average=None, zero_division=0, sample_weight=w) for w in W]) - boot0
        for k, lab in enumerate(LABELS):
            r = rows[lab]
            assert r["f1"][m] == pytest.approx(f1[k]) and r["f1"]["logreg"] == pytest.approx(f10[k])
            assert r["auc"][m] == pytest.approx(roc_auc_score(Y[:, k], P[:, k]))
            assert r["auc"]["logreg"] == pytest.approx(roc_auc_score(Y[:, k], P0[:, k]))
            assert r["diff"][m] == pytest.approx(f1[k] - f10[k])
            lo, hi = r["ci"][m]
            assert lo <= r["diff"][m] <= hi and lo < hi
            np.testing.assert_allclose([lo, hi], np.quantile(boot[:, k], [0.025, 0.975]), atol=1e-9)
            assert r["p_better"][m] == pytest.approx(np.mean(boot[:, k] > 0) + 0.5 * np.mean(boot[:, k] == 0))
        macro = ft["macro"]
        assert macro["f1"][m] == pytest.approx(f1_score(Y, Yhat, average="macro", zero_division=0))
        assert macro["diff"][m] == pytest.approx(f1.mean() - f10.mean())
        assert macro["ci"][m][0] <= macro["diff"][m] <= macro["ci"][m][1]
        np.testing.assert_allclose(macro["ci"][m], np.quantile(boot.mean(1), [0.025, 0.975]), atol=1e-9)


def test_costs(built):
    _, _, html, report, _ = built
    costs = {c["model"]: c for c in report["finetune"]["costs"]}
    assert costs["finetuned"]["minutes"] == 2.5 and costs["finetuned_all"]["minutes"] == pytest.approx(1.5)  # 90 s
    assert costs["finetuned"]["train_layers"] == 2 and costs["finetuned_all"]["train_layers"] == 0
    assert costs["finetuned"]["examples_per_s"] == 123.4 and costs["finetuned"]["device"] == "cpu"
    assert costs["finetuned"]["dtype"] == "bfloat16" and costs["finetuned"]["epochs"] == 3
    assert costs["logreg"]["kind"] == "frozen" and costs["logreg"]["selection_seconds"] == 4.0
    assert costs["logreg"]["minutes"] == pytest.approx((0.01 + 4.0) / 60)
    table = re.search(r'id="finetune-cost".*?</table>', html, re.S).group(0)
    assert "top 2" in table and ">all<" in table and "bfloat16" in table and "123.4" in table


def test_page_curves_and_wandb(built):
    run_dir, _, html, report, tables = built
    png = run_dir / "report" / finetune_section.CURVES_NAME
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 1000
    assert report["images"]["finetune_curves"] == png.name and report["finetune"]["curves"] == png.name
    section = re.search(r'<section id="finetune">.*?</section>', html, re.S).group(0)
    assert "What fine-tuning adds" in section and 'href="#finetune"' in html
    assert section.count('src="data:image/png;base64,') == 1 and 'id="finetune-table"' in section
    assert section.count("<tr") == (1 + 3) + (2 + 1 + len(LABELS))  # costs: header + 3 models; labels: 2 headers
    per_label = tables["finetune/per_label"]
    assert per_label["columns"][:4] == ["label", "support", "f1_logreg", "auc_logreg"]
    assert "f1_diff_finetuned_lo" in per_label["columns"] and len(per_label["data"]) == 1 + len(LABELS)
    assert "&lt;img" in json.dumps(per_label["data"]) and "<img" not in json.dumps(per_label["data"])
    curves = tables["finetune/curves_table"]
    assert curves["columns"] == ["epoch", "value", "series"] and len(curves["data"]) == 2 * 3 * 3
    assert {"finetuned train loss", "finetuned_all validation metric"} <= {r[2] for r in curves["data"]}
    assert [r[0] for r in tables["finetune/costs"]["data"]] == ["logreg", "finetuned", "finetuned_all"]


def test_single_label_uses_the_argmax(tmp_path):
    run_dir = make_run(tmp_path, "single_label", seed=5)
    metrics = add_finetuned(run_dir, "single_label")
    cache = read_cache(features_dir(run_dir))
    Y = cache.Y("test")
    scores = {m: np.load(run_dir / "scores" / f"{m}.test.npy") for m in metrics["models"]}
    ft = finetune_section.compute(metrics, Y, scores, "single_label", cache.manifest, tmp_path)
    y_true = Y.argmax(1)
    for m in ("logreg", "finetuned"):
        f1 = f1_score(y_true, scores[m].argmax(1), average=None, labels=range(len(LABELS)), zero_division=0)
        assert [next(r for r in ft["rows"] if r["label"] == lab)["f1"][m] for lab in LABELS] == pytest.approx(f1)
    assert (tmp_path / finetune_section.CURVES_NAME).is_file()


def test_no_section_without_a_fine_tuned_model(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_dir = make_run(tmp_path, "multi_label")
    html = build_report(make_cfg(tmp_path, *FAST)).read_text(encoding="utf-8")
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["finetune"] is None and "finetune_curves" not in report["images"]
    assert 'id="finetune"' not in html and "What fine-tuning adds" not in html and 'href="#finetune"' not in html
    assert not (run_dir / "report" / finetune_section.CURVES_NAME).exists()
    assert finetune_section.section(None) == ""
