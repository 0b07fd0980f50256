"""Build the analysis report of a run: figures, one self-contained HTML page, report.json, W&B.

Reads ``<run>/features/`` (the feature cache), ``<run>/metrics.json`` and
``<run>/scores/<model>.<split>.npy`` written by ``classify``, and writes ``<run>/report/``:
the PNGs, ``index.html`` (images inlined as base64, no network needed to open it),
``report.json`` (what was made) and ``config.json`` (the resolved config). Torch-free.

    from extract.config import load_config
    build_report(load_config("configs/demo.toml"))   # what `make report` runs
"""

from __future__ import annotations

import base64
import html
import json
import logging
import time
from pathlib import Path

import numpy as np

from analysis import plots
from classify.metrics import predict_labels
from extract.cache import METRICS_NAME, features_dir, read_cache, scores_path, write_json_atomic
from extract.config import Config, ProbekitError

logger = logging.getLogger(__name__)

REPORT_DIRNAME = "report"
SCORED_SPLITS = ("validation", "test")  # classify scores these; train is what the models saw
HTML_NAME, REPORT_JSON_NAME, CONFIG_NAME = "index.html", "report.json", "config.json"
N_ERRORS = 8  # most confident mistakes shown in the page

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222}h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ddd;
padding:.3em .6em;text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}tr.chosen{background:#eef6ee}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}.muted{color:#777;font-size:.9em}dl{display:grid;
grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}dd{margin:0}"""


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"{path} not found: run 'make classify' first (with the same CONFIG and ARTIFACTS)."
    )


def load_metrics(run_dir: str | Path) -> dict:
    """Read ``<run>/metrics.json``; FileNotFoundError names the file and the Make target."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        raise _missing(path)
    metrics = json.loads(path.read_text(encoding="utf-8"))
    if not metrics.get("models"):
        raise ProbekitError(f"{path}: 'models' is empty or missing; run 'make classify' again.")
    return metrics


def load_scores(run_dir: str | Path, model: str, split: str, shape: tuple[int, int]) -> np.ndarray:
    """Read ``<run>/scores/<model>.<split>.npy`` and check it is (n_rows, n_labels)."""
    path = scores_path(run_dir, model, split)
    if not path.is_file():
        raise _missing(path)
    scores = np.load(path, mmap_mode="r", allow_pickle=False)
    if scores.shape != tuple(shape):
        raise ProbekitError(
            f"{path}: shape {scores.shape}, the feature cache says {tuple(shape)} (rows, labels); "
            "the scores are stale. Run 'make classify' again."
        )
    return scores


def model_threshold(metrics: dict, model: str) -> float:
    """The multi-label decision threshold classify used for `model` (default 0.5)."""
    return float(metrics["models"][model].get("threshold", 0.5))


def choose_model(metrics: dict) -> str:
    """The non-dummy model with the highest validation macro AUC, else the first with one, else the first."""
    models = metrics["models"]

    def best(names: list[str]) -> str | None:
        scored = [(models[n].get("validation", {}).get("macro_auc"), n) for n in names]
        scored = [(auc, n) for auc, n in scored if auc is not None]
        return max(scored, key=lambda t: t[0])[1] if scored else None

    return best([n for n in models if n != "dummy"]) or best(list(models)) or next(iter(models))


