"""W&B runs of the classify and report stages: metric tables and the best model's test evidence.

    log_classify(cfg, run_dir / METRICS_NAME)                          # after `probekit classify`
    log_report(cfg, metrics, images, per_label, html_path, evidence)   # by build_report

The runs themselves (mode, config, group, tags, finishing) come from
``analysis.wandb_log``; this module adds what is logged in them: per-label AUC and F1
tables, the models table, selection grids, the confusion data and per-label ROC curves of
the best model on test (binary data: the positive class's ROC and precision-recall curves,
and its F1, precision, recall, average precision and threshold in the run summary), and the
metrics or report file as an artifact. ``wandb`` is
imported only inside the logging functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from probekit.core.config import Config
from probekit.core.tracking import finish_run, import_wandb, resolve_mode, safe, wandb_run
from probekit.stages.analysis.wandb_log import flatten_metrics

ROC_POINTS = 120  # most points kept per ROC curve (W&B tables hold 10,000 rows)


@dataclass
class TestEvidence:
    """The best model's test predictions: what the confusion data and ROC curves are made of."""

    model: str
    labels: list
    problem_type: str
    Y: np.ndarray  # (n, L) 0/1 true labels
    P: np.ndarray  # (n, L) probabilities
    Yhat: np.ndarray  # (n, L) 0/1 predictions
    high_loss: list | None = None  # rows from analysis.errors.highest_loss
    label_errors: list | None = None  # rows from analysis.errors.label_errors
    positive: int | None = None  # binary data: the positive column


def _metric_tables(wandb, metrics: dict, per_label: list[dict]) -> dict:
    """Per-label AUC and F1 of every model, the models table and each model's selection grid."""
    models = list(metrics["models"])
    out = {}
    for key in ("auc", "f1"):
        out[f"per_label_{key}"] = wandb.Table(
            columns=["label", "support"] + [f"{key}_{m}" for m in models],
            data=[[safe(r["label"]), int(r["support"])] + [r[key].get(m) for m in models] for r in per_label],
            allow_mixed_types=True)  # an undefined AUC is None next to floats
    from probekit.stages.analysis.results import model_rows

    rows = model_rows(metrics, metrics.get("comparisons", {}).get("best"))
    cols = ["model", "input", "feature_set", "params", "macro_f1", "micro_f1", "macro_auc", "micro_auc",
            "f1_fixed", "accuracy", "validation", "val_accuracy", "val_macro_f1", "fit_seconds", "p_better"]
    if metrics["models"] and any(e.get("positive") for e in metrics["models"].values()):
        cols += ["pos_f1", "pos_precision", "pos_recall", "pos_average_precision", "pos_roc_auc", "pos_threshold"]
    out["models"] = wandb.Table(columns=cols, data=[[r[c] if c != "model" else safe(r[c]) for c in cols] for r in rows],
                                allow_mixed_types=True)
    for m, entry in metrics["models"].items():
        grid = entry.get("selection", {}).get("grid") or []
        if len(grid) > 1:
            keys = list(grid[0])
            out[f"selection/{m}"] = wandb.Table(columns=keys, data=[[str(g.get(k)) if isinstance(g.get(k), str) or
                                                                      g.get(k) is None else g.get(k) for k in keys]
                                                                     for g in grid], allow_mixed_types=True)
    return out


def _evidence_charts(wandb, ev: TestEvidence) -> dict:
    """The confusion data and per-label ROC curves of the best model on test."""
    labels, out = [safe(lab) for lab in ev.labels], {}
    if ev.problem_type == "single_label":
        out["confusion_matrix"] = wandb.plot.confusion_matrix(
            y_true=ev.Y.argmax(1).tolist(), preds=ev.Yhat.argmax(1).tolist(), class_names=labels,
            title=f"{ev.model}, test")
    else:  # multi-label: rows with true label i whose predicted set holds j, drawn with the same chart
        counts = ev.Y.T.astype(np.int64) @ ev.Yhat.astype(np.int64)
        table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"],
                            data=[[labels[i], labels[j], int(counts[i, j])] for i in range(len(labels))
                                  for j in range(len(labels))])
        out["confusion_matrix"] = wandb.plot_table(
            "wandb/confusion_matrix/v1", table, {"Actual": "Actual", "Predicted": "Predicted",
                                                 "nPredictions": "nPredictions"},
            {"title": f"{ev.model}, test: true x predicted labels"})
    roc = []
    for k, lab in enumerate(labels):
        if 0 < ev.Y[:, k].sum() < len(ev.Y):
            fpr, tpr, _ = roc_curve(ev.Y[:, k], ev.P[:, k])
            keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS)).round().astype(int))
            roc += [[lab, round(float(fpr[i]), 4), round(float(tpr[i]), 4)] for i in keep]
    if ev.positive is not None:  # binary data: the positive class's precision-recall curve
        from probekit.stages.analysis.curves import curve_points

        c = curve_points(ev.Y[:, ev.positive], ev.P[:, ev.positive], max_points=ROC_POINTS)
        if c["recall"]:
            lab = labels[ev.positive]
            out["pr_curve"] = wandb.plot_table(
                "wandb/area-under-curve/v0", wandb.Table(columns=["class", "recall", "precision"], data=[
                    [lab, round(r, 4), round(p, 4)] for r, p in zip(c["recall"], c["precision"])]),
                {"x": "recall", "y": "precision", "class": "class"},
                {"title": f"{ev.model}, test: precision-recall of {lab} (AP {c['average_precision']:.3f})",
                 "x-axis-title": "Recall", "y-axis-title": "Precision"})
    if roc:
        out["roc_per_label"] = wandb.plot_table(
            "wandb/area-under-curve/v0", wandb.Table(columns=["class", "fpr", "tpr"], data=roc),
            {"x": "fpr", "y": "tpr", "class": "class"},
            {"title": f"{ev.model}, test: ROC per label", "x-axis-title": "False positive rate",
             "y-axis-title": "True positive rate"})
    if ev.high_loss:
        out["errors/highest_loss"] = wandb.Table(
            columns=["loss", "text", "true", "predicted"],
            data=[[r["loss"], safe(r["text"]), safe(", ".join(r["true"])), safe(", ".join(r["predicted"]))]
                  for r in ev.high_loss])
    if ev.label_errors:
        out["errors/label_errors"] = wandb.Table(
            columns=["confidence", "text", "given", "doubtful", "missing"],
            data=[[r["margin"], safe(r["text"]), *(safe(", ".join(r[k])) for k in ("given", "doubtful", "missing"))]
                  for r in ev.label_errors])
    return out


