"""Scoring blocks and the cross-model comparison of every model of a run.

Every model (the scikit-learn ones and ``finetuned``) is scored by the same functions:
:func:`split_block` makes a split's metrics.json block (fixed threshold, plus the tuned
one, plus the positive class of binary data), :func:`decision_entry` a model's decision and
both blocks, and :func:`compare_predictions` adds bootstrap intervals and paired comparisons
against the best model on validation (binary data: on the positive class's F1).
:func:`gather_finetuned` brings in the fine-tuned model from the files ``probekit finetune``
left in ``<run>/finetuned/`` (the stages meet only in files): its probabilities are scored here, like the others'.

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
from probekit.core.metrics import entry_positive, entry_threshold, positive_block, predict_labels, score
from probekit.core.runfolder import (
    FINETUNED_MODEL,
    FINETUNED_RESULT,
    FINETUNED_SCORED_SPLITS,
    finetuned_scores_name,
    scores_path,
    write_scores,
)
from probekit.stages.classify import bootstrap, crossfit
from probekit.stages.classify.registry import BASELINES, SIMPLICITY_ORDER
from probekit.stages.classify.select import Data, cross_fitted_score, positive_for, selection_metric, thresholds_for

logger = logging.getLogger(__name__)

METRICS_SCHEMA_VERSION = 2


def split_block(Y: np.ndarray, P: np.ndarray, problem_type: str, label_names: list[str], threshold: float,
                thresholds: np.ndarray | None, positive: tuple[int, float] | None = None) -> dict:
    """The metrics.json block of one split: fixed-threshold metrics, ``tuned`` ones inside.

    Binary data (`positive` = (positive column, its threshold tuned on validation)): the block
    gains ``positive`` (core.metrics.positive_block), and ``tuned`` is scored at that
    decision, with its confusion matrix; the outer block stays the argmax.
    """
    fixed = score(Y, P, problem_type, label_names, threshold)
    tuned = dict(fixed) if thresholds is None else score(Y, P, problem_type, label_names, thresholds)
    if problem_type == "single_label":
        fixed["confusion_matrix"] = confusion_matrix(np.asarray(Y).argmax(1), np.asarray(P).argmax(1),
                                                     labels=range(len(label_names))).tolist()
    if positive is None:
        return {**fixed, "tuned": tuned}
    k, t = positive
    Yhat = predict_labels(P, problem_type, t, k)
    tuned = score_decided(Y, P, Yhat, problem_type, label_names)
    tuned["confusion_matrix"] = confusion_matrix(np.asarray(Y).argmax(1), Yhat.argmax(1), labels=range(2)).tolist()
    return {**fixed, "tuned": tuned, "positive": positive_block(np.asarray(Y)[:, k], np.asarray(P)[:, k],
                                                                label_names[k], t)}


def score_decided(Y: np.ndarray, P: np.ndarray, Yhat: np.ndarray, problem_type: str, label_names: list[str]) -> dict:
    """core.metrics.score of given 0/1 predictions: for single-label data, a one-hot `Yhat`
    becomes the argmax of a matrix that is 1 where it predicts (AUCs are taken from `P`)."""
    m = score(Y, np.asarray(Yhat, dtype=np.float64), problem_type, label_names)
    aucs = score(Y, P, problem_type, label_names)
    return m | {k: aucs[k] for k in ("micro_auc", "macro_auc", "per_label_auc")}


def decision_entry(data: Data, cfg: ClassifySection, P: dict, thresholds: np.ndarray | None,
                   positive: tuple[int, float] | None) -> dict:
    """A model's metrics.json decision keys and its validation and test blocks.

    Returns:
        {"threshold", "thresholds", "positive" (binary: {label, index, threshold, rule}, else
        None), "validation", "test"}, from `P` = {split: probabilities}.
    """
    names = data.label_names
    return {
        "threshold": cfg.threshold,
        "thresholds": None if thresholds is None else dict(zip(names, map(float, thresholds))),
        "positive": None if positive is None else {"label": names[positive[0]], "index": int(positive[0]),
                                                   "threshold": float(positive[1]), "rule": cfg.binary_threshold},
        **{s: split_block(data.Y[s], P[s], data.problem_type, names, cfg.threshold, thresholds, positive)
           for s in ("validation", "test")},
    }


model_threshold = entry_threshold  # the decision threshold(s) of a metrics.json entry
model_positive = entry_positive


def predict_entry(P: np.ndarray, problem_type: str, entry: dict) -> np.ndarray:
    """The 0/1 predictions of a metrics.json entry's model from its probabilities, as classify decided."""
    return predict_labels(P, problem_type, model_threshold(entry), model_positive(entry))