def per_label_table(metrics: dict, support: dict[str, int]) -> list[dict]:
    """Rows {label, support, auc: {model: x}, f1: {model: x}}, sorted by test support (largest first)."""
    rows = []
    test = {m: v.get("test", {}) for m, v in metrics["models"].items()}
    for label in metrics["labels"]:
        rows.append({
            "label": label, "support": int(support.get(label, 0)),
            "auc": {m: t.get("per_label_auc", {}).get(label) for m, t in test.items()},
            "f1": {m: t.get("per_label_f1", {}).get(label) for m, t in test.items()},
        })
    return sorted(rows, key=lambda r: -r["support"])


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else _e(value)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(head: list[str], rows: list[list[str]], row_class: str = "", left: int = 1) -> str:
    """HTML table; cells must already be escaped. The first `left` columns align left."""
    th = "".join(f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>" for i, h in enumerate(head))
    body = []
    for cells in rows:
        cls, cells = (cells[0], cells[1:]) if row_class == "from-first" else (row_class, cells)
        td = "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(cells))
        body.append(f'<tr class="{cls}">{td}</tr>' if cls else f"<tr>{td}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _confident_errors(scores, Y_true, Y_pred, texts, ids, labels, n: int = N_ERRORS) -> list[list[str]]:
    """The test rows the chosen model got wrong with the most confidence."""
    wrong = np.flatnonzero((Y_true != Y_pred).any(axis=1))
    confidence = np.abs(scores - Y_true).max(axis=1)[wrong]
    names = lambda row: ", ".join(labels[j] for j in np.flatnonzero(row)) or "(none)"  # noqa: E731
    out = []
    for i in wrong[np.argsort(-confidence, kind="stable")][:n]:
        text = texts[i] if len(texts[i]) <= 300 else texts[i][:300] + "…"
        out.append([_e(ids[i]), _e(text), _e(names(Y_true[i])), _e(names(Y_pred[i]))])
    return out


def _render_html(cfg: Config, cache, metrics: dict, chosen: str, images: dict, per_label: list[dict],
                 counts: list[dict], errors: list[list[str]]) -> str:
    m, multi = cache.manifest, cache.problem_type == "multi_label"
    models = list(metrics["models"])
    acc_key, acc_name = ("subset_accuracy", "subset accuracy") if multi else ("accuracy", "accuracy")
    info = {
        "encoder": f"{m.get('model_id', 'n/a')} @ {m.get('model_revision', 'n/a')}",
        "pooling / max_length": f"{m.get('pooling', 'n/a')} / {m.get('max_length', 'n/a')}",
        "hidden size": m.get("hidden_size", "n/a"),
        "dataset": " ".join(str(x) for x in (m.get("dataset_id"), m.get("dataset_config")) if x) or "n/a",
        "problem type": cache.problem_type,
        "split sizes": ", ".join(f"{s}: {n}" for s, n in m.get("splits", {}).items()),
        "labels": ", ".join(cache.label_names),
        "seed": cfg.run.seed,
    }
    meta = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in info.items())
    metric_rows = []
    for name in models:
        r, test = metrics["models"][name], metrics["models"][name].get("test", {})
        mark = " (chosen)" if name == chosen else ""
        metric_rows.append(["model-row chosen" if mark else "model-row", _e(name) + mark] + [
            _num(test.get(k)) for k in ("macro_auc", "micro_auc", "macro_f1", "micro_f1", acc_key)
        ] + [_num(r.get("fit_seconds"), 2), _num(r.get("validation", {}).get("macro_auc"))])
    metrics_html = _table(
        ["model", "test macro AUC", "test micro AUC", "test macro F1", "test micro F1", f"test {acc_name}",
         "fit seconds", "validation macro AUC"], metric_rows, row_class="from-first")
    label_html = _table(
        ["label", "test support"] + [f"AUC {_e(x)}" for x in models] + [f"F1 {_e(x)}" for x in models],
        [[_e(r["label"]), str(r["support"])] + [_num(r["auc"][x]) for x in models] + [_num(r["f1"][x]) for x in models]
         for r in per_label])
    counts_html = _table(
        ["label", "TP", "FP", "FN", "TN", "precision", "recall", "support"],
        [[_e(c["label"])] + [str(c[k]) for k in ("tp", "fp", "fn", "tn")]
         + [_num(c["precision"]), _num(c["recall"]), str(c["support"])] for c in counts])
    errors_html = _table(["id", "text", "true", "predicted"], errors, left=4) if errors else "<p>No errors.</p>"
    confusion_note = ("Cell (i, j): share of test rows with true label i whose predicted set contains j"
                      f" (threshold {model_threshold(metrics, chosen):g})." if multi
                      else "Rows: true class, normalised to 1; columns: predicted class (argmax).")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>probekit report: {_e(cfg.run.name)}</title>
<style>{_CSS}</style></head><body>
<h1>probekit report: {_e(cfg.run.name)}</h1>
<p class="muted">Probes trained on frozen [CLS] features. Chosen model: <b>{_e(chosen)}</b>
(highest validation macro AUC; dummy only if nothing else has one).</p>
<h2>Run</h2><dl>{meta}</dl>
<h2>Metrics</h2>{metrics_html}
<h2>Per-label results (test)</h2>{label_html}{_img(images["per_label_auc"], "per-label ROC-AUC")}
<h2>Confusion report: {_e(chosen)}, test</h2><p class="muted">{_e(confusion_note)}</p>
{_img(images["confusion"], "confusion report")}
<h3>Per-label counts (one label against the rest)</h3>{counts_html}
<h3>Most confident errors (up to {N_ERRORS})</h3>{errors_html}
<h2>UMAP of the {_e(cfg.report.umap_split)} features</h2>
{_img(images["umap_scatter"], "UMAP scatter")}{_img(images["umap_density"], "UMAP density per label")}
</body></html>
"""


def build_report(cfg: Config) -> Path:
    """Draw the figures, write ``<run>/report/`` and log to W&B when ``cfg.report.wandb``.

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
    labels, multi = cache.label_names, cache.problem_type == "multi_label"
    if list(metrics.get("labels", [])) != labels:
        raise ProbekitError(f"{run_dir / METRICS_NAME}: labels {metrics.get('labels')} differ from the feature "
                           f"cache's {labels}; run 'make classify' again.")
    out = run_dir / REPORT_DIRNAME
    out.mkdir(parents=True, exist_ok=True)
    for name in metrics["models"]:  # check every scores file up front: fail before drawing anything
        for split in SCORED_SPLITS:
            load_scores(run_dir, name, split, (cache.manifest["splits"][split], len(labels)))

    chosen = choose_model(metrics)
    Y_test = cache.Y("test")
    support = dict(zip(labels, Y_test.sum(axis=0).tolist()))
    per_label = per_label_table(metrics, support)
    scores = load_scores(run_dir, chosen, "test", Y_test.shape)
    Y_pred = predict_labels(scores, cache.problem_type, model_threshold(metrics, chosen))
    images = {}
    if multi:
        images["confusion"] = plots.plot_cooccurrence(
            plots.cooccurrence_matrix(Y_test, Y_pred), labels, out / "confusion.png",
            title=f"{chosen}, test: true x predicted labels (rows normalised)")
    else:
        images["confusion"] = plots.plot_confusion(
            Y_test.argmax(axis=1), Y_pred.argmax(axis=1), labels, out / "confusion.png",
            title=f"{chosen}, test: confusion matrix (rows normalised)")
    counts = plots.label_counts(Y_test, Y_pred, labels)
    images["per_label_auc"] = plots.plot_per_label_auc(
        {name: v.get("test", {}).get("per_label_auc", {}) for name, v in metrics["models"].items()},
        [r["label"] for r in per_label], support, out / "per_label_auc.png", title="Per-label ROC-AUC, test")

    split = cfg.report.umap_split
    emb, rows = plots.umap_embedding(cache.X(split), seed=cfg.run.seed, max_points=cfg.report.umap_max_points,
                                     n_neighbors=cfg.report.umap_n_neighbors, min_dist=cfg.report.umap_min_dist)
    Y_umap = cache.Y(split)[rows]
    images["umap_scatter"] = plots.plot_umap_scatter(emb, Y_umap, labels, out / "umap_scatter.png", multi_label=multi)
    images["umap_density"] = plots.plot_umap_density(emb, Y_umap, labels, out / "umap_density.png")

    errors = _confident_errors(np.asarray(scores), Y_test, Y_pred, cache.texts("test"), cache.ids("test"), labels)
    html_path = out / HTML_NAME
    html_path.write_text(_render_html(cfg, cache, metrics, chosen, images, per_label, counts, errors),
                         encoding="utf-8")
    write_json_atomic(out / CONFIG_NAME, cfg.to_dict())
    np.savez(out / f"umap.{split}.npz", rows=rows, embedding=emb)  # reusable without re-running UMAP
    report = {
        "run": cfg.run.name, "seed": cfg.run.seed, "problem_type": cache.problem_type, "chosen_model": chosen,
        "models": list(metrics["models"]), "html": HTML_NAME, "config": CONFIG_NAME,
        "images": {k: p.name for k, p in images.items()},
        "umap": {"split": split, "n_rows": int(len(rows)), "file": f"umap.{split}.npz"},
        "label_counts": counts, "wandb_run_dir": None,
    }
    write_json_atomic(out / REPORT_JSON_NAME, report)
    if cfg.report.wandb:
        from analysis.wandb_log import log_report

        report["wandb_run_dir"] = log_report(cfg, metrics, images, per_label, html_path)
        write_json_atomic(out / REPORT_JSON_NAME, report)
    logger.info("report: %d models, chosen %s, %d images, UMAP on %d %s rows -> %s (%.1f s)",
                len(metrics["models"]), chosen, len(images), len(rows), split, html_path,
                time.perf_counter() - start)
    return html_path
