"""Scoring blocks and the cross-model comparison of every model of a run.

Every model (the scikit-learn ones and ``finetuned``) is scored by the same functions:
:func:`split_block` makes a split's metrics.json block (fixed threshold, plus the tuned
one), and :func:`compare_predictions` adds bootstrap intervals and paired comparisons
against the best model on validation. :func:`gather_finetuned` brings in the fine-tuned
model from the files ``probekit finetune`` left in ``<run>/finetuned/`` (the stages meet
only in files): its probabilities are scored here, like the others'.

Torch-free: classify and the report import it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix

from probekit.core.config import ClassifySection
from probekit.core.errors import ProbekitError
from probekit.core.metrics import predict_labels, score
from probekit.core.runfolder import (
    FINETUNED_DIRNAME,
    FINETUNED_MODEL,
    FINETUNED_RESULT,
    FINETUNED_SCORED_SPLITS,
    finetuned_dir,
    finetuned_scores_path,
    scores_path,
    write_scores,
)
from probekit.stages.classify import bootstrap
from probekit.stages.classify.registry import BASELINES
from probekit.stages.classify.select import SELECTION_METRIC, Data, thresholds_for

logger = logging.getLogger(__name__)

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


def _finetuned_mismatch(result: dict, data: Data, fingerprints: dict | None) -> str | None:
    """Why the fine-tuned model was not made on the cache's rows, or None when it was."""
    n_rows = {s: int(len(data.texts[s])) for s in data.texts}
    if fingerprints and result.get("dataset_fingerprint") != fingerprints:
        return "it was trained on other data rows (dataset fingerprints differ)"
    if result.get("label_names") != list(data.label_names) or result.get("problem_type") != data.problem_type:
        return f"its labels {result.get('label_names')} ({result.get('problem_type')}) differ from the cache's"
    if {k: int(v) for k, v in (result.get("n_rows") or {}).items()} != n_rows:
        return f"its rows per split {result.get('n_rows')} differ from the cache's {n_rows}"
    return None


def gather_finetuned(run_dir: str | Path, data: Data, cfg: ClassifySection,
                     fingerprints: dict | None) -> tuple[dict, np.ndarray] | None:
    """The fine-tuned model's metrics.json entry and test probabilities, scored like classify's models.

    Reads ``<run>/finetuned/`` (result.json and its validation/test probabilities). It is
    used only when it was made on the same rows as the feature cache (dataset fingerprints,
    labels, rows per split); otherwise it is left out with a warning. Thresholds are tuned
    on its validation probabilities as for every model; the probabilities are copied to
    ``<run>/scores/finetuned.<split>.npy`` beside the others'.

    Returns:
        (entry, test probabilities), or None when there is no usable fine-tuned model.
    """
    folder = finetuned_dir(run_dir)
    path = folder / FINETUNED_RESULT
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    why = _finetuned_mismatch(result, data, fingerprints)
    if why is None and "history" not in result:
        why = "its result.json is from an older probekit"
    P = {}
    for split in FINETUNED_SCORED_SPLITS:
        if why is not None:
            break
        p = finetuned_scores_path(run_dir, split)
        P[split] = np.load(p, allow_pickle=False) if p.is_file() else None
        if P[split] is None or P[split].shape != data.Y[split].shape:
            why = f"{p} is missing or stale"
    if why is not None:
        logger.warning("classify: leaving out the fine-tuned model in %s: %s; rerun make finetune", folder, why)
        return None
    names, pt = data.label_names, data.problem_type
    thr = thresholds_for(P["validation"], data, cfg)
    blocks = {s: split_block(data.Y[s], P[s], pt, names, cfg.threshold, thr) for s in FINETUNED_SCORED_SPLITS}
    for s, p in P.items():
        write_scores(run_dir, FINETUNED_MODEL, s, p)
    history = result["history"]
    metric = result.get("config", {}).get("metric", "macro_f1")
    entry = {
        "fit_seconds": result["fit_seconds"],
        "predict_seconds": result["predict_seconds"],
        "threshold": cfg.threshold,
        "thresholds": None if thr is None else dict(zip(names, map(float, thr))),
        "feature_set": None,
        "input": "texts",
        "params": result["params"],
        "config": result["config"],
        **blocks,
        "selection": {"metric": f"validation {metric} per epoch (early stopping); scored like classify: "
                                f"{SELECTION_METRIC}",
                      "chosen": result["chosen"],
                      "validation_score": blocks["validation"]["tuned"]["macro_f1"],
                      "n_candidates": len(history), "seconds": result["fit_seconds"],
                      "grid": [{"epoch": h["epoch"], "validation_score": h["validation_metric"]} for h in history]},
        "history": history,
        "train_rows": result["train_rows"],
        "seconds_per_1000_train_examples": result["seconds_per_1000_train_examples"],
        "checkpoint": FINETUNED_DIRNAME,
        "run_key": result["run_key"],
        "dataset_fingerprint": result["dataset_fingerprint"],
    }
    return entry, P["test"]
