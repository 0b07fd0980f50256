"""Select, fit and score every model on cached features; write ``metrics.json``.

    probekit classify --config configs/demo.toml        (or: make classify)

Reads only ``<run>/features/`` and, when present, ``<run>/finetuned/`` (no torch, no
encoder). For every model in ``[classify] models``: each grid point is fitted on train and
scored on validation (thresholds cross-fitted over ``cv_folds`` folds), the best, or the simplest
within one SE of it, is kept (classify.select), its per-label thresholds come from all of
validation, it is refitted on train + validation when ``[classify] refit`` says so, and test is
scored once, with bootstrap intervals and a paired comparison against the best model.
The fine-tuned model (``probekit finetune``) is scored from its saved probabilities the
same way (classify.compare.gather_finetuned).

    <run>/metrics.json                  the contract the report and comparisons read
    <run>/scores/<model>.<split>.npy    float32 (n_rows, n_labels) probabilities (validation, test)
    <run>/models/<model>.skops|.json    the fitted estimator (skops) and what it was trained on
    <run>/classify.config.json          the resolved configuration
    <run>/classify.progress/            each finished model's files, entry, key and checksums (classify.checkpoint)

A run commits as a whole: models are fitted and scored into classify.progress/, and only when
all are done are the new models/ and scores/ swapped in and metrics.json written, naming the
sha256 of every model and score file (``files``), which every reader checks
(runfolder.verify_run_outputs). A run that fails at any point leaves the previous
metrics.json, models/ and scores/ as they were, and a full disk is one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from joblib import parallel_config

from probekit.core.cache_reader import read_cache
from probekit.core.config import ClassifySection, Config
from probekit.core.errors import ProbekitError, os_error
from probekit.core.runfolder import (
    CLASSIFY_CONFIG_NAME,
    METRICS_FILES_KEY,
    METRICS_NAME,
    SPLITS,
    features_dir,
    finetuned_variants,
    scores_path,
    write_json_atomic,
    write_scores,
)
from probekit.stages.classify import models, registry
from probekit.stages.classify.checkpoint import Progress
from probekit.stages.classify.compare import (
    METRICS_SCHEMA_VERSION,
    compare_predictions,
    decision_entry,
    gather_finetuned,
    predict_entry,
)
from probekit.stages.classify.persist import save_model
from probekit.stages.classify.select import Data, refit, select, selection_boots

logger = logging.getLogger(__name__)


def load_data(cfg: Config):
    """The cache, the feature sets to try, and the :class:`Data` the candidates read."""
    cache = read_cache(features_dir(cfg.run_dir))
    missing = [s for s in SPLITS if s not in cache.splits]
    if missing:
        raise ProbekitError(f"{cache.path}: no {missing} split; classify needs train, validation and test.")
    available = cache.poolings
    poolings = list(cfg.classify.features) or available
    unknown = [p for p in poolings if p not in available]
    if unknown:
        raise ProbekitError(f"[classify] features={unknown}: the cache at {cache.path} holds {available}; "
                            "choose among them or re-extract with those poolings.")
    X = {p: {s: cache.X(s, p) for s in SPLITS} for p in poolings}
    multi = cache.problem_type == "multi_label"
    y = {s: np.asarray(cache.y(s)) for s in SPLITS}
    if not multi and len(np.unique(y["train"])) < 2:
        raise ProbekitError(f"{cache.path}: the train split holds a single class; a classifier needs two or more.")
    data = Data(X=X, texts={s: cache.texts(s) for s in SPLITS}, y=y, Y={s: cache.Y(s) for s in SPLITS},
                label_names=cache.label_names, problem_type=cache.problem_type,
                positive_label=getattr(cfg.data, "positive_label", ""))
    return cache, poolings, data


@contextlib.contextmanager
def _backend(cfg: ClassifySection):
    """The joblib backend's name, with what it needs running; dask and ray come from their packages.

    dask: the Dask client already open in this process, else a client of the scheduler at
    ``DASK_SCHEDULER_ADDRESS`` (dask's own setting), else a local cluster started for this run.
    """
    name = cfg.joblib_backend
    client = None
    try:
        if name == "ray":
            from ray.util.joblib import register_ray

            register_ray()
        elif name == "dask":
            import distributed  # registers the "dask" joblib backend
    except ImportError:
        extra = {"ray": "ray", "dask": "'dask[distributed]'"}[name]
        raise ProbekitError(f"[classify] joblib_backend={name!r} needs: pip install {extra}") from None
    if name == "dask":
        try:
            distributed.get_client()
        except ValueError:  # no client yet
            client = distributed.Client(processes=False) if not os.environ.get("DASK_SCHEDULER_ADDRESS") \
                else distributed.Client()
            logger.info("classify: joblib on dask, scheduler %s", client.scheduler.address)
    try:
        yield name
    finally:
        if client is not None:
            client.close()


def run_classify(cfg: Config) -> Path:
    """Select, fit, score and save every configured model; return the path of metrics.json.

    Raises:
        ProbekitError: bad input; or a write that failed (full disk, read-only folder), as one
            line, with the run folder's previous metrics.json, models/ and scores/ unchanged.
    """
    try:
        return _run_classify(cfg)
    except OSError as e:
        kept = (f"{cfg.run_dir}'s metrics.json, models/ and scores/ are as they were, and the models finished "
                "so far are kept in classify.progress/ for the rerun")
        err = os_error(e, cfg.run_dir, kept)
        if err is None:
            raise
        raise err from None


def _run_classify(cfg: Config) -> Path:
    t0 = time.perf_counter()
    cache, poolings, data = load_data(cfg)
    run_dir, ccfg, names = cfg.run_dir, cfg.classify, cache.label_names
    results, test_preds = {}, {}
    # Models finished by an earlier run (interrupted or not) with the same settings are taken as
    # they are (classify/checkpoint.py): rerunning classify after finetune only scores the
    # fine-tuned model. The model list, n_jobs and the backend do not change a model.
    progress = Progress(run_dir, {"classify": {k: v for k, v in cfg.to_dict()["classify"].items()
                                               if k not in ("models", "n_jobs", "joblib_backend")},
                                  "cache_key": cache.manifest.get("cache_key"), "seed": cfg.run.seed,
                                  "poolings": poolings})
    stage = progress.dir  # every model's files go here first; published together at the end
    # loky (the default) is joblib's own default, so it is not forced: estimators that prefer
    # threads keep them (a forest's trees release the GIL; in loky processes the per-label
    # forests fitted in 92 s instead of 51 s on GoEmotions). Any other backend is forced.
    with _backend(ccfg) as backend, parallel_config(**({} if backend == "loky" else {"backend": backend}),
                                                    n_jobs=ccfg.n_jobs):
        for name in ccfg.models:
            if registry.spec(name).multi_label_only and not data.multi_label:
                logger.warning("classify: skipping %s: it is a multi-label strategy and this data is single-label",
                               name)
                continue
            entry = progress.done(name)
            if entry is not None:
                results[name] = entry
                P_test = np.load(scores_path(stage, name, "test"), allow_pickle=False)
                test_preds[name] = (P_test, predict_entry(P_test, data.problem_type, entry))
                continue
            sel = select(name, data, ccfg, cfg.run.seed, poolings)
            c, est = sel.candidate, sel.model
            refitted = {"on": "train", "n_rows": int(len(data.y["train"]))}
            # a baseline is not refitted: its constant scores would cross the thresholds tuned on the train-only
            # fit's (a prior's tuned threshold is that prior), and more rows teach a baseline nothing
            if ccfg.refit == "train+validation" and name not in registry.BASELINES:
                est, refit_s, n_fit = refit(sel, data, ccfg, cfg.run.seed)
                refitted = {"on": "train+validation", "n_rows": n_fit, "seconds": round(refit_s, 3),
                            "thresholds": "tuned on validation with the train-only fit, whose validation "
                                          "probabilities are the saved ones; test is scored by the refitted model"}
            t = time.perf_counter()
            # Validation was scored during selection (the thresholds were tuned on those very scores).
            P = {"validation": sel.P_val, "test": models.predict_scores(est, data.inputs(c, "test"), len(names))}
            predict_s = time.perf_counter() - t
            for s, p in P.items():
                write_scores(stage, name, s, p)
            thr = sel.thresholds
            entry = {
                "fit_seconds": round(sel.fit_seconds, 3),
                "predict_seconds": round(predict_s, 3),
                # threshold, thresholds, positive (binary data: the positive class and its tuned threshold),
                # and the validation and test blocks
                **decision_entry(data, ccfg, P, thr, sel.positive),
                "feature_set": c.feature_set,
                "input": c.input_kind,
                "params": c.params,
                "selection": {"metric": sel.metric, "chosen": c.describe(),
                              "validation_score": sel.validation_score, **sel.rule, "n_candidates": len(sel.grid),
                              "seconds": round(sel.seconds, 3), "grid": sel.grid},
                "refit": refitted,
            }
            test_preds[name] = (P["test"], predict_entry(P["test"], data.problem_type, entry))
            dim = data.X[c.feature_set]["train"].shape[1] if c.feature_set else None
            save_model(est, stage, name, {
                "model": name, "feature_set": c.feature_set, "input": c.input_kind, "hidden_size": dim,
                "model_id": cache.manifest.get("model_id"), "model_revision": cache.manifest.get("model_revision"),
                "max_length": cache.manifest.get("max_length"), "cache_key": cache.manifest.get("cache_key"),
                "label_names": names, "problem_type": data.problem_type, "params": c.params, "refit": refitted["on"],
                "threshold": ccfg.threshold, "thresholds": None if thr is None else [float(v) for v in thr],
                "positive": entry["positive"]})
            results[name] = entry
            progress.record(name, entry)
            tuned, pos = entry["test"]["tuned"], entry["test"].get("positive")
            if pos:  # binary data: the positive class at its threshold tuned on validation
                logger.info("classify: %-20s test %s F1 %.3f, precision %.3f, recall %.3f, AP %s at p >= %.3f "
                            "(%s; %d fits, %.1fs)", name, pos["label"], pos["f1"], pos["precision"], pos["recall"],
                            _fmt(pos["average_precision"]), pos["threshold"], _short(c.describe()), len(sel.grid),
                            sel.seconds)
            else:
                logger.info("classify: %-20s test macro-F1 %.3f, macro AUC %s (%s; %d fits, %.1fs)", name,
                            tuned["macro_f1"], _fmt(tuned["macro_auc"]), _short(c.describe()), len(sel.grid),
                            sel.seconds)

    for tuned, _ in finetuned_variants(run_dir):  # `probekit finetune` left finetuned/ or finetuned-<name>/
        finetuned = gather_finetuned(run_dir, data, ccfg, cache.manifest.get("dataset_fingerprint"), scores_to=stage,
                                     model=tuned, seed=cfg.run.seed)
        if finetuned is not None:
            entry, P_test = finetuned
            results[tuned] = entry
            test_preds[tuned] = (P_test, predict_entry(P_test, data.problem_type, entry))
            progress.add_files(tuned)
    boots = None  # the paired tie across models, from each model's saved validation scores (resumed ones too)
    if ccfg.tie_rule == "one_se_paired":
        boots = selection_boots({n: np.load(scores_path(stage, n, "validation"), allow_pickle=False)
                                 for n in results}, data, ccfg, cfg.run.seed)
    comparisons = compare_predictions(results, test_preds, data.Y["test"], ccfg, cfg.run.seed, boots)
    metrics = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "run": cfg.run.name,
        "problem_type": data.problem_type,
        "labels": names,
        "positive_label": comparisons.get("positive_label"),  # binary data's positive class, else None
        "seed": cfg.run.seed,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "features": {k: cache.manifest.get(k) for k in ("cache_key", "model_id", "model_revision", "pooling",
                                                         "max_length", "hidden_size")},
        "feature_sets": poolings,
        "n_rows": {s: int(len(data.texts[s])) for s in SPLITS},
        "models": results,
        "comparisons": comparisons,
    }
    out = run_dir / METRICS_NAME

    def write_metrics(files: dict[str, str]) -> None:  # last: metrics.json names every file it belongs with
        write_json_atomic(run_dir / CLASSIFY_CONFIG_NAME, cfg.to_dict())
        write_json_atomic(out, {**metrics, METRICS_FILES_KEY: files})

    # The progress records stay: a rerun with the same key refits nothing.
    progress.publish(list(results), write_metrics)
    logger.info("classify: %d models -> %s; best on validation: %s (%.1fs)", len(results), out,
                comparisons.get("best"), time.perf_counter() - t0)
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _short(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items() if v is not None)