def _tie_break(entry: dict) -> float:
    v = entry["validation"]
    pos = v.get("positive")
    return (pos.get("average_precision") if pos else v.get("macro_auc")) or 0.0


def best_model(models: dict, tie_rule: str = "best") -> str:
    """The best model on validation: selection score, ties by validation macro AUC (binary data:
    positive-class average precision); baselines only if alone. With `tie_rule` "one_se" (or
    "one_se_paired"), the simplest (classify.registry.SIMPLICITY_ORDER) of the models within one standard error
    (its ``selection.validation_score_se``) of the best."""
    return tied_models(models, tie_rule)[1]


def tied_models(models: dict, tie_rule: str = "best", boots: dict | None = None) -> tuple[list[str], str, dict]:
    """(the models tied with the best on validation, the winner, model -> the SE its gap was held to).

    See :func:`best_model`.

    Args:
        boots: "one_se_paired": model -> its selection score under the same validation resamples
            (select.selection_boots); a model without one is compared by the best's SE.
    """
    contenders = {n: r for n, r in models.items() if n not in BASELINES} or models
    score = {n: contenders[n]["selection"]["validation_score"] for n in contenders}
    best = max(contenders, key=lambda n: (score[n], _tie_break(contenders[n])))
    if tie_rule == "best":
        return [best], best, {}
    se = {n: contenders[best]["selection"].get("validation_score_se") or 0.0 for n in contenders}
    if tie_rule == "one_se_paired" and boots and best in boots:
        se |= {n: float(np.std(boots[best] - boots[n], ddof=1)) for n in contenders if n in boots}
    tied = [n for n in contenders if score[n] >= score[best] - se[n] - 1e-12]
    return tied, min(tied, key=lambda n: (crossfit.model_rank(n), -score[n], -_tie_break(contenders[n]))), se


def compare_predictions(models: dict, test_preds: dict, Y_test: np.ndarray, cfg: ClassifySection,
                        seed: int, selection_boots: dict | None = None) -> dict:
    """Bootstrap intervals for every model (written into its ``test.ci``) and P(best beats other).

    Binary data (entries with ``positive``): the predictions are the entry's positive-class
    decision, ``test.ci`` gains ``positive_f1`` and ``positive_average_precision``, and
    ``p_better`` compares positive-class F1.

    Args:
        test_preds: model -> (test probabilities, test 0/1 predictions). One set of resamples
            of the test rows is shared by every model, so the comparison is paired.
        selection_boots: model -> validation bootstrap scores, for the "one_se_paired" tie (tied_models).
    """
    tied, best, se = tied_models(models, cfg.tie_rule, selection_boots)
    positive = model_positive(models[best])
    out = {"best": best, "chosen_by": selection_metric(positive is not None), "n_bootstrap": cfg.n_bootstrap,
           "ci_level": cfg.ci_level, "p_better": {},
           # the tie across models: within one SE of the best model's score, the simplest wins
           "tie": {"rule": cfg.tie_rule, "order": list(SIMPLICITY_ORDER),
                   "tied": [{"model": n, "params": models[n].get("params"),
                             "validation_score": models[n]["selection"]["validation_score"],
                             "validation_score_se": models[n]["selection"].get("validation_score_se"),
                             "tie_se": se.get(n)} for n in tied], "winner": best}}
    if positive is not None:
        out["positive_label"] = models[best]["positive"]["label"]
    if cfg.n_bootstrap == 0:
        return out
    W = bootstrap.resample_weights(len(Y_test), cfg.n_bootstrap, seed)
    boots = {}
    for name, (P, Yhat) in test_preds.items():
        k = model_positive(models[name])
        if k is not None:  # the entry's own decision, whatever the caller predicted
            Yhat = predict_entry(P, "single_label", models[name])
        boots[name] = bootstrap.bootstrap_metrics(Y_test, P, Yhat, W, positive=k)
        models[name]["test"]["ci"] = {m: bootstrap.interval(v, cfg.ci_level) for m, v in boots[name].items()}
    key = "positive_f1" if positive is not None else "macro_f1"
    for name in boots:
        if name != best and key in boots[name]:
            diff = boots[best][key] - boots[name][key]
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
        test_preds[name] = (P, predict_entry(P, problem_type, entry))
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


