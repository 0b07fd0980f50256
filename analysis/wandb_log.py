"""Weights & Biases: one run per stage (extract, classify, report, each search trial), offline by default.

The mode is ``$WANDB_MODE`` when set, else ``[report] wandb_mode`` (default "offline"): an
offline run lands under ``<run>/wandb/offline-run-*/``, never contacts a server and never
asks for a login; upload later with ``wandb sync <run>/wandb/offline-run-*``. "disabled"
logs nothing. ``wandb`` is imported only inside the logging functions.

Every run carries the resolved config (plus ``stage``, ``encoder``, ``dataset``, ``pooling``
at the top level), ``job_type`` = the stage, a group (``[report] wandb_group``, default
the run name) and tags, so the W&B UI can group and compare runs by encoder and setting.
Texts in W&B tables are HTML-escaped like everywhere else.

    log_extract(cfg, run_dir / "features")          # after `probekit extract`
    log_classify(cfg, run_dir / "metrics.json")     # after `probekit classify`
    log_report(cfg, metrics, images, per_label, html_path, evidence)   # by build_report
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from probekit.core.config import Config
from probekit.core.errors import ProbekitError

logger = logging.getLogger(__name__)

MODES = ("offline", "online", "disabled")
_ALIASES = {"dryrun": "offline", "run": "online"}  # older spellings wandb still accepts
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


def resolve_mode(cfg: Config) -> str:
    """``$WANDB_MODE`` if set, else ``cfg.report.wandb_mode``."""
    env = os.environ.get("WANDB_MODE", "").strip()
    mode = _ALIASES.get(env, env) if env else cfg.report.wandb_mode
    if mode not in MODES:
        raise ProbekitError(f"environment variable WANDB_MODE={env!r} is not one of {', '.join(MODES)}; "
                            "unset it or set it to offline.")
    return mode


def flatten_metrics(metrics: dict) -> dict[str, float]:
    """Every number of metrics.json as ``<split>/<model>/<metric>[/<label>]``.

    Intervals become ``.../ci/<metric>/lo`` and ``/hi``; timings ``time/<model>/<key>``;
    thresholds ``thresholds/<model>/<label>``; ``comparisons/p_better/<model>``. None and
    lists of records (selection grids, logged as tables) are skipped.
    """
    flat: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            flat[f"{prefix}/lo"], flat[f"{prefix}/hi"] = float(value[0]), float(value[1])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix] = float(value)

    for model, entry in metrics["models"].items():
        for key, value in entry.items():
            if key in ("validation", "test"):
                walk(f"{key}/{model}", {k: v for k, v in value.items() if k != "confusion_matrix"})
            elif key == "selection":
                walk(f"selection/{model}", {k: v for k, v in value.items() if k != "grid"})
            elif key.endswith("_seconds"):
                walk(f"time/{model}/{key}", value)
            elif key != "params":
                walk(f"{key}/{model}", value)
    walk("comparisons/p_better", metrics.get("comparisons", {}).get("p_better", {}))
    return flat


def _wandb():
    try:
        import wandb
    except ImportError:
        raise ProbekitError("W&B logging needs wandb: pip install -e '.[analysis]' (or pip install wandb), "
                            "or turn it off with --set report.wandb=False.") from None
    return wandb


def _check_login(wandb) -> None:
    """Online mode with no credentials would ask for an API key on the terminal: fail instead."""
    try:
        ok = wandb.login(prompt=False, verify=False)
    except TypeError:  # a wandb without `prompt` (before 0.22): let init handle it
        return
    if not ok:
        raise ProbekitError("W&B mode is online but no credentials are set: run 'wandb login' or set "
                            "WANDB_API_KEY, or log offline (--set report.wandb_mode=offline, the default).")


def start_run(cfg: Config, stage: str, manifest: dict | None = None, group: str | None = None,
              name: str | None = None, extra_config: dict | None = None):
    """``wandb.init`` for one stage of `cfg`'s run; None when the mode is "disabled"."""
    mode = "online" if os.environ.get("WANDB_SWEEP_ID") else resolve_mode(cfg)  # a sweep agent needs its server
    if mode == "disabled":
        logger.info("W&B disabled (mode=disabled); nothing logged")
        return None
    wandb = _wandb()
    if mode == "online" and not os.environ.get("WANDB_SWEEP_ID") and wandb.run is None:
        _check_login(wandb)
    m = manifest or {}
    dataset = (m.get("dataset") or {}).get("path") or m.get("dataset_id") or cfg.data.path or cfg.run.name
    encoder = m.get("model_id") or cfg.encoder.model
    top = {"stage": stage, "encoder": encoder, "dataset": dataset, "pooling": m.get("pooling", cfg.encoder.pooling),
           "problem_type": m.get("problem_type")}
    tags = [stage, f"encoder:{encoder}"[:64], f"data:{Path(str(dataset)).name}"[:64], f"pooling:{top['pooling']}"]
    run = wandb.init(
        project=cfg.report.wandb_project, group=group or cfg.report.wandb_group or cfg.run.name,
        name=name or f"{cfg.run.name}-{stage}", job_type=stage, tags=tags, mode=mode,
        dir=str(cfg.run_dir),  # runs land under <run>/wandb/
        config={**cfg.to_dict(), **top, **(extra_config or {})},
        # create_new: never finish or reuse a run the caller may have open (e.g. in a notebook)
        reinit="create_new",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False),
    )
    return run


