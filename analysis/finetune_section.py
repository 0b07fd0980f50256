"""The report's "What fine-tuning adds": the best frozen model against each fine-tuned one.

A model is fine-tuned when its metrics.json entry has a ``history`` (classify's
``gather_finetuned``); the frozen model it is held against is the best on validation among
the others that read the frozen encoder's features (``input`` "features" or "both"; when
there is none, among every other non-baseline model). Per label, from the saved test scores
and each model's own decision (``classify.compare.predict_entry``): test F1 and ROC-AUC of
both (scikit-learn), the F1 difference (fine-tuned minus frozen) with its paired bootstrap
interval (``classify.bootstrap``: the resamples of metrics.json's ``seed`` and
``comparisons.n_bootstrap``, as classify draws them) and the share of resamples in which the
fine-tuned model is ahead; the same for macro-F1. What each cost: wall-clock minutes,
examples/s, device, dtype and trained layers of the fine-tuned model; fit and selection
seconds of the frozen one (plus the feature extraction it needs, from the manifest). The
training curves (``history``: train and validation loss, validation metric per epoch) are one
PNG; :func:`wandb_tables` gives W&B the same table and curves.

    ft = compute(metrics, Y_test, scores, problem_type, manifest, out_dir)   # None: no fine-tuned model
    html = section(ft)

Torch-free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from probekit.stages.analysis import plots
from probekit.stages.analysis.html import cell, esc, img, num, table, value_cell
from probekit.stages.analysis.results import is_baseline, validation_score
from probekit.stages.classify import bootstrap
from probekit.stages.classify.compare import predict_entry

CURVES_NAME = "finetune_curves.png"
FROZEN_INPUTS = ("features", "both")  # models reading the frozen encoder's features
MACRO = "all labels (macro)"


def finetuned_models(metrics: dict) -> list[str]:
    """The fine-tuned models of metrics.json: entries carrying a training ``history``."""
    return [n for n, e in metrics["models"].items() if isinstance(e.get("history"), list)]


def best_frozen(metrics: dict) -> str | None:
    """The best model on validation that is not fine-tuned: among those reading the frozen
    encoder's features when any, else among every other non-baseline model."""
    tuned = set(finetuned_models(metrics))
    others = {n: e for n, e in metrics["models"].items() if n not in tuned and not is_baseline(n)}
    frozen = {n: e for n, e in others.items() if e.get("input", "features") in FROZEN_INPUTS} or others
    if not frozen:
        return None
    return max(frozen, key=lambda n: (validation_score(frozen[n]) or -1.0,
                                      (frozen[n].get("validation") or {}).get("macro_auc") or 0.0))


def _aucs(Y: np.ndarray, P: np.ndarray) -> list[float | None]:
    return [float(roc_auc_score(Y[:, k], P[:, k])) if 0 < Y[:, k].sum() < len(Y) else None for k in range(Y.shape[1])]


