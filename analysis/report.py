"""Build the report of a run: one self-contained HTML page, its figures, report.json, W&B.

    probekit report --config configs/demo.toml        (or: make report)

Reads ``<run>/features/`` (the feature cache), ``<run>/metrics.json`` and
``<run>/scores/<model>.<split>.npy`` from ``classify`` (and ``<run>/search/search.json``
when ``probekit search`` ran), and writes ``<run>/report/``:

    index.html     the page: models, per-label scores, what fine-tuning adds, confusions,
                   interactive UMAP, errors, search, configuration; scripts, data and images
                   inline, opens from disk
    *.png          the figures (also logged to W&B)
    report.json    what was made; config.json: the resolved config
    umap.<split>.npz, oof.train.npz   the map and the out-of-fold probe, reused by reruns

Torch-free. W&B logging (offline by default) is in :mod:`analysis.wandb_log`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from matplotlib.colors import to_hex
from sklearn.metrics import confusion_matrix

from probekit.core.cache_reader import read_cache
from probekit.core.config import Config
from probekit.core.errors import ProbekitError
from probekit.core.metrics import predict_labels
from probekit.core.runfolder import METRICS_NAME, features_dir, write_json_atomic
from probekit.stages.analysis import curves, errors, finetune_section, interactive, plots, results, sections
from probekit.stages.analysis.results import load_metrics, load_scores  # noqa: F401  (re-exported: the report's readers)

logger = logging.getLogger(__name__)

REPORT_DIRNAME = "report"
SCORED_SPLITS = ("validation", "test")  # classify scores these; train is what the models saw
HTML_NAME, REPORT_JSON_NAME, CONFIG_NAME = "index.html", "report.json", "config.json"
OOF_NAME = "oof.train.npz"  # the out-of-fold probe's train probabilities, reused by reruns
SEARCH_JSON = Path("search") / "search.json"  # written by analysis.search, relative to the run folder
choose_model = results.choose_model  # kept importable from here


def _confusion(Y: np.ndarray, Yhat: np.ndarray, labels: list[str], multi: bool) -> dict:
    """Counts and row-normalised shares of true x predicted, per-label counts, top confusions."""
    support = Y.sum(axis=0)
    if multi:
        counts = Y.T.astype(np.int64) @ Yhat.astype(np.int64)
        M = plots.cooccurrence_matrix(Y, Yhat)
    else:
        counts = confusion_matrix(Y.argmax(1), Yhat.argmax(1), labels=list(range(len(labels))))
        with np.errstate(invalid="ignore", divide="ignore"):
            M = np.where(support[:, None] > 0, counts / support[:, None], np.nan)
    rows = plots.label_counts(Y, Yhat, labels)
    for r in rows:
        r["f1"] = 2 * r["tp"] / (2 * r["tp"] + r["fp"] + r["fn"]) if r["tp"] + r["fp"] + r["fn"] else None
    rows.sort(key=lambda r: -r["support"])
    # "i taken for j": i was given but missed, j predicted but not given (single-label: the off-diagonal).
    missed, extra = ((Y == 1) & (Yhat == 0)).astype(np.int64), ((Yhat == 1) & (Y == 0)).astype(np.int64)
    mistaken = missed.T @ extra if multi else counts
    return {"M": M, "counts": counts, "support": support, "counts_rows": rows,
            "top": results.top_confusions(mistaken, labels, support)}


def _features(cache, split: str, feature_set: str | None) -> np.ndarray:
    if feature_set in (None, cache.manifest.get("pooling")):
        return cache.X(split)
    return cache.X(split, feature_set)  # a cache holding several poolings


def _label_errors(cfg: Config, cache, metrics: dict, n_rows: int, out: Path) -> tuple:
    """Out-of-fold probe on train: the likely-label-error table, the probe's scores, its thresholds."""
    folds = cfg.report.label_error_folds
    if folds <= 0 or "train" not in cache.splits or cache.manifest["splits"]["train"] < 2 * folds:
        return None, None, None
    params, feature_set, thr = errors.probe_settings(metrics)
    multi = cache.problem_type == "multi_label"
    # A rerun of the report reuses the probe's scores when nothing it depends on changed.
    key = json.dumps({"cache": cache.manifest.get("cache_key"), "splits": cache.manifest["splits"], "params": params,
                      "feature_set": feature_set, "folds": folds, "seed": cfg.run.seed}, sort_keys=True, default=str)
    saved = out / OOF_NAME
    P = None
    if saved.is_file():
        with np.load(saved, allow_pickle=False) as z:
            P = z["P"] if str(z["key"]) == key else None
    if P is None:
        P = errors.out_of_fold_scores(_features(cache, "train", feature_set), np.asarray(cache.y("train")),
                                      len(cache.label_names), multi, params, cfg.classify, seed=cfg.run.seed,
                                      n_folds=folds)
        np.savez_compressed(saved, P=P, key=np.array(key))
    rows, flagged = errors.label_errors(cache.Y("train"), P, cache.texts("train"), cache.ids("train"),
                                        cache.label_names, cache.problem_type, n=n_rows)
    probe = (f"a logistic regression ({', '.join(f'{k}={v}' for k, v in params.items())}, {feature_set} features) "
             f"fitted {folds} times, each time without the rows it scores,")
    info = {"rows": rows, "n_flagged": int(flagged.sum()), "n_rows": int(len(flagged)), "probe": probe,
            "flagged": flagged}
    return info, P, thr


