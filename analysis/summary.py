"""The top of the report page: its header line, the Summary cards and the Models table.

The header names the encoder, the feature sets (poolings) the chosen models read, the
problem type and the splits. The Summary's cards: the best model on validation with its
headline test score and interval (binary data: the positive class's F1, precision, recall
and average precision, with the threshold tuned on validation; otherwise macro-F1 and macro
AUC), the runner-up, the strongest and weakest labels (not on binary data, where "labels"
are the class and its complement), the most frequent mistake, the share of texts cut at
``max_length`` with its fix, and likely label errors; then the verdict sentences. The
Models table's columns follow the problem type: binary data leads with the positive class,
single-label data is scored at the argmax (validation accuracy and macro-F1 beside test),
multi-label data at the thresholds tuned on validation (and at the fixed 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

from probekit.stages.analysis.html import cell, esc, num, table, value_cell


@dataclass
class ReportData:
    """Everything the page shows, computed by :func:`analysis.report.build_report` (every
    section of analysis.sections and this module is a function of it)."""

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
    positive: str | None = None  # binary data: the positive class
    rule: str = "argmax"  # the best model's decision rule, in words (analysis.results.decision_rule)
    curves: object = None  # binary data: the ROC and precision-recall figure (Path)
    finetune: dict | None = None  # analysis.finetune_section.compute: None without a fine-tuned model


def _card(key: str, value_html: str, sub_html: str = "") -> str:
    return (f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{value_html}</div>'
            f'<div class="s">{sub_html}</div></div>')


def _ci(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None and ci[1] is not None else ""


def poolings_used(d: ReportData) -> str:
    """The feature sets the compared models read, e.g. "mean features (logreg, hybrid_logreg); words (tfidf_logreg)"."""
    groups: dict[str, list[str]] = {}
    for name in d.compared:
        entry = d.metrics["models"].get(name, {})
        if name.startswith("dummy"):
            continue
        kind, pool = entry.get("input", "features"), entry.get("feature_set")
        key = ("words" if kind == "texts" and entry.get("history") is None else "fine-tuned encoder"
               if kind == "texts" else f"words + {pool} features" if kind == "both" else f"{pool} features")
        groups.setdefault(key, []).append(name)
    return "; ".join(f"{k} ({', '.join(v)})" for k, v in groups.items())


def truncation(manifest: dict) -> tuple[float, str] | None:
    """(share of all texts cut at max_length, one sentence per split) when any text was cut
    (not when long texts were read whole, in windows); else None."""
    counts, rows = manifest.get("n_truncated") or {}, manifest.get("splits") or {}
    if not any(counts.values()) or (manifest.get("long_text") or {}).get("mode") == "window":
        return None
    total = sum(rows.get(s, 0) for s in counts) or 1
    parts = ", ".join(f"{s} {n / max(rows.get(s, 0), 1):.0%} ({n:,} of {rows.get(s, 0):,})" for s, n in counts.items())
    return sum(counts.values()) / total, parts


def header(d: ReportData) -> str:
    m = d.manifest
    split = ", ".join(f"{s} {k:,}" for s, k in m.get("splits", {}).items())
    used = poolings_used(d)
    kind = d.metrics.get("problem_type", "")
    if d.positive is not None:
        kind = f"binary ({kind}), positive class {d.positive}"
    return (f"<h1>probekit report: {esc(d.run)}</h1><div class=\"muted\">{esc(m.get('model_id', 'n/a'))} · "
            f"{esc(used) if used else esc(m.get('pooling', 'n/a')) + ' pooling'} · {esc(kind)}, "
            f"{len(d.labels)} labels · {esc(split)}</div>")


def _binary_cards(d: ReportData, row: dict, rivals: list) -> list[str]:
    pos = esc(d.positive)
    cards = [
        _card("best model (validation)", esc(d.best),
              f"test {pos} F1 <b>{num(row['pos_f1'])}</b>{esc(_ci(row['pos_f1_ci']))}"),
        _card(f"{d.positive} precision / recall", f"{num(row['pos_precision'])} / {num(row['pos_recall'])}",
              f"test, {esc(d.rule)}"),
        _card(f"{d.positive} average precision", num(row["pos_average_precision"]),
              f"PR-AUC{esc(_ci(row['pos_average_precision_ci']))}; ROC-AUC {num(row['pos_roc_auc'])}"),
        _card("threshold", num(row["pos_threshold"]), f"{pos} predicted at p ≥ this; chosen on validation"),
    ]
    if rivals:
        r = rivals[0]
        cards.append(_card("runner-up", esc(r["model"]), f"test {pos} F1 {num(r['pos_f1'])}" + (
            f"; the best beats it in {r['p_better']:.0%} of paired test resamples" if r["p_better"] is not None
            else "")))
    return cards


def summary(d: ReportData) -> str:
    row = next(r for r in d.model_rows if r["model"] == d.best)
    others = [r for r in d.model_rows if not r["best"]]
    rivals = sorted(others, key=lambda r: (r["baseline"], -(r["validation"] or 0.0)))  # the runner-up on validation
    if d.positive is not None:
        cards = _binary_cards(d, row, rivals)
    else:
        f1 = {r["label"]: r["f1"].get(d.best) for r in d.per_label
              if r["support"] > 0 and r["f1"].get(d.best) is not None}
        ranked = sorted(f1, key=lambda k: -f1[k])
        fmt = lambda ks: ", ".join(f"{esc(k)} {f1[k]:.2f}" for k in ks) or "n/a"  # noqa: E731
        cards = [
            _card("best model (validation)", esc(d.best), f"test macro-F1 <b>{num(row['macro_f1'])}</b>"
                  f"{esc(_ci(row.get('macro_f1_ci')))}, macro AUC {num(row['macro_auc'])}"),
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
    cut = truncation(d.manifest)
    if cut is not None:
        share, parts = cut
        cards.append(_card(f"texts cut at {d.manifest.get('max_length')} tokens", f"{share:.0%}",
                           f"{esc(parts)}. To read them whole: <code>encoder.long_text = \"window\"</code> or a "
                           "larger <code>encoder.max_length</code>, then extract again."))
    if d.label_errors:
        le = d.label_errors
        cards.append(_card("likely label errors (train)", f"{le['n_flagged']:,}",
                           f"of {le['n_rows']:,} rows: a confident out-of-fold probe disagrees"))
    verdict = f'<p class="verdict">{esc(d.verdict)}</p>' if d.verdict else ""
    return f'<section id="summary"><div class="cards">{"".join(cards)}</div>{verdict}</section>'


def _model_cell(r: dict) -> dict:
    badge = '<span class="badge">best</span>' if r["best"] else ""
    reads = esc(r["input"]) + (f" · {esc(r['feature_set'])}" if r["feature_set"] else "")
    return cell(f'<span class="model">{esc(r["model"])}</span>{badge}<div class="ci">{reads}</div>')


def _columns(d: ReportData) -> tuple[list, list, list]:
    """(header texts, header groups, row keys) of the models table, by problem type."""
    if d.positive is not None:
        p = d.positive
        keys = ["pos_f1", "pos_precision", "pos_recall", "pos_average_precision", "pos_roc_auc", "accuracy",
                "macro_f1", "pos_threshold", "validation", "val_accuracy", "val_macro_f1"]
        head = [f"{p} F1", "precision", "recall", "average precision", "ROC-AUC", "accuracy", "macro F1",
                "threshold", f"{p} F1", "accuracy", "macro F1"]
        groups = [(f"test: the positive class {p}, its threshold tuned on validation", 5), ("test", 2),
                  ("", 1), ("validation", 3)]
    elif d.multi:
        keys = ["macro_f1", "micro_f1", "macro_auc", "micro_auc", "f1_fixed", "accuracy", "validation"]
        head = ["macro F1", "micro F1", "macro AUC", "micro AUC", "macro F1 @ 0.5", "subset acc.", "val. macro F1"]
        groups = [("test, thresholds tuned on validation", 4), ("test", 2), ("", 1)]
    else:
        keys = ["macro_f1", "micro_f1", "macro_auc", "micro_auc", "accuracy", "val_accuracy", "validation"]
        head = ["macro F1", "micro F1", "macro AUC", "micro AUC", "accuracy", "accuracy", "macro F1"]
        groups = [("test, argmax", 5), ("validation", 2)]
    return head, groups, keys


def models(d: ReportData) -> str:
    head, groups, keys = _columns(d)
    head = ["model", "settings", *head, "fit s", "P(best > it)"]
    groups = [("", 2), *groups, ("", 2)]
    with_ci = {"macro_f1", "micro_f1", "macro_auc", "micro_auc"} if d.positive is None else {
        "pos_f1", "pos_average_precision"}
    ci_key = {"pos_f1": "pos_f1_ci", "pos_average_precision": "pos_average_precision_ci"}
    rows = []
    for r in d.model_rows:
        cells = [_model_cell(r), cell(esc(r["params"].replace(", ", ", \u200b") or "-"), cls="params",
                                      title=f"chosen among {r['n_candidates'] or 1} grid points on validation")]
        for k in keys:
            ci = r.get(ci_key.get(k, f"{k}_ci")) if k in with_ci else None
            bar = k not in ("pos_threshold",)
            cells.append(value_cell(r.get(k), ci=ci, bar=bar))
        cells += [value_cell(r["fit_seconds"], 1),
                  value_cell(r["p_better"], 3) if not r["best"] else cell("best", 2.0)]
        rows.append((cells, "best" if r["best"] else "baseline" if r["baseline"] else ""))
    comp = d.metrics.get("comparisons", {})
    note = (f"{comp.get('ci_level', 0.95):.0%} bootstrap intervals over {comp.get('n_bootstrap')} test resamples"
            if comp.get("n_bootstrap") else "no bootstrap intervals")
    if d.positive is not None:
        what = (f"Test scores of the positive class {esc(d.positive)}, predicted where its probability reaches each "
                f"model's threshold, tuned on validation; models were chosen by validation {esc(d.positive)} F1 "
                "(ties: average precision), and P(best > it) compares test F1 of that class")
    elif d.multi:
        what = "Test scores at the thresholds tuned on validation; every model was selected on validation only"
    else:
        what = ("Test scores of the argmax (the most probable class); every model was selected on validation "
                "macro-F1 only")
    return (f'<section id="models"><h2>Models</h2><p class="muted">{what} (brackets: {esc(note)}). '
            "Click a header to sort.</p>"
            + table(head, rows, table_id="model-table", left=2, groups=groups) + "</section>")