def _positive_summary(run, metrics: dict, best: str | None) -> None:
    """Binary data: the best model's test positive-class scores and threshold in the run summary."""
    pos = ((metrics["models"].get(best) or {}).get("test") or {}).get("positive")
    if not pos:
        return
    ci = metrics["models"][best]["test"].get("ci") or {}
    run.summary["positive_label"] = pos["label"]
    for k in ("f1", "precision", "recall", "average_precision", "roc_auc", "threshold"):
        if pos.get(k) is not None:
            run.summary[f"best_positive/{k}"] = pos[k]
    for k in ("positive_f1", "positive_average_precision"):
        if ci.get(k) and ci[k][0] is not None:
            run.summary[f"best_positive/ci/{k}/lo"], run.summary[f"best_positive/ci/{k}/hi"] = ci[k]


def log_report(cfg: Config, metrics: dict, images: dict[str, Path], per_label_rows: list[dict], report_html: Path,
               evidence: TestEvidence | None = None, manifest: dict | None = None,
               finetune: dict | None = None) -> str | None:
    """The report stage's run: every metric, per-label AUC and F1 tables, the confusion data,
    ROC curves per label, the figures (UMAP included) and the HTML page as an artifact; with
    `finetune` (analysis.finetune_section.compute) its per-label table, costs and curves.

    Returns:
        The W&B run folder (offline: what ``wandb sync`` takes), or None when disabled.
    """
    with wandb_run(cfg, "report", manifest) as run:
        if run is None:
            return None
        wandb = import_wandb()
        payload: dict = {**flatten_metrics(metrics), **_metric_tables(wandb, metrics, per_label_rows)}
        if evidence is not None:
            payload.update(_evidence_charts(wandb, evidence))
        if finetune:
            from probekit.stages.analysis.finetune_section import wandb_tables

            payload.update(wandb_tables(wandb, finetune))
        for key, path in images.items():
            payload[f"images/{key}"] = wandb.Image(str(path), caption=key)
        run.log(payload)
        run.summary["best_model"] = metrics.get("comparisons", {}).get("best") or (evidence.model if evidence else None)
        _positive_summary(run, metrics, run.summary["best_model"])
        artifact = wandb.Artifact(name=f"{cfg.run.name}-report", type="report",
                                  metadata={"run": cfg.run.name, "models": list(metrics["models"])})
        artifact.add_file(str(report_html), name=Path(report_html).name)
        run.log_artifact(artifact)
    return finish_run(run)


def log_classify(cfg: Config, metrics_path: str | Path) -> str | None:
    """The classify stage's run: every metric of metrics.json, the model and per-label tables,
    the best model's confusion data and ROC curves, and metrics.json as an artifact."""
    from probekit.core.cache_reader import read_cache
    from probekit.core.metrics import predict_labels
    from probekit.core.runfolder import features_dir
    from probekit.stages.analysis import results

    if resolve_mode(cfg) == "disabled" and not os.environ.get("WANDB_SWEEP_ID"):
        return None
    metrics_path = Path(metrics_path)
    metrics = results.load_metrics(metrics_path.parent)
    cache = read_cache(features_dir(metrics_path.parent), verify=False)
    with wandb_run(cfg, "classify", cache.manifest) as run:
        if run is None:
            return None
        wandb = import_wandb()
        best = results.choose_model(metrics)
        Y = cache.Y("test")
        P = np.asarray(results.load_scores(metrics_path.parent, best, "test", Y.shape))
        k = results.model_positive(metrics, best)
        ev = TestEvidence(best, cache.label_names, cache.problem_type, Y, P,
                          predict_labels(P, cache.problem_type, results.model_threshold(metrics, best), k),
                          positive=k)
        per_label = results.per_label_table(metrics, dict(zip(cache.label_names, Y.sum(axis=0).tolist())))
        run.log({**flatten_metrics(metrics), **_metric_tables(wandb, metrics, per_label),
                 **_evidence_charts(wandb, ev)})
        run.summary["best_model"] = best
        _positive_summary(run, metrics, best)
        artifact = wandb.Artifact(name=f"{cfg.run.name}-metrics", type="metrics",
                                  metadata={"models": list(metrics["models"])})
        artifact.add_file(str(metrics_path), name=metrics_path.name)
        run.log_artifact(artifact)
    return finish_run(run)