def _umap(cfg: Config, cache, out: Path, best: str, best_thr, oof, oof_thr, flagged, run_dir: Path,
          best_positive: int | None = None) -> dict:
    split, labels, r = cfg.report.umap_split, cache.label_names, cfg.report
    # UMAP depends on the features only: a rerun after a new classify reuses the saved map.
    key = json.dumps({"cache": cache.manifest.get("cache_key"), "rows": cache.manifest["splits"][split],
                      "seed": cfg.run.seed, "max_points": r.umap_max_points, "n_neighbors": r.umap_n_neighbors,
                      "min_dist": r.umap_min_dist}, sort_keys=True)
    saved = out / f"umap.{split}.npz"
    emb = None
    if saved.is_file():
        with np.load(saved, allow_pickle=False) as z:
            if "key" in z and str(z["key"]) == key:
                emb, rows = z["embedding"], z["rows"]
    if emb is None:
        emb, rows = plots.umap_embedding(cache.X(split), seed=cfg.run.seed, max_points=r.umap_max_points,
                                         n_neighbors=r.umap_n_neighbors, min_dist=r.umap_min_dist)
        np.savez(saved, rows=rows, embedding=emb, key=np.array(key))  # reusable without re-running UMAP
    Y = cache.Y(split)[rows]
    if split == "train":
        Yhat = None if oof is None else predict_labels(oof[rows], cache.problem_type, oof_thr)
        by = "out-of-fold logistic regression (never trained on the point)" if oof is not None else "none"
    else:
        P = load_scores(run_dir, best, split, (cache.manifest["splits"][split], len(labels)))
        Yhat, by = predict_labels(np.asarray(P)[rows], cache.problem_type, best_thr, best_positive), best
    texts = cache.texts(split)
    colors = [to_hex(c) for c in plots.label_colors(len(labels))]
    payload = interactive.umap_payload(emb, rows, Y, Yhat, [texts[i] for i in rows], labels, colors, split,
                                       cache.manifest["splits"][split], by,
                                       None if flagged is None or split != "train" else flagged[rows],
                                       n_chars=cfg.report.text_chars)
    scatter = plots.plot_umap_scatter(emb, Y, labels, out / "umap_scatter.png",
                                      multi_label=cache.problem_type == "multi_label",
                                      pooling=cache.manifest.get("pooling") or "cls")
    density = plots.plot_umap_density(emb, Y, labels, out / "umap_density.png")
    return {"payload": payload, "density": density, "scatter": scatter, "n_points": int(len(rows)), "split": split}


