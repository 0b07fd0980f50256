"""Scoring blocks and the cross-model comparison, shared by classify and the fine-tuning path.

Every model of a run (the scikit-learn ones and ``finetuned``) is scored by the same
functions: :func:`split_block` makes a split's metrics.json block (fixed threshold, plus
the tuned one), and :func:`compare` reads every model's test scores back from
``<run>/scores/`` and adds bootstrap intervals and paired comparisons against the best
model on validation. :func:`merge_model` puts one more model into an existing
``metrics.json`` (or starts one) and recomputes the comparison.

Torch-free: ``extract/finetune.py`` calls it after training, classify after fitting.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix

from probekit.core.config import ClassifySection
from probekit.core.errors import ProbekitError
from probekit.core.metrics import predict_labels, score
from probekit.core.runfolder import METRICS_NAME, scores_path, write_json_atomic
from probekit.stages.classify import bootstrap
from probekit.stages.classify.models import BASELINES
from probekit.stages.classify.select import SELECTION_METRIC

METRICS_SCHEMA_VERSION = 2


def split_block(Y: np.ndarray, P: np.ndarray, problem_type: str, label_names: list[str], threshold: float,
                thresholds: np.ndarray | None) -> dict:
    """The metrics.json block of one split: fixed-threshold metrics, ``tuned`` ones inside."""
    fixed = score(Y, P, problem_type, label_names, threshold)
    tuned = dict(fixed) if thresholds is None else score(Y, P, problem_type, label_names, thresholds)
    if problem_type == "single_label":
        fixed["confusion_matrix"] = confusion_matrix(np.asarray(Y).argmax(1), np.asarray(P).argmax(1),
                                                     labels=range(len(label_names))).tolist()
    return {**fixed, "tuned": tuned}


def model_threshold(entry: dict) -> float | np.ndarray:
    """The decision threshold(s) a metrics.json entry applies: tuned per label, else the fixed one."""
    thr = entry.get("thresholds")
    return np.asarray(list(thr.values()), dtype=np.float64) if thr else float(entry.get("threshold", 0.5))


def best_model(models: dict) -> str:
    """The best model on validation: selection score, ties by validation macro AUC; baselines only if alone."""
    contenders = {n: r for n, r in models.items() if n not in BASELINES} or models
    return max(contenders, key=lambda n: (contenders[n]["selection"]["validation_score"],
                                          contenders[n]["validation"].get("macro_auc") or 0))


def compare_predictions(models: dict, test_preds: dict, Y_test: np.ndarray, cfg: ClassifySection,
                        seed: int) -> dict:
    """Bootstrap intervals for every model (written into its ``test.ci``) and P(best beats other).

    Args:
        test_preds: model -> (test probabilities, test 0/1 predictions). One set of resamples
            of the test rows is shared by every model, so the comparison is paired.
    """
    best = best_model(models)
    out = {"best": best, "chosen_by": SELECTION_METRIC, "n_bootstrap": cfg.n_bootstrap, "ci_level": cfg.ci_level,
           "p_better": {}}
    if cfg.n_bootstrap == 0:
        return out
    W = bootstrap.resample_weights(len(Y_test), cfg.n_bootstrap, seed)
    boots = {}
    for name, (P, Yhat) in test_preds.items():
        boots[name] = bootstrap.bootstrap_metrics(Y_test, P, Yhat, W)
        models[name]["test"]["ci"] = {m: bootstrap.interval(boots[name][m], cfg.ci_level) for m in bootstrap.METRICS}
    for name in boots:
        if name != best:
            diff = boots[best]["macro_f1"] - boots[name]["macro_f1"]
            out["p_better"][name] = float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))
    return out


def compare(models: dict, run_dir: str | Path, Y_test: np.ndarray, problem_type: str, cfg: ClassifySection,
            seed: int) -> dict:
    """:func:`compare_predictions` on every model's test scores as saved in ``<run>/scores/``."""
    test_preds = {}
    for name, entry in models.items():
        path = scores_path(run_dir, name, "test")
        P = np.load(path, allow_pickle=False)
        if P.shape != Y_test.shape:
            raise ProbekitError(f"{path}: shape {P.shape}, the test labels are {Y_test.shape}; "
                                f"the scores of {name!r} are stale: rerun the stage that made them.")
        test_preds[name] = (P, predict_labels(P, problem_type, model_threshold(entry)))
    return compare_predictions(models, test_preds, Y_test, cfg, seed)


def merge_model(run_dir: str | Path, name: str, entry: dict, Y_test: np.ndarray, label_names: list[str],
                problem_type: str, n_rows: dict, cfg: ClassifySection, seed: int, run_name: str) -> Path:
    """Add (or replace) model `name` in ``<run>/metrics.json`` and recompute the comparison.

    Without a metrics.json yet (fine-tuning before classify), one is started holding only
    this model; classify keeps the entry when it writes the file later.
    """
    path = Path(run_dir) / METRICS_NAME
    if path.is_file():
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if metrics.get("labels") != list(label_names) or metrics.get("problem_type") != problem_type:
            raise ProbekitError(f"{path}: its labels/problem type differ from {name!r}'s; both must come from "
                                "the same [data] settings (rerun classify or the fine-tuning with the same config).")
        if {k: int(v) for k, v in (metrics.get("n_rows") or {}).items()} != n_rows:
            raise ProbekitError(f"{path}: rows per split {metrics.get('n_rows')} differ from {name!r}'s {n_rows}; "
                                "both must use the same [data] settings.")
    else:
        metrics = {"schema_version": METRICS_SCHEMA_VERSION, "run": run_name, "problem_type": problem_type,
                   "labels": list(label_names), "seed": seed, "features": None, "feature_sets": [],
                   "n_rows": n_rows, "models": {}, "comparisons": {}}
    metrics["models"][name] = entry
    metrics["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    metrics["comparisons"] = compare(metrics["models"], run_dir, np.asarray(Y_test), problem_type, cfg, seed)
    write_json_atomic(path, metrics)
    return path


def carry_finetuned(run_dir: str | Path, results: dict, test_preds: dict, Y_test: np.ndarray, problem_type: str,
                    fingerprints: dict | None) -> bool:
    """Keep the fine-tuned model (``probekit finetune``) in the metrics.json classify rewrites.

    Its entry and test scores are carried over only when they were made on the same rows
    (the dataset fingerprints match the feature cache's); otherwise they are left out, with
    a warning. Returns whether it was carried.
    """
    import logging

    path = Path(run_dir) / "finetuned" / "result.json"
    if not path.is_file():
        return False
    entry = json.loads(path.read_text(encoding="utf-8"))
    scores = scores_path(run_dir, "finetuned", "test")
    log = logging.getLogger(__name__)
    if fingerprints and entry.get("dataset_fingerprint") != fingerprints:
        log.warning("classify: leaving out the fine-tuned model in %s: it was trained on other data rows; "
                    "rerun make finetune", path.parent)
        return False
    P = np.load(scores, allow_pickle=False) if scores.is_file() else None
    if P is None or P.shape != np.shape(Y_test):
        log.warning("classify: leaving out the fine-tuned model: %s is missing or stale; rerun make finetune", scores)
        return False
    results["finetuned"] = entry
    test_preds["finetuned"] = (P, predict_labels(P, problem_type, model_threshold(entry)))
    return True
