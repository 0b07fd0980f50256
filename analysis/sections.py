"""The sections of the report page, each a function of :class:`ReportData` returning HTML.

Summary (best model, its interval, strongest and weakest labels, worst confusion), Models
(every model of metrics.json, sortable), Labels (per-label ROC-AUC and F1 of the compared
models, by support), Confusions, Map (interactive UMAP and density panels), Errors
(highest-loss test texts per model, likely label errors in train), Search, Run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probekit.stages.analysis.html import (
    cell,
    details,
    esc,
    heatmap,
    img,
    names,
    num,
    page,
    pre_json,
    table,
    value_cell,
)
from probekit.stages.analysis.results import describe_threshold

NAV = [("summary", "Summary"), ("models", "Models"), ("labels", "Labels"), ("confusions", "Confusions"),
       ("map", "Map"), ("errors", "Errors"), ("search", "Search"), ("run", "Run")]


@dataclass
class ReportData:
    """Everything the page shows, computed by :func:`analysis.report.build_report`."""

    run: str
    config: dict
    manifest: dict
    metrics: dict
    best: str
    compared: list
    labels: list
    multi: bool
    model_rows: list
    per_label: list
    threshold: object  # the best model's threshold(s)
    confusion: dict  # M, counts, support, counts_rows, top
    umap: dict  # payload, density (Path), n_points
    high_loss: dict  # model -> rows
    label_errors: dict | None  # rows, n_flagged, n_rows, probe
    search: dict | None
    verdict: str = ""
    text_chars: int = 240


def _text(t: str, n: int) -> dict:
    t = " ".join(str(t).split())
    return cell(esc(t if len(t) <= n else t[: n - 1] + "…"), cls="text", title=t if len(t) > n else "")


def _card(key: str, value_html: str, sub_html: str = "") -> str:
    return (f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{value_html}</div>'
            f'<div class="s">{sub_html}</div></div>')


def summary(d: ReportData) -> str:
    row = next(r for r in d.model_rows if r["model"] == d.best)
    ci = row.get("macro_f1_ci") or [None, None]
    ci_txt = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else ""
    others = [r for r in d.model_rows if not r["best"]]
    rivals = sorted(others, key=lambda r: (r["baseline"], -(r["validation"] or 0.0)))  # the runner-up on validation
    f1 = {r["label"]: r["f1"].get(d.best) for r in d.per_label if r["support"] > 0 and r["f1"].get(d.best) is not None}
    ranked = sorted(f1, key=lambda k: -f1[k])
    fmt = lambda ks: ", ".join(f"{esc(k)} {f1[k]:.2f}" for k in ks) or "n/a"  # noqa: E731
    cards = [
        _card("best model (validation)", esc(d.best), f"test macro-F1 <b>{num(row['macro_f1'])}</b>{esc(ci_txt)}, "
              f"macro AUC {num(row['macro_auc'])}"),
        _card("runner-up", esc(rivals[0]["model"]) if rivals else "n/a",
              (f"test macro-F1 {num(rivals[0]['macro_f1'])}"
               + (f"; the best beats it in {rivals[0]['p_better']:.0%} of paired test resamples"
                  if rivals[0]["p_better"] is not None else "")) if rivals else ""),
        _card("strongest labels (F1)", "", fmt(ranked[:4])),
        _card("weakest labels (F1)", "", fmt(ranked[::-1][:4])),
    ]
    top = d.confusion.get("top") or []
    if top:
        t = top[0]
        cards.append(_card("most often mistaken", f"{esc(t['true'])} → {esc(t['predicted'])}",
                           f"{t['count']} of the {t['support']} test rows of {esc(t['true'])} ({t['share']:.0%})"))
    if d.label_errors:
        le = d.label_errors
        cards.append(_card("likely label errors (train)", f"{le['n_flagged']:,}",
                           f"of {le['n_rows']:,} rows: a confident out-of-fold probe disagrees"))
    verdict = f'<p class="verdict">{esc(d.verdict)}</p>' if d.verdict else ""
    return f'<section id="summary"><div class="cards">{"".join(cards)}</div>{verdict}</section>'


def models(d: ReportData) -> str:
    head = ["model", "settings", "macro F1", "micro F1", "macro AUC", "micro AUC", "macro F1 @ 0.5",
            "subset acc." if d.multi else "accuracy", "val. macro F1", "fit s", "P(best > it)"]
    groups = [("", 2), ("test, thresholds tuned on validation", 4), ("test", 2), ("", 3)]
    rows = []
    for r in d.model_rows:
        badge = '<span class="badge">best</span>' if r["best"] else ""
        reads = esc(r["input"]) + (f" · {esc(r['feature_set'])}" if r["feature_set"] else "")
        rows.append(([
            cell(f'<span class="model">{esc(r["model"])}</span>{badge}<div class="ci">{reads}</div>'),
            cell(esc(r["params"].replace(", ", ", \u200b") or "-"), cls="params",
                 title=f"chosen among {r['n_candidates'] or 1} grid points on validation"),
            *[value_cell(r[k], ci=r[f"{k}_ci"], bar=True) for k in ("macro_f1", "micro_f1", "macro_auc", "micro_auc")],
            value_cell(r["f1_fixed"]), value_cell(r["accuracy"]), value_cell(r["validation"]),
            value_cell(r["fit_seconds"], 1), value_cell(r["p_better"], 3) if not r["best"] else cell("best", 2.0),
        ], "best" if r["best"] else "baseline" if r["baseline"] else ""))
    comp = d.metrics.get("comparisons", {})
    note = (f"{comp.get('ci_level', 0.95):.0%} bootstrap intervals over {comp.get('n_bootstrap')} test resamples"
            if comp.get("n_bootstrap") else "no bootstrap intervals")
    return (f'<section id="models"><h2>Models</h2><p class="muted">Test scores at the thresholds tuned on validation '
            f"(brackets: {esc(note)}); every model was selected on validation only. Click a header to sort.</p>"
            + table(head, rows, table_id="model-table", left=2, groups=groups) + "</section>")


def labels(d: ReportData) -> str:
    ms = d.compared
    thr = d.threshold if np.ndim(d.threshold) else None
    head = ["label", "test support", *[x for _ in ms for x in ("AUC", "F1")]]
    groups = [("", 2), *[(m, 2) for m in ms]]
    if thr is not None:
        head.append("threshold")
        groups.append((d.best, 1))
    index = {lab: k for k, lab in enumerate(d.labels)}
    rows = []
    for r in d.per_label:
        cells = [esc(r["label"]), cell(str(r["support"]), r["support"])]
        cells += [value_cell(r[k].get(m), bar=True) for m in ms for k in ("auc", "f1")]
        if thr is not None:
            cells.append(value_cell(float(thr[index[r["label"]]]), 2))
        rows.append((cells, ""))
    return ('<section id="labels"><h2>Per-label ROC-AUC and F1 (test)</h2><p class="muted">Labels by test support, '
            "largest first; F1 at each model's tuned thresholds; the best model first, then its closest rivals of "
            "each kind and the prior dummy. Click a header to sort.</p>"
            + table(head, rows, table_id="label-table", groups=groups) + "</section>")


def confusions(d: ReportData) -> str:
    c, parts = d.confusion, []
    rule = esc(describe_threshold(d.threshold)) if d.multi else "argmax"
    parts.append(f'<p class="muted">{esc(d.best)} on test, {rule}. ')
    if d.multi:
        parts[-1] += ("Heatmap cell (i, j): share of the test rows carrying label i whose predicted set holds j; "
                      "the diagonal is recall, the rest shows which labels are taken for which.</p>")
        head = ["label", "support", "TP", "FP", "FN", "TN", "precision", "recall", "F1"]
        rows = [([esc(r["label"]), cell(str(r["support"]), r["support"]),
                  *[cell(str(r[k]), r[k]) for k in ("tp", "fp", "fn", "tn")],
                  *[value_cell(r[k], bar=True) for k in ("precision", "recall", "f1")]], "")
                for r in c["counts_rows"]]
        parts.append("<h3>Per-label counts (each label against the rest)</h3>"
                     + table(head, rows, table_id="counts-table"))
        parts.append("<h3>True × predicted co-occurrence</h3>")
    else:
        parts[-1] += "Rows: true class, normalised to 1; columns: predicted class.</p><h3>Confusion matrix</h3>"
    parts.append(heatmap(c["M"], d.labels, d.labels, c["counts"]))
    if c.get("top"):
        rows = [([esc(t["true"]), esc(t["predicted"]), value_cell(t["share"], 2), cell(str(t["count"]), t["count"]),
                  cell(str(t["support"]), t["support"])], "") for t in c["top"]]
        what = ("rows where the true label was missed and the other one predicted instead (it was not given)"
                if d.multi else "rows of the true class predicted as the other one")
        parts.append(f'<h3>Most frequent mistakes</h3><p class="muted">Share: {what}, out of the true label\'s test '
                     "rows; labels with few rows are ranked lower.</p>"
                     + table(["true", "taken for", "share", "rows", "true label's rows"], rows, left=2))
    return f'<section id="confusions"><h2>Confusion report</h2>{"".join(parts)}</section>'


def umap_map(d: ReportData) -> str:
    u = d.umap
    p = u["payload"]
    counts = np.zeros(len(d.labels), dtype=int)
    for s in p["true"]:
        counts[s] += 1
    opts = ['<option value="all">all points</option>']
    if p["pred"] is not None:
        opts.append('<option value="wrong">misclassified (predicted ≠ true)</option>')
    if p["flagged"]:
        opts.append(f'<option value="flagged">likely label errors ({len(p["flagged"])})</option>')
    opts += [f'<option value="{k}">{esc(lab)} ({counts[k]})</option>' for k, lab in enumerate(d.labels)]
    legend = "".join(f'<button type="button" data-label="{k}"><i style="background:{esc(p["colors"][k])}"></i>'
                     f"{esc(lab)}</button>" for k, lab in enumerate(d.labels))
    colour = ('<label>colour by <select id="umap-color"><option value="true">true label</option>'
              '<option value="pred">predicted label</option></select></label>') if p["pred"] is not None else ""
    desc = (f"{len(p['x']):,} of {p['n_split']:,} {esc(p['split'])} texts (a seeded sample), UMAP of the cached "
            f"features (cosine). Predicted labels: {esc(p['predicted_by'])}. Hover a point for its text; pick a label "
            "to highlight it.")
    density = img(u["density"], "UMAP density per label") if u.get("density") else ""
    return (f'<section id="map"><h2>Map of the {esc(p["split"])} features</h2><p class="muted">{desc}</p>'
            f'<div class="controls">{colour}<label>highlight <select id="umap-filter">{"".join(opts)}</select></label>'
            f'<span id="umap-note" class="muted"></span></div><div id="umap-legend">{legend}</div>'
            f'<div class="flex"><div id="umap"></div><div style="flex:1 1 420px"><h3>Density of each label '
            f"(same map)</h3>{density}</div></div></section>")


def errors(d: ReportData) -> str:
    n = d.text_chars
    sel = "".join(f'<option value="{esc(m)}"{" selected" if m == d.best else ""}>{esc(m)}</option>'
                  for m in d.high_loss)
    panes = []
    for m, rows in d.high_loss.items():
        body = [([cell(str(k + 1), k + 1), value_cell(r["loss"], 2), _text(r["text"], n), names(r["true"]),
                  names(r["predicted"]), esc(", ".join(f"{lab} {p:.2f}" for lab, p in r["top"]))], "")
                for k, r in enumerate(rows)]
        panes.append(f'<div class="pane" data-group="loss" data-key="{esc(m)}">'
                     + table(["#", "loss", "text", "true", "predicted", "top probabilities"], body, left={2, 3, 4, 5})
                     + "</div>")
    out = (f'<section id="errors"><h2>Error analysis</h2><h3>Test texts with the highest loss</h3>'
           f'<p class="muted">Cross-entropy of each text under the model (multi-label: summed over labels). '
           f'Model: <select data-panes="loss" id="loss-model">{sel}</select></p>{"".join(panes)}')
    le = d.label_errors
    if le:
        body = [([_text(r["text"], n), names(r["given"]), names(r["doubtful"]), names(r["missing"]),
                  value_cell(r["margin"], 2), esc(", ".join(f"{lab} {p:.2f}" for lab, p in r["top"]))], "")
                for r in le["rows"]]
        out += (f"<h3>Likely label errors in train</h3><p class=\"muted\">{le['n_flagged']:,} of {le['n_rows']:,} "
                "train "
                f"rows where {esc(le['probe'])} confidently disagrees with the given labels: "
                + ("it gives another class p ≥ 0.9" if not d.multi else "it gives a label that was not given p ≥ 0.9, "
                   "or a given label p ≤ 0.1 while predicting another (p ≥ 0.5)")
                + "; the most confident first. Candidates for relabelling, not proof.</p>"
                + table(["text", "given", "doubtful given", "missing (probe says yes)", "confidence", "probe's top"],
                        body, table_id="label-errors", left={0, 1, 2, 3, 5}))
    return out + "</section>"


def search(d: ReportData) -> str:
    parts = []
    s = d.search
    if s:
        best = s["best"]
        keys = list(s["grid"])
        head = ["trial", *keys, "validation macro F1", "validation macro AUC", "test macro F1", "fit s"]
        rows = [([cell(str(t["trial"]), t["trial"]), *[esc(t["params"][k]) for k in keys],
                  value_cell(t["validation_macro_f1"], bar=True), value_cell(t["validation_macro_auc"]),
                  value_cell(t["test_macro_f1"]), value_cell(t["fit_seconds"], 1)],
                 "best" if t["trial"] == best["trial"] else "") for t in s["trials"]]
        grid = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in s["grid"].items())
        parts.append(f"<h3>probekit search: {esc(s['model'])}, {len(s['trials'])} trials</h3>"
                     f"<p>Best on validation: <b>{esc(', '.join(f'{k}={v}' for k, v in best['params'].items()))}</b> "
                     f"(validation macro F1 {num(best['validation_macro_f1'])}, test {num(best['test_macro_f1'])}). "
                     f"Grid: {esc(grid)}.</p>"
                     + table(head, rows, table_id="search-table", left=set(range(1, len(keys) + 1))))
    else:
        parts.append('<p class="muted">No search yet: <code>make search</code> runs a grid over C, class weight, '
                     "pooling and threshold strategy on the cached features and shows it here.</p>")
    grids = []
    for m, entry in d.metrics["models"].items():
        g = entry.get("selection", {}).get("grid") or []
        if len(g) > 1:
            keys = [k for k in g[0] if k not in ("validation_macro_f1", "validation_macro_auc", "fit_seconds")]
            chosen = entry["selection"].get("chosen", {})
            rows = [([*[esc(p.get(k)) for k in keys], value_cell(p.get("validation_macro_f1"), bar=True),
                      value_cell(p.get("validation_macro_auc")), value_cell(p.get("fit_seconds"), 1)],
                     "best" if all(p.get(k) == chosen.get(k) for k in chosen) else "") for p in g]
            grids.append(details(f"{m}: {len(g)} grid points", table(
                [*keys, "validation macro F1", "validation macro AUC", "fit s"], rows, left=len(keys))))
    if grids:
        parts.append("<h3>Model selection in classify (validation)</h3>" + "".join(grids))
    return f'<section id="search"><h2>Search</h2>{"".join(parts)}</section>'


def run_info(d: ReportData) -> str:
    m = d.manifest
    facts = {
        "encoder": f"{m.get('model_id', 'n/a')} @ {m.get('model_revision', 'n/a')}",
        "pooling / layer / max_length": " / ".join(str(m.get(k, "n/a")) for k in ("pooling", "layer", "max_length")),
        "hidden size / dtype": f"{m.get('hidden_size', 'n/a')} / {m.get('dtype', 'n/a')}",
        "dataset": " ".join(str(x) for x in (m.get("dataset_id"), (m.get("dataset") or {}).get("path")) if x) or "n/a",
        "splits": ", ".join(f"{s}: {k:,}" for s, k in m.get("splits", {}).items()),
        "problem type": m.get("problem_type"), "labels": ", ".join(d.labels),
        "cache key / created": f"{m.get('cache_key', 'n/a')} / {m.get('created_at', 'n/a')}",
        "metrics.json": f"schema {d.metrics.get('schema_version', 1)}, {d.metrics.get('created_at', 'n/a')}",
    }
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts.items())
    manifest = {k: v for k, v in m.items() if k != "config"}
    return (f'<section id="run"><h2>Run</h2><dl>{dl}</dl>'
            + details("configuration of this report (config.json)", pre_json(d.config))
            + details("feature manifest (features/manifest.json)", pre_json(manifest))
            + "</section>")


def header(d: ReportData) -> str:
    m = d.manifest
    split = ", ".join(f"{s} {k:,}" for s, k in m.get("splits", {}).items())
    return (f"<h1>probekit report: {esc(d.run)}</h1><div class=\"muted\">{esc(m.get('model_id', 'n/a'))} · "
            f"{esc(m.get('pooling', 'n/a'))} pooling · {esc(d.metrics.get('problem_type', ''))}, "
            f"{len(d.labels)} labels · {esc(split)}</div>")


def render(d: ReportData, script: str, data_json: str) -> str:
    body = "".join(f(d) for f in (summary, models, labels, confusions, umap_map, errors, search, run_info))
    return page(f"probekit report: {d.run}", header(d), NAV, body, script, data_json)
