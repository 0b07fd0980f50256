"""Read what ``classify`` wrote and turn it into the numbers the report shows.

``metrics.json`` (see README, "metrics.json") holds, per model, ``validation`` and ``test``
blocks (scores at the fixed threshold, and a ``tuned`` sub-block at the thresholds tuned on
validation), ``test.ci`` bootstrap intervals, ``thresholds``, ``feature_set``, ``input``,
``params`` and ``selection``; ``comparisons`` names the best model and ``p_better``. Binary
data (two labels, single-label) adds ``positive`` to each block and entry: the positive
class's scores at its threshold tuned on validation. Older files without these keys still
load: every reader falls back to what is there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from probekit.core.errors import ProbekitError
from probekit.core.metrics import entry_positive, entry_threshold
from probekit.core.runfolder import METRICS_NAME, scores_path, verify_run_outputs

BASELINE_PREFIX = "dummy"
TABLE_METRICS = ("macro_f1", "micro_f1", "macro_auc", "micro_auc")


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{path} not found: run 'make classify' first (with the same CONFIG and ARTIFACTS).")


def load_metrics(run_dir: str | Path) -> dict:
    """Read ``<run>/metrics.json``; FileNotFoundError names the file and the Make target."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        raise _missing(path)
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ProbekitError(f"{path}: not valid JSON ({e}); run 'make classify' again.") from None
    if not metrics.get("models"):
        raise ProbekitError(f"{path}: 'models' is empty or missing; run 'make classify' again.")
    verify_run_outputs(run_dir, metrics)  # every model and score file is the one metrics.json was written with
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


def tuned(block: dict) -> dict:
    """The tuned-threshold metrics of a split block when present, else the block itself."""
    return (block or {}).get("tuned") or block or {}


def model_threshold(metrics: dict, model: str) -> float | np.ndarray:
    """The decision thresholds of `model` (per label in metrics.json's label order; see core.metrics)."""
    return entry_threshold(metrics["models"][model], metrics["labels"])


def model_positive(metrics: dict, model: str) -> int | None:
    """The positive column `model` decides on (binary data), None where it takes the argmax or thresholds."""
    return entry_positive(metrics["models"][model])


def positive_label(metrics: dict) -> str | None:
    """The positive class of binary data as classify recorded it; None for other data."""
    recorded = metrics.get("positive_label") or (metrics.get("comparisons") or {}).get("positive_label")
    if recorded:
        return recorded
    for entry in metrics["models"].values():
        if entry.get("positive"):
            return entry["positive"]["label"]
    return None


def describe_threshold(thr) -> str:
    if np.ndim(thr) == 0:
        return f"threshold {float(thr):g}"
    return f"per-label thresholds tuned on validation, {np.min(thr):.2f} to {np.max(thr):.2f}"


def decision_rule(metrics: dict, model: str) -> str:
    """How `model` turns probabilities into labels, in words."""
    entry = metrics["models"][model]
    pos = entry.get("positive")
    if pos:
        how = {"f1": "F1-best on validation", "fixed": "fixed", "recall": "highest reaching the recall target "
               "on validation"}.get(pos.get("rule"), "tuned on validation")
        return f"{pos['label']} predicted at p ≥ {pos['threshold']:.3f} ({how})"
    if metrics.get("problem_type") != "multi_label":
        return "argmax"
    return describe_threshold(model_threshold(metrics, model))


def is_baseline(name: str) -> bool:
    return name.startswith(BASELINE_PREFIX)


def validation_score(entry: dict) -> float | None:
    """The score the model was selected on: validation macro-F1 (tuned when tuned)."""
    sel = entry.get("selection", {}).get("validation_score")
    return sel if sel is not None else tuned(entry.get("validation", {})).get("macro_f1")