def safe(text) -> str:
    """A text for a W&B table cell: HTML-escaped, as in the report page."""
    return html.escape(str(text), quote=True)


def _metric_tables(wandb, metrics: dict, per_label: list[dict]) -> dict:
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
            "f1_fixed", "accuracy", "validation", "fit_seconds", "p_better"]
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


@contextlib.contextmanager
def wandb_run(cfg: Config, stage: str, manifest: dict | None = None, **kwargs):
    """:func:`start_run` as a ``with`` block: yields the run, None when disabled. An exception
    inside finishes the run as failed (exit code 1) and propagates; after a clean block the
    caller returns ``finish_run(run)``."""
    run = start_run(cfg, stage, manifest, **kwargs)
    try:
        yield run
    except BaseException:
        if run is not None:
            run.finish(exit_code=1)
        raise


def finish_run(run) -> str:
    """Finish a W&B run; return its folder (offline: what `wandb sync` takes)."""
    run_dir = str(getattr(run, "sync_dir", "") or run.dir)
    run.finish()
    logger.info("W&B run %s written to %s", run.name, run_dir)
    return run_dir


def log_report(cfg: Config, metrics: dict, images: dict[str, Path], per_label_rows: list[dict], report_html: Path,
               evidence: TestEvidence | None = None, manifest: dict | None = None) -> str | None:
    """The report stage's run: every metric, per-label AUC and F1 tables, the confusion data,
    ROC curves per label, the figures (UMAP included) and the HTML page as an artifact.

    Returns:
        The W&B run folder (offline: what ``wandb sync`` takes), or None when disabled.
    """
    with wandb_run(cfg, "report", manifest) as run:
        if run is None:
            return None
        wandb = _wandb()
        payload: dict = {**flatten_metrics(metrics), **_metric_tables(wandb, metrics, per_label_rows)}
        if evidence is not None:
            payload.update(_evidence_charts(wandb, evidence))
        for key, path in images.items():
            payload[f"images/{key}"] = wandb.Image(str(path), caption=key)
        run.log(payload)
        run.summary["best_model"] = metrics.get("comparisons", {}).get("best") or (evidence.model if evidence else None)
        artifact = wandb.Artifact(name=f"{cfg.run.name}-report", type="report",
                                  metadata={"run": cfg.run.name, "models": list(metrics["models"])})
        artifact.add_file(str(report_html), name=Path(report_html).name)
        run.log_artifact(artifact)
    return finish_run(run)


