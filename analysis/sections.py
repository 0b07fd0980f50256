"""The sections of the report page, each a function of :class:`ReportData` returning HTML.

Summary and the header (analysis.summary), Models (every model of metrics.json, sortable;
columns by problem type: binary data leads with the positive class, single-label data is
scored at the argmax, multi-label at thresholds tuned on validation), Labels (per-label
ROC-AUC and F1 of the compared models, by support; binary data: ROC and precision-recall
curves instead), What fine-tuning adds (analysis.finetune_section, only when metrics.json
holds a fine-tuned model), Confusions, Map (interactive UMAP and density panels), Errors
(highest-loss test texts per model, likely label errors in train), Search, Run.
"""

from __future__ import annotations

import numpy as np

from probekit.stages.analysis import finetune_section
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
from probekit.stages.analysis.summary import ReportData, header, models, summary

NAV = [("summary", "Summary"), ("models", "Models"), ("labels", "Labels"), ("confusions", "Confusions"),
       ("map", "Map"), ("errors", "Errors"), ("search", "Search"), ("run", "Run")]


def _text(t: str, n: int) -> dict:
    t = " ".join(str(t).split())
    return cell(esc(t if len(t) <= n else t[: n - 1] + "…"), cls="text", title=t if len(t) > n else "")


def labels(d: ReportData) -> str:
    if d.positive is not None:  # two "labels" are the class and its complement: curves say more
        curves = img(d.curves, "ROC and precision-recall curves") if d.curves else ""
        return (f'<section id="labels"><h2>ROC and precision-recall curves (test)</h2><p class="muted">The positive '
                f"class {esc(d.positive)} against the rest, for the best model and its closest rivals; the dot on "
                "each curve is the model's threshold tuned on validation.</p>" + curves + "</section>")
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
    rule = "tuned thresholds" if d.multi else "argmax"
    return ('<section id="labels"><h2>Per-label ROC-AUC and F1 (test)</h2><p class="muted">Labels by test support, '
            f"largest first; F1 at each model's {rule}; the best model first, then its closest rivals of "
            "each kind and the prior dummy. Click a header to sort.</p>"
            + table(head, rows, table_id="label-table", groups=groups) + "</section>")


def _counts_table(c: dict, d: ReportData) -> str:
    head = ["label" if d.multi else "class", "support", "TP", "FP", "FN", "TN", "precision", "recall", "F1"]
    rows = [([esc(r["label"]), cell(str(r["support"]), r["support"]),
              *[cell(str(r[k]), r[k]) for k in ("tp", "fp", "fn", "tn")],
              *[value_cell(r[k], bar=True) for k in ("precision", "recall", "f1")]], "")
            for r in c["counts_rows"]]
    return table(head, rows, table_id="counts-table")


def _binary_matrix(c: dict, d: ReportData) -> str:
    """The 2 x 2 confusion matrix in counts, with each count's share of its true class and of all rows."""
    counts, n = np.asarray(c["counts"]), int(np.asarray(c["counts"]).sum())
    head = ["true \\ predicted", *d.labels, "rows"]
    rows = []
    for i, name in enumerate(d.labels):
        support = int(counts[i].sum())
        cells = [esc(name)]
        for j in range(len(d.labels)):
            k = int(counts[i, j])
            rate = f"{k / support:.1%} of {esc(name)}" if support else "n/a"
            cells.append(cell(f"<b>{k:,}</b><br><span class=\"ci\">{rate}; {k / max(n, 1):.1%} of all</span>", k))
        cells.append(cell(f"{support:,}", support))
        rows.append((cells, ""))
    return table(head, rows, table_id="binary-confusion", sortable=False)


def confusions(d: ReportData) -> str:
    c, parts = d.confusion, []
    parts.append(f'<p class="muted">{esc(d.best)} on test, {esc(d.rule)}. ')
    if d.multi:
        parts[-1] += ("Heatmap cell (i, j): share of the test rows carrying label i whose predicted set holds j; "
                      "the diagonal is recall, the rest shows which labels are taken for which.</p>")
        parts.append("<h3>Per-label counts (each label against the rest)</h3>" + _counts_table(c, d))
        parts.append("<h3>True × predicted co-occurrence</h3>")
    elif d.positive is not None:
        parts[-1] += ("Counts, with each one's share of its true class (the rates: recall of each class on the "
                      "diagonal) and of all test rows.</p><h3>Confusion matrix</h3>" + _binary_matrix(c, d))
        parts.append("<h3>Per-class precision and recall</h3>" + _counts_table(c, d))
        return f'<section id="confusions"><h2>Confusion report</h2>{"".join(parts)}</section>'
    else:
        parts[-1] += "Rows: true class, normalised to 1; columns: predicted class.</p>"
        parts.append("<h3>Per-class precision and recall (each class against the rest)</h3>" + _counts_table(c, d))
        parts.append("<h3>Confusion matrix</h3>")
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
            scores = ("validation_score", "validation_macro_f1", "validation_macro_auc", "fit_seconds")
            keys = [k for k in g[0] if k not in scores]
            chosen = entry["selection"].get("chosen", {})
            # the selection score (cross-fitted: thresholds tuned on other validation folds) leads when
            # recorded; the macro-F1 at thresholds tuned on the very rows it scores is optimistic
            crossfit = any("validation_score" in p for p in g)
            rows = [([*[esc(p.get(k)) for k in keys],
                      *([value_cell(p.get("validation_score"), bar=True)] if crossfit else []),
                      value_cell(p.get("validation_macro_f1"), bar=not crossfit),
                      value_cell(p.get("validation_macro_auc")), value_cell(p.get("fit_seconds"), 1)],
                     "best" if all(p.get(k) == chosen.get(k) for k in chosen) else "") for p in g]
            head = [*keys, *(["selection score (cross-fitted)"] if crossfit else []),
                    "validation macro F1 (in-sample thresholds)" if crossfit else "validation macro F1",
                    "validation macro AUC", "fit s"]
            grids.append(details(f"{m}: {len(g)} grid points", table(head, rows, left=len(keys))))
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


def render(d: ReportData, script: str, data_json: str) -> str:
    """The whole page (html.page) of `d`."""
    parts = (summary, models, labels, lambda d: finetune_section.section(d.finetune), confusions, umap_map, errors,
             search, run_info)
    nav = NAV if not d.finetune else [*NAV[:3], ("finetune", "Fine-tuning"), *NAV[3:]]
    return page(f"probekit report: {d.run}", header(d), nav, "".join(f(d) for f in parts), script, data_json)