def build_report(cfg: Config) -> Path:
    """Compute everything the page shows, write ``<run>/report/`` and log to W&B when
    ``cfg.report.wandb``.

    Returns:
        The path of ``index.html``.

    Raises:
        FileNotFoundError: the feature cache, metrics.json or a scores file is missing.
        ProbekitError: metrics.json or the scores do not match the feature cache.
    """
    start = time.perf_counter()
    run_dir = cfg.run_dir
    cache = read_cache(features_dir(run_dir))
    metrics = load_metrics(run_dir)
    labels, multi, ptype = cache.label_names, cache.problem_type == "multi_label", cache.problem_type
    if list(metrics.get("labels", [])) != labels:
        raise ProbekitError(f"{run_dir / METRICS_NAME}: labels {metrics.get('labels')} differ from the feature "
                            f"cache's {labels}; run 'make classify' again.")
    out = run_dir / REPORT_DIRNAME
    out.mkdir(parents=True, exist_ok=True)
    Y = cache.Y("test")
    scores = {}
    for name in metrics["models"]:  # check every scores file up front: fail before drawing anything
        for split in SCORED_SPLITS:
            s = load_scores(run_dir, name, split, (cache.manifest["splits"][split], len(labels)))
            if split == "test":
                scores[name] = np.asarray(s)
    best = results.choose_model(metrics)
    compared = results.compare_models(metrics, best, tuple(cfg.report.compare_models))
    support = dict(zip(labels, Y.sum(axis=0).tolist()))
    per_label = results.per_label_table(metrics, support)
    thr = {m: results.model_threshold(metrics, m) for m in metrics["models"]}
    pos = {m: results.model_positive(metrics, m) for m in metrics["models"]}
    preds = {m: predict_labels(scores[m], ptype, thr[m], pos[m]) for m in metrics["models"]}
    positive = results.positive_label(metrics)
    n_err, n_chars = cfg.report.n_errors, cfg.report.text_chars
    texts, ids = cache.texts("test"), cache.ids("test")
    high_loss = {m: errors.highest_loss(Y, scores[m], preds[m], texts, ids, labels, ptype, n_err)
                 for m in [best, *[m for m in metrics["models"] if m != best]]}
    label_errs, oof, oof_thr = _label_errors(cfg, cache, metrics, n_err, out)
    umap = _umap(cfg, cache, out, best, thr[best], oof, oof_thr, None if label_errs is None else label_errs["flagged"],
                 run_dir, pos[best])
    images = {"umap_scatter": umap["scatter"], "umap_density": umap["density"]}
    conf = _confusion(Y, preds[best], labels, multi)
    title = f"{best}, test: " + ("true x predicted labels" if multi else "confusion matrix") + " (rows normalised)"
    if multi:
        images["confusion"] = plots.plot_cooccurrence(conf["M"], labels, out / "confusion.png", title=title)
    else:
        images["confusion"] = plots.plot_confusion(Y.argmax(1), preds[best].argmax(1), labels, out / "confusion.png",
                                                   title=title)
    if positive is None:
        images["per_label_auc"] = plots.plot_per_label_auc(
            {m: metrics["models"][m].get("test", {}).get("per_label_auc", {}) for m in compared},
            [r["label"] for r in per_label], support, out / "per_label_auc.png", title="Per-label ROC-AUC, test")
    else:  # binary data: both "labels" have one AUC; the positive class's ROC and PR curves say more
        k = labels.index(positive)
        images["curves"] = curves.plot_roc_pr(Y[:, k], {m: scores[m][:, k] for m in compared},
                                              {m: thr[m] for m in compared if pos[m] is not None}, positive,
                                              out / "curves.png")
    ft = finetune_section.compute(metrics, Y, scores, ptype, cache.manifest, out)  # None: no fine-tuned model
    if ft and ft.get("curves"):
        images["finetune_curves"] = ft["curves"]
    search_path = run_dir / SEARCH_JSON
    search = load_json(search_path) if search_path.is_file() else None

    data = sections.ReportData(
        run=cfg.run.name, config=cfg.to_dict(), manifest=cache.manifest, metrics=metrics, best=best, compared=compared,
        labels=labels, multi=multi, model_rows=results.model_rows(metrics, best), per_label=per_label,
        threshold=thr[best], confusion=conf, umap=umap, high_loss=high_loss, label_errors=label_errs, search=search,
        verdict=results.verdict(metrics), text_chars=n_chars, positive=positive,
        rule=results.decision_rule(metrics, best), curves=images.get("curves"), finetune=ft)
    html_path = out / HTML_NAME
    html_path.write_text(sections.render(data, interactive.SCRIPT, interactive.script_json(umap["payload"])),
                         encoding="utf-8")
    write_json_atomic(out / CONFIG_NAME, cfg.to_dict())
    report = {
        "run": cfg.run.name, "seed": cfg.run.seed, "problem_type": ptype, "chosen_model": best, "compared": compared,
        "models": list(metrics["models"]), "html": HTML_NAME, "html_bytes": html_path.stat().st_size,
        "config": CONFIG_NAME, "images": {k: p.name for k, p in images.items()},
        "umap": {"split": umap["split"], "n_rows": umap["n_points"], "file": f"umap.{umap['split']}.npz"},
        "label_counts": conf["counts_rows"], "top_confusions": conf["top"],
        "label_errors": None if label_errs is None else {k: label_errs[k] for k in ("n_flagged", "n_rows", "probe")},
        "search": str(SEARCH_JSON) if search else None, "wandb_run_dir": None, "positive_label": positive,
        "finetune": finetune_section.to_json(ft),
    }
    write_json_atomic(out / REPORT_JSON_NAME, report)
    if cfg.report.wandb:
        from probekit.stages.analysis.wandb_evidence import TestEvidence, log_report

        evidence = TestEvidence(best, labels, ptype, Y, scores[best], preds[best], high_loss[best],
                                None if label_errs is None else label_errs["rows"], pos[best])
        report["wandb_run_dir"] = log_report(cfg, metrics, images, per_label, html_path, evidence, cache.manifest,
                                             finetune=ft)
        write_json_atomic(out / REPORT_JSON_NAME, report)
    logger.info("report: %d models, best %s, UMAP on %d %s rows, %.0f kB -> %s (%.1f s)", len(metrics["models"]),
                best, umap["n_points"], umap["split"], html_path.stat().st_size / 1024, html_path,
                time.perf_counter() - start)
    return html_path


def load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ProbekitError(f"{path}: not valid JSON ({e}); run 'make search' again or delete it.") from None