def choose_model(metrics: dict) -> str:
    """classify's best model (``comparisons.best``) when recorded; else the non-baseline model
    with the highest validation macro AUC, else the first with one, else the first."""
    models = metrics["models"]
    recorded = metrics.get("comparisons", {}).get("best")
    if recorded in models:
        return recorded

    def best(names: list[str]) -> str | None:
        scored = [(models[n].get("validation", {}).get("macro_auc"), n) for n in names]
        scored = [(auc, n) for auc, n in scored if auc is not None]
        return max(scored, key=lambda t: t[0])[1] if scored else None

    return best([n for n in models if not is_baseline(n)]) or best(list(models)) or next(iter(models))


def compare_models(metrics: dict, best: str, wanted: tuple = (), k: int = 4) -> list[str]:
    """The models shown side by side per label: `wanted` when given, else the best, the best
    of every other input kind (features, texts, both, fine-tuned...), then the runners-up by
    validation score, up to `k`; the prior dummy last as the floor."""
    models = metrics["models"]
    if wanted:
        unknown = [m for m in wanted if m not in models]
        if unknown:
            raise ProbekitError(f"[report] compare_models={list(wanted)}: {unknown} not in metrics.json "
                                f"(models: {', '.join(models)}).")
        return list(wanted)
    ranked = sorted((n for n in models if not is_baseline(n)), key=lambda n: -(validation_score(models[n]) or 0.0))
    out = [best]
    for n in ranked:  # one per input kind first: the encoder against words is the question
        if models[n].get("input") not in {models[m].get("input") for m in out}:
            out.append(n)
    out += [n for n in ranked if n not in out]
    out = out[:k]
    if "dummy" in models and "dummy" not in out:
        out.append("dummy")
    return out


def per_label_table(metrics: dict, support: dict[str, int]) -> list[dict]:
    """Rows {label, support, auc: {model: x}, f1: {model: x}} sorted by test support, largest first."""
    test = {m: v.get("test", {}) for m, v in metrics["models"].items()}
    rows = [{"label": label, "support": int(support.get(label, 0)),
             "auc": {m: t.get("per_label_auc", {}).get(label) for m, t in test.items()},
             "f1": {m: tuned(t).get("per_label_f1", {}).get(label) for m, t in test.items()}}
            for label in metrics["labels"]]
    return sorted(rows, key=lambda r: -r["support"])


POSITIVE_METRICS = ("f1", "precision", "recall", "average_precision", "roc_auc")


def model_rows(metrics: dict, best: str) -> list[dict]:
    """One row per model for the comparison table: test metrics (tuned thresholds) with their
    bootstrap intervals, macro-F1 at the fixed threshold, validation score, validation accuracy
    and macro-F1, timing, settings; binary data: the positive class's scores (``pos_*``) too."""
    multi = metrics.get("problem_type") == "multi_label"
    acc = "subset_accuracy" if multi else "accuracy"
    p_better = metrics.get("comparisons", {}).get("p_better", {})
    rows = []
    for name, entry in metrics["models"].items():
        test = entry.get("test", {})
        t, ci = tuned(test), test.get("ci", {})
        val = tuned(entry.get("validation", {}))
        pos = test.get("positive") or {}
        positive = {f"pos_{k}": pos.get(k) for k in POSITIVE_METRICS}
        positive |= {"pos_f1_ci": ci.get("positive_f1"), "pos_threshold": pos.get("threshold"),
                     "pos_average_precision_ci": ci.get("positive_average_precision")}
        params = entry.get("params") or {k: v for k, v in entry.get("selection", {}).get("chosen", {}).items()
                                         if k != "feature_set"}
        rows.append({
            "model": name, "best": name == best, "baseline": is_baseline(name),
            "input": entry.get("input", "features"), "feature_set": entry.get("feature_set"),
            "params": ", ".join(f"{k}={v}" for k, v in params.items()),
            **{k: t.get(k) for k in TABLE_METRICS}, **{f"{k}_ci": ci.get(k) for k in TABLE_METRICS},
            "f1_fixed": test.get("macro_f1"), "accuracy": t.get(acc), "validation": validation_score(entry),
            "fit_seconds": entry.get("fit_seconds"), "p_better": None if name == best else p_better.get(name),
            "n_candidates": entry.get("selection", {}).get("n_candidates"),
            "val_accuracy": val.get(acc), "val_macro_f1": val.get("macro_f1"), **positive,
        })
    return rows