def gather_finetuned(run_dir: str | Path, data: Data, cfg: ClassifySection, fingerprints: dict | None,
                     scores_to: str | Path | None = None, model: str = FINETUNED_MODEL,
                     seed: int = 0) -> tuple[dict, np.ndarray] | None:
    """A fine-tuned model's metrics.json entry and test probabilities, scored like classify's models.

    Reads ``<run>/<model>/`` (``finetuned/`` or ``finetuned-<name>/``: result.json and its
    validation/test probabilities). It is
    used only when it was made on the same rows as the feature cache (dataset fingerprints,
    labels, rows per split); otherwise it is left out with a warning. Thresholds are tuned
    on its validation probabilities as for every model; the probabilities are copied to
    ``<scores_to>/scores/<model>.<split>.npy`` beside the others' (``scores_to``: classify's
    staging folder, published with the rest; default the run folder).

    Returns:
        (entry, test probabilities), or None when there is no usable fine-tuned model.
    """
    folder = Path(run_dir) / model
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
        p = folder / finetuned_scores_name(split)
        P[split] = np.load(p, allow_pickle=False) if p.is_file() else None
        if P[split] is None or P[split].shape != data.Y[split].shape:
            why = f"{p} is missing or stale"
    if why is not None:
        logger.warning("classify: leaving out the fine-tuned model in %s: %s; rerun make finetune", folder, why)
        return None
    thr, pos = thresholds_for(P["validation"], data, cfg), positive_for(P["validation"], data, cfg)
    decision = decision_entry(data, cfg, P, thr, pos)
    blocks = {s: decision[s] for s in FINETUNED_SCORED_SPLITS}
    for s, p in P.items():
        write_scores(scores_to or run_dir, model, s, p)
    history = result["history"]
    metric = result.get("config", {}).get("metric", "macro_f1")
    entry = {
        "fit_seconds": result["fit_seconds"],
        "predict_seconds": result["predict_seconds"],
        **{k: decision[k] for k in ("threshold", "thresholds", "positive")},
        "feature_set": None,
        "input": "texts",
        "params": result["params"],
        "config": result["config"],
        **blocks,
        "selection": {"metric": f"validation {metric} per epoch (early stopping); scored like classify: "
                                f"{selection_metric(pos is not None)}",
                      "chosen": result["chosen"],
                      # cross-fitted like every classify model's, so the comparison is fair
                      **cross_fitted_score(P["validation"], data, cfg, seed),
                      "n_candidates": len(history), "seconds": result["fit_seconds"],
                      "grid": [{"epoch": h["epoch"], "validation_score": h["validation_metric"]} for h in history]},
        "history": history,
        "train_rows": result["train_rows"],
        "seconds_per_1000_train_examples": result["seconds_per_1000_train_examples"],
        # what it cost (result.json of older fine-tuned folders lacks them: None)
        **{k: result.get(k) for k in ("examples_per_s", "wall_minutes", "device", "dtype", "train_layers")},
        "checkpoint": model,  # its folder in the run
        "run_key": result["run_key"],
        "dataset_fingerprint": result["dataset_fingerprint"],
    }
    return entry, P["test"]