def _boot_f1(Y: np.ndarray, Yhat: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(n_boot, n_labels) per-label F1 under each resample's row counts (0 where undefined, as sklearn's
    ``zero_division=0``)."""
    Y, Yhat = Y.astype(np.float64), Yhat.astype(np.float64)
    tp, fp, fn = W @ (Y * Yhat), W @ ((1 - Y) * Yhat), W @ (Y * (1 - Yhat))
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)


def _cost(name: str, entry: dict, tuned: bool, manifest: dict) -> dict:
    sel = (entry.get("selection") or {}).get("seconds")
    fit = entry.get("fit_seconds")
    if tuned:
        minutes = entry.get("wall_minutes")
        if minutes is None and fit is not None:
            minutes = fit / 60
        return {"model": name, "kind": "fine-tuned", "minutes": minutes, "examples_per_s": entry.get("examples_per_s"),
                "device": entry.get("device"), "dtype": entry.get("dtype"), "train_layers": entry.get("train_layers"),
                "epochs": len(entry["history"]), "train_rows": entry.get("train_rows"), "fit_seconds": fit,
                "selection_seconds": None, "extract_seconds": None}
    extract = sum((manifest.get("extract_seconds") or {}).values()) or None
    total = (fit or 0.0) + (sel or 0.0)
    return {"model": name, "kind": "frozen", "minutes": total / 60 if fit is not None or sel is not None else None,
            "examples_per_s": None, "device": manifest.get("device"),
            "dtype": manifest.get("compute_dtype") or manifest.get("dtype"),
            "train_layers": None, "epochs": None, "train_rows": (manifest.get("splits") or {}).get("train"),
            "fit_seconds": fit, "selection_seconds": sel, "extract_seconds": extract}


def compute(metrics: dict, Y: np.ndarray, scores: dict[str, np.ndarray], problem_type: str, manifest: dict,
            out: Path) -> dict | None:
    """The section's numbers and curve file; None when metrics.json holds no fine-tuned model.

    Args:
        Y: (n_rows, n_labels) 0/1 test labels (the feature cache's).
        scores: model -> (n_rows, n_labels) test probabilities (``scores/<model>.test.npy``).
        out: the report folder; the curves are written to ``out / CURVES_NAME``.
    """
    tuned = finetuned_models(metrics)
    if not tuned:
        (Path(out) / CURVES_NAME).unlink(missing_ok=True)  # a rerun must not keep an earlier run's curves
        return None
    frozen = best_frozen(metrics)
    labels, models = list(metrics["labels"]), metrics["models"]
    shown = ([frozen] if frozen else []) + tuned
    Y = np.asarray(Y)
    preds = {m: predict_entry(np.asarray(scores[m]), problem_type, models[m]) for m in shown}
    f1 = {m: f1_score(Y, preds[m], average=None, zero_division=0) for m in shown}
    auc = {m: _aucs(Y, np.asarray(scores[m], dtype=np.float64)) for m in shown}
    comp = metrics.get("comparisons") or {}
    n_boot, level, seed = int(comp.get("n_bootstrap") or 0), float(comp.get("ci_level") or 0.95), metrics.get("seed", 0)
    diffs = {}
    if frozen and n_boot:
        W = bootstrap.resample_weights(len(Y), n_boot, int(seed or 0))  # classify's resamples: the same rows
        base = _boot_f1(Y, preds[frozen], W)
        for m in tuned:
            d = _boot_f1(Y, preds[m], W) - base
            diffs[m] = np.column_stack([d, d.mean(axis=1)])  # the labels, then macro-F1

    def row(label: str, k: int | None, support: int) -> dict:
        r = {"label": label, "support": support, "f1": {}, "auc": {}, "diff": {}, "ci": {}, "p_better": {}}
        for m in shown:
            r["f1"][m] = float(f1[m].mean() if k is None else f1[m][k])
            a = [x for x in auc[m] if x is not None]
            r["auc"][m] = (float(np.mean(a)) if a else None) if k is None else auc[m][k]
        for m in tuned if frozen else ():
            r["diff"][m] = r["f1"][m] - r["f1"][frozen]
            if m in diffs:
                d = diffs[m][:, len(labels) if k is None else k]
                r["ci"][m] = bootstrap.interval(d, level)
                r["p_better"][m] = float(np.mean(d > 0) + 0.5 * np.mean(d == 0))
        return r

    support = Y.sum(axis=0).astype(int)
    rows = sorted((row(lab, k, int(support[k])) for k, lab in enumerate(labels)), key=lambda r: -r["support"])
    curves = plot_curves({m: models[m] for m in tuned}, out / CURVES_NAME)
    return {"frozen": frozen, "finetuned": tuned, "macro": row(MACRO, None, int(len(Y))), "rows": rows,
            "costs": [_cost(m, models[m], m in tuned, manifest) for m in shown], "n_bootstrap": n_boot,
            "ci_level": level, "seed": seed, "curves": curves, "curve_rows": curve_rows({m: models[m] for m in tuned})}


def curve_rows(entries: dict[str, dict]) -> list[list]:
    """[epoch, value, "<model> <series>"] for the train loss, validation loss and validation metric."""
    series = {"train_loss": "train loss", "validation_loss": "validation loss",
              "validation_metric": "validation metric"}
    return [[int(h.get("epoch", i + 1)), float(h[k]), f"{m} {what}"] for m, e in entries.items()
            for k, what in series.items() for i, h in enumerate(e["history"]) if h.get(k) is not None]


@plots.plain_text
def plot_curves(entries: dict[str, dict], path: Path) -> Path:
    """Train and validation loss (left) and the validation metric (right) per epoch of each
    fine-tuned model; a ring marks the kept epoch."""
    import matplotlib.pyplot as plt

    fig, (loss, metric) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (name, entry), color in zip(entries.items(), plots.label_colors(max(len(entries), 1))):
        h = entry["history"]
        ep = [x.get("epoch", i + 1) for i, x in enumerate(h)]
        loss.plot(ep, [x.get("train_loss") for x in h], "-o", color=color, ms=3, label=f"{name} train")
        loss.plot(ep, [x.get("validation_loss") for x in h], "--s", color=color, ms=3, label=f"{name} validation")
        metric.plot(ep, [x.get("validation_metric") for x in h], "-o", color=color, ms=3, label=name)
        chosen = ((entry.get("selection") or {}).get("chosen") or {}).get("epoch")
        if chosen in ep:
            metric.plot([chosen], [h[ep.index(chosen)].get("validation_metric")], "o", ms=10, mfc="none",
                        color=color)
    what = next(iter(entries.values())).get("config", {}).get("metric", "macro_f1")
    loss.set(xlabel="epoch", ylabel="loss", title="Loss per epoch")
    metric.set(xlabel="epoch", ylabel=f"validation {what}", title=f"Validation {what} (ring: the kept epoch)")
    for ax in (loss, metric):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return plots.save_figure(fig, path)


def _mins(c: dict) -> str:
    return num(c["minutes"], 1) if c["minutes"] is not None else "n/a"


def _cost_table(ft: dict) -> str:
    head = ["model", "kind", "minutes", "examples/s", "device", "dtype", "trained layers", "epochs", "train rows",
            "fit s", "selection s", "extraction s"]
    rows = []
    for c in ft["costs"]:
        layers = c["train_layers"]
        layers = "n/a" if layers is None else "all" if layers == 0 else f"top {layers}"
        rows.append(([esc(c["model"]), esc(c["kind"]), cell(_mins(c), c["minutes"]),
                      value_cell(c["examples_per_s"], 1), esc(c["device"] or "n/a"), esc(c["dtype"] or "n/a"),
                      esc(layers), esc(c["epochs"] if c["epochs"] is not None else "n/a"),
                      esc(f"{c['train_rows']:,}" if c["train_rows"] is not None else "n/a"),
                      value_cell(c["fit_seconds"], 1), value_cell(c["selection_seconds"], 1),
                      value_cell(c["extract_seconds"], 1)], ""))
    return table(head, rows, table_id="finetune-cost", left={0, 1, 4, 5, 6})


def _label_table(ft: dict) -> str:
    frozen, tuned = ft["frozen"], ft["finetuned"]
    head, groups = ["label", "test support"], [("", 2)]
    if frozen:
        head += ["F1", "AUC"]
        groups.append((f"{frozen} (frozen)", 2))
    for m in tuned:
        extra = ["F1 − frozen", "P(ahead)"] if frozen else []
        head += ["F1", "AUC", *extra]
        groups.append((f"{m} (fine-tuned)", 2 + len(extra)))
    body = []
    for r in [ft["macro"], *ft["rows"]]:
        cells = [esc(r["label"]), cell(f"{r['support']:,}", r["support"])]
        for m in ([frozen] if frozen else []) + tuned:
            cells += [value_cell(r["f1"][m], bar=True), value_cell(r["auc"][m])]
            if frozen and m != frozen:
                cells += [value_cell(r["diff"][m], ci=r["ci"].get(m)), value_cell(r["p_better"].get(m), 2)]
        body.append((cells, "best" if r["label"] == MACRO else ""))
    return table(head, body, table_id="finetune-table", groups=groups)


def section(ft: dict | None) -> str:
    """The HTML section, or "" when there is no fine-tuned model."""
    if not ft:
        return ""
    frozen = ft["frozen"]
    ci = (f"{ft['ci_level']:.0%} paired bootstrap intervals over {ft['n_bootstrap']} resamples of the test rows "
          f"(seed {esc(ft['seed'])}, the resamples classify draws); P(ahead): the share in which the fine-tuned "
          "model's F1 is higher") if ft["n_bootstrap"] and frozen else "no bootstrap intervals"
    vs = (f"{esc(frozen)}, the best model on validation without fine-tuning, against " if frozen
          else "No frozen-feature model to compare with; ")
    intro = (f'<p class="muted">{vs}{esc(", ".join(ft["finetuned"]))}: test F1 at each model\'s own decision '
             f"(thresholds tuned on validation, or the argmax) and ROC-AUC per label, largest first ({ci}). "
             "Costs on the machine that ran them; the frozen model also needs the encoder's one extraction "
             "pass (extraction s, all splits).</p>")
    curve = (f"<h3>Training curves</h3>{img(ft['curves'], 'fine-tuning curves')}" if ft.get("curves") else "")
    return (f'<section id="finetune"><h2>What fine-tuning adds</h2>{intro}<h3>What each cost</h3>{_cost_table(ft)}'
            f"<h3>Per label (test)</h3>{_label_table(ft)}{curve}</section>")


def to_json(ft: dict | None) -> dict | None:
    """The section's numbers for report.json (the curve as its file name)."""
    return None if ft is None else {**{k: v for k, v in ft.items() if k != "curve_rows"},
                                    "curves": Path(ft["curves"]).name if ft.get("curves") else None}


def wandb_tables(wandb, ft: dict | None) -> dict:
    """W&B: the per-label table (``finetune/per_label``), the costs (``finetune/costs``) and the
    training curves as a line chart (``finetune/curves``: loss and validation metric per epoch)."""
    if not ft:
        return {}
    from probekit.core.tracking import safe

    frozen, tuned = ft["frozen"], ft["finetuned"]
    cols = ["label", "support"] + ([f"f1_{frozen}", f"auc_{frozen}"] if frozen else [])
    for m in tuned:
        cols += [f"f1_{m}", f"auc_{m}"] + ([f"f1_diff_{m}", f"f1_diff_{m}_lo", f"f1_diff_{m}_hi",
                                            f"p_ahead_{m}"] if frozen else [])
    data = []
    for r in [ft["macro"], *ft["rows"]]:
        vals = [safe(r["label"]), r["support"]] + ([r["f1"][frozen], r["auc"][frozen]] if frozen else [])
        for m in tuned:
            lo, hi = r["ci"].get(m) or (None, None)
            vals += [r["f1"][m], r["auc"][m]] + ([r["diff"][m], lo, hi, r["p_better"].get(m)] if frozen else [])
        data.append(vals)
    keys = ["model", "kind", "minutes", "examples_per_s", "device", "dtype", "train_layers", "epochs", "train_rows",
            "fit_seconds", "selection_seconds", "extract_seconds"]
    costs = [[safe(c[k]) if isinstance(c[k], str) else c[k] for k in keys] for c in ft["costs"]]
    return {"finetune/per_label": wandb.Table(columns=cols, data=data, allow_mixed_types=True),
            "finetune/costs": wandb.Table(columns=keys, data=costs, allow_mixed_types=True),
            "finetune/curves": wandb.plot.line(wandb.Table(columns=["epoch", "value", "series"], data=ft["curve_rows"]),
                                               "epoch", "value", stroke="series",
                                               title="Fine-tuning: loss and validation metric per epoch")}