def headline(metrics: dict) -> tuple[str, Callable[[dict], float]]:
    """The name of the headline test score and a function reading it from an entry: the
    positive class's F1 on binary data, else macro-F1 (tuned thresholds)."""
    label = positive_label(metrics)
    if label is not None:
        return f"{label} F1", lambda m: ((m.get("test") or {}).get("positive") or {}).get("f1") or 0.0
    return "macro-F1", lambda m: tuned(m.get("test", {})).get("macro_f1") or 0.0


def verdict(metrics: dict) -> str:
    """Plain sentences: do the encoder's features beat words (TF-IDF) here, and what does
    fine-tuning add over the best frozen-feature model (when the run has one)? Equal scores
    (to the 3 decimals shown) are worded as a tie."""
    models = metrics["models"]
    what, f1 = headline(metrics)
    words = models.get("tfidf_logreg")
    frozen = {n: m for n, m in models.items() if m.get("input") == "features" and not is_baseline(n)}
    out = []
    if words and frozen:
        best = max(frozen, key=lambda n: f1(frozen[n]))
        a, b = f1(frozen[best]), f1(words)
        if round(a, 3) == round(b, 3):
            out.append(f"Words and the frozen encoder tie here: TF-IDF + logistic regression and {best} (the best "
                       f"model on the encoder's features alone) both reach test {what} {a:.3f}.")
        elif b > a:
            out.append(f"Words beat the frozen encoder here: TF-IDF + logistic regression reaches test {what} "
                       f"{b:.3f}, the best model on the encoder's features alone ({best}) {a:.3f}.")
        else:
            out.append(f"The frozen encoder beats words here: {best} reaches test {what} {a:.3f}, "
                       f"TF-IDF + logistic regression {b:.3f}.")
    tuned = {n: m for n, m in models.items() if isinstance(m.get("history"), list)}  # fine-tuned: a history
    others = {n: m for n, m in models.items() if n not in tuned and not is_baseline(n)}
    for name, tuned_model in tuned.items():
        if not others:
            break
        best = max(others, key=lambda n: f1(others[n]))
        a, b = f1(tuned_model), f1(others[best])
        epochs = len(tuned_model.get("history") or ()) or "?"
        k = tuned_model.get("train_layers")
        layers = f"the top {k} layers, " if k else ("every layer, " if k == 0 else "")
        start = (f"Fine-tuning{f' ({name})' if len(tuned) > 1 else ''} ({layers}{epochs} epochs on "
                 f"{tuned_model.get('train_rows', '?')} train rows) reaches test {what} {a:.3f}, ")
        if round(a, 3) == round(b, 3):
            out.append(start + f"a tie with the best model without fine-tuning ({best}, {b:.3f}).")
        else:
            out.append(start + f"{'above' if a > b else 'below'} the best model without fine-tuning "
                       f"({best}, {b:.3f}) by {abs(a - b):.3f}.")
    return " ".join(out)


def top_confusions(counts: np.ndarray, labels: list[str], support: np.ndarray, n: int = 8) -> list[dict]:
    """The off-diagonal (true i, predicted j) cells with the largest share of label i's rows.

    Args:
        counts: (n_labels, n_labels) rows with true label i whose prediction holds label j.
        support: (n_labels,) rows with true label i.
    """
    out = []
    for i, j in zip(*np.nonzero(counts)):
        if i != j and support[i] > 0:
            out.append({"true": labels[i], "predicted": labels[j], "count": int(counts[i, j]),
                        "share": float(counts[i, j] / support[i]), "support": int(support[i])})
    # Ties (and noise from labels with a handful of rows) are ranked by how many rows back the share.
    return sorted(out, key=lambda r: (-r["share"] * min(1.0, r["support"] / 20), -r["count"]))[:n]
