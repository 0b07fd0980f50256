"""The results table of a finished run, in Markdown, from its metrics.json alone.

    probekit table --run artifacts/goemotions-local        (or: make table RUN=artifacts/goemotions-local)

The README's results table is this command's output, so a number in it is one the code
produced. One row per model: the chosen configuration, the features it read, test macro-F1
with its bootstrap interval, micro-F1, macro and micro AUC (all at the thresholds tuned on
validation; single-label: the argmax), macro-F1 at the fixed threshold (multi-label), the
final fit's seconds and the whole selection's. The model chosen on validation is in bold.
Binary data (two labels, single-label) is shown by its positive class instead: F1 with its
interval, precision, recall, average precision with its interval, ROC-AUC, the threshold
tuned on validation, and accuracy.
"""

from __future__ import annotations

from pathlib import Path

from probekit.stages.analysis.results import is_baseline, load_metrics, positive_label, tuned

# params shown after a model's name, in this order; values of "none" are left out
_SHORT = {"C": "C={}", "n_estimators": "{} trees", "max_depth": "depth {}", "min_samples_leaf": "leaf {}",
          "alpha": "alpha={}", "class_weight": "{}", "emb_C": "features C={}", "emb_class_weight": "{}",
          "emb_weight": "weight {}"}


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _params(params: dict) -> str:
    parts = [fmt.format(_g(params[k])) for k, fmt in _SHORT.items()
             if k in params and params[k] not in ("none", None, 0)]
    return f" ({', '.join(parts)})" if parts else ""


def _g(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _features(name: str, entry: dict) -> str:
    if is_baseline(name):
        return "-"  # a dummy reads no features
    kind, pooling = entry.get("input"), entry.get("feature_set")
    # the TF-IDF analyzer: word n-grams, character n-grams within words, or both
    text = {"char_wb": "chars", "word+char_wb": "words + chars"}.get((entry.get("params") or {}).get("analyzer"),
                                                                       "words")
    if kind == "texts":
        if entry.get("history") is None:
            return text
        k = entry.get("train_layers")  # 0: every layer; None: a fine-tuned folder from before train_layers
        return f"fine-tuned, top {k} layers" if k else ("fine-tuned, all layers" if k == 0 else "fine-tuned")
    if kind == "both":
        return f"{text} + {pooling}"
    return pooling or "-"


def _ci(value, ci) -> str:
    return _num(value) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else "")


def _timing(entry: dict) -> list[str]:
    selection = (entry.get("selection") or {}).get("seconds")
    return [f"{entry.get('fit_seconds', 0):.0f} s", "-" if selection is None else f"{selection:.0f} s"]


def binary_table(metrics: dict, positive: str) -> str:
    """The Markdown table of binary data: every model's positive-class scores on test."""
    best = (metrics.get("comparisons") or {}).get("best")
    head = ["model", "features", f"test {positive} F1 [CI]", "precision", "recall", "average precision [CI]",
            "ROC-AUC", "threshold", "accuracy", "fit", "selection"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in metrics["models"].items():
        test = entry["test"]
        pos, ci = test.get("positive") or {}, test.get("ci") or {}
        label, f1 = f"{name}{_params(entry.get('params') or {})}", _ci(pos.get("f1"), ci.get("positive_f1"))
        if name == best:
            label, f1 = f"**{label}**", f"**{f1}**"
        cells = [label, _features(name, entry), f1, _num(pos.get("precision")), _num(pos.get("recall")),
                 _ci(pos.get("average_precision"), ci.get("positive_average_precision")), _num(pos.get("roc_auc")),
                 _num(pos.get("threshold")), _num(tuned(test).get("accuracy")), *_timing(entry)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def results_table(metrics: dict) -> str:
    """The Markdown table of every model of `metrics` (a metrics.json dict), best on validation in bold."""
    positive = positive_label(metrics)
    if positive is not None:
        return binary_table(metrics, positive)
    best = (metrics.get("comparisons") or {}).get("best")
    multi = metrics.get("problem_type") == "multi_label"
    head = ["model", "features", "test macro-F1 [CI]", "micro-F1", "macro AUC", "micro AUC"]
    head += ["macro-F1 at 0.5"] if multi else []
    head += ["fit", "selection"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in metrics["models"].items():
        test = entry["test"]
        t = tuned(test)
        ci = (test.get("ci") or {}).get("macro_f1")
        f1 = _num(t.get("macro_f1")) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        label = f"{name}{_params(entry.get('params') or {})}"
        if name == best:
            label, f1 = f"**{label}**", f"**{f1}**"
        cells = [label, _features(name, entry), f1, _num(t.get("micro_f1")), _num(t.get("macro_auc")),
                 _num(t.get("micro_auc"))]
        cells += [_num(test.get("macro_f1"))] if multi else []
        cells += _timing(entry)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def print_table(run_dir: str | Path) -> str:
    """The results table of the run in `run_dir` (FileNotFoundError names `make classify` when missing)."""
    return results_table(load_metrics(run_dir))