def log_classify(cfg: Config, metrics_path: str | Path) -> str | None:
    """The classify stage's run: every metric of metrics.json, the model and per-label tables,
    the best model's confusion data and ROC curves, and metrics.json as an artifact."""
    from probekit.core.cache import read_cache
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
        wandb = _wandb()
        best = results.choose_model(metrics)
        Y = cache.Y("test")
        P = np.asarray(results.load_scores(metrics_path.parent, best, "test", Y.shape))
        ev = TestEvidence(best, cache.label_names, cache.problem_type, Y, P,
                          predict_labels(P, cache.problem_type, results.model_threshold(metrics, best)))
        per_label = results.per_label_table(metrics, dict(zip(cache.label_names, Y.sum(axis=0).tolist())))
        run.log({**flatten_metrics(metrics), **_metric_tables(wandb, metrics, per_label),
                 **_evidence_charts(wandb, ev)})
        run.summary["best_model"] = best
        artifact = wandb.Artifact(name=f"{cfg.run.name}-metrics", type="metrics",
                                  metadata={"models": list(metrics["models"])})
        artifact.add_file(str(metrics_path), name=metrics_path.name)
        run.log_artifact(artifact)
    return finish_run(run)


def log_extract(cfg: Config, cache_dir: str | Path) -> str | None:
    """The extract stage's run: rows, truncated texts and seconds per split, the feature size,
    with the manifest (checksums left out) in the run's config."""
    from probekit.core.cache import read_cache

    if resolve_mode(cfg) == "disabled":
        return None
    cache = read_cache(cache_dir, verify=False)
    m = cache.manifest
    with wandb_run(cfg, "extract", m, extra_config={"manifest": {k: v for k, v in m.items() if k != "files"}}) as run:
        if run is None:
            return None
        payload = {f"rows/{s}": n for s, n in m.get("splits", {}).items()}
        payload |= {f"truncated/{s}": n for s, n in (m.get("n_truncated") or {}).items()}
        payload |= {f"seconds/{s}": t for s, t in (m.get("extract_seconds") or {}).items()}
        payload["hidden_size"] = m.get("hidden_size")
        run.log({k: v for k, v in payload.items() if isinstance(v, (int, float))})
    return finish_run(run)


def log_finetune(cfg: Config, finetuned: str | Path) -> str | None:
    """The fine-tuning stage's run, in the run's group: the training curves (train loss,
    validation loss, macro/micro F1 and AUC per epoch, against the epoch) and the kept
    model's validation and test metrics."""
    if resolve_mode(cfg) == "disabled":
        return None
    entry = json.loads((Path(finetuned) / "result.json").read_text(encoding="utf-8"))
    with wandb_run(cfg, "finetune", extra_config={"finetuned": entry["config"]}) as run:
        if run is None:
            return None
        run.define_metric("epoch")
        for prefix in ("train/*", "validation/*"):
            run.define_metric(prefix, step_metric="epoch")
        for h in entry["history"]:
            row = {"epoch": h["epoch"], "train/loss": h["train_loss"], "train/lr": h["lr"],
                   "train/step": h["step"], "validation/loss": h["validation_loss"]}
            row |= {f"validation/{k}": h[f"validation_{k}"] for k in ("macro_f1", "micro_f1", "macro_auc", "micro_auc")
                    if h[f"validation_{k}"] is not None}
            run.log(row)
        for split in ("validation", "test"):
            for k, v in entry[split]["tuned"].items():
                if isinstance(v, (int, float)) and v is not None:
                    run.summary[f"finetuned/{split}/{k}"] = v
        run.summary["best_epoch"] = entry["selection"]["chosen"]["epoch"]
        run.summary["seconds_per_1000_train_examples"] = entry["seconds_per_1000_train_examples"]
    return finish_run(run)
