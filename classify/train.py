"""Train the classifiers on cached features and write ``metrics.json``.

    probekit classify --config configs/demo.toml        (or: make classify)

Reads only ``<run>/features/`` (no torch, no encoder). For every model in
``[classify] models``: fit on train, score validation and test, and write

    <run>/metrics.json                  the contract the report and comparisons read
    <run>/scores/<model>.<split>.npy    float32 (n_rows, n_labels) probabilities
    <run>/models/<model>.joblib         the fitted estimator
    <run>/classify.config.json          the resolved configuration
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np
from tqdm.auto import tqdm

from classify import models
from classify.metrics import score
from extract.cache import (
    METRICS_NAME,
    MODELS_DIRNAME,
    SCORES_DIRNAME,
    features_dir,
    read_cache,
    scores_path,
    write_json_atomic,
)
from extract.config import Config, ProbekitError

logger = logging.getLogger(__name__)

METRICS_SCHEMA_VERSION = 1


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    tmp.replace(path)


def run_classify(cfg: Config) -> Path:
    """Fit, score and save every configured model; return the path of metrics.json."""
    t0 = time.perf_counter()
    cache = read_cache(features_dir(cfg.run_dir))
    names, problem_type = cache.label_names, cache.problem_type
    for split in ("train", "validation", "test"):
        if split not in cache.splits:
            raise ProbekitError(f"{cache.path}: no '{split}' split; classify needs train, validation and test.")
    X = {s: np.asarray(cache.X(s)) for s in ("train", "validation", "test")}
    Y = {s: cache.Y(s) for s in ("train", "validation", "test")}
    y_train = np.asarray(cache.y("train"))
    if problem_type == "single_label" and len(np.unique(y_train)) < 2:
        raise ProbekitError(f"{cache.path}: the train split holds a single class; a classifier needs two or more.")

    run_dir = cfg.run_dir
    (run_dir / SCORES_DIRNAME).mkdir(parents=True, exist_ok=True)
    (run_dir / MODELS_DIRNAME).mkdir(parents=True, exist_ok=True)
    threshold = cfg.classify.threshold
    results = {}
    bar = tqdm(cfg.classify.models, desc="classify", unit="model", disable=not logger.isEnabledFor(logging.INFO))
    for name in bar:
        bar.set_postfix_str(name)
        est = models.build(name, cfg.classify, cfg.run.seed)
        t = time.perf_counter()
        est.fit(X["train"], y_train)
        fit_seconds = time.perf_counter() - t
        entry: dict = {"fit_seconds": round(fit_seconds, 3), "threshold": threshold}
        t = time.perf_counter()
        for split in ("validation", "test"):
            P = models.predict_scores(est, X[split], len(names))
            _save_npy(scores_path(run_dir, name, split), P)
            entry[split] = score(Y[split], P, problem_type, names, threshold)
        entry["predict_seconds"] = round(time.perf_counter() - t, 3)
        joblib.dump(est, run_dir / MODELS_DIRNAME / f"{name}.joblib")
        results[name] = entry
        logger.info("classify: %-14s test macro AUC %s, macro F1 %.3f (fit %.1fs)", name,
                    _fmt(entry["test"]["macro_auc"]), entry["test"]["macro_f1"], fit_seconds)

    metrics = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "run": cfg.run.name,
        "problem_type": problem_type,
        "labels": names,
        "seed": cfg.run.seed,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "features": {k: cache.manifest.get(k) for k in ("cache_key", "model_id", "model_revision", "pooling",
                                                         "max_length", "hidden_size")},
        "n_rows": {s: int(len(X[s])) for s in X},
        "models": results,
    }
    write_json_atomic(run_dir / "classify.config.json", cfg.to_dict())
    out = run_dir / METRICS_NAME
    write_json_atomic(out, metrics)
    logger.info("classify: %d models on %s -> %s (%.1fs)", len(results),
                "x".join(map(str, X["train"].shape)), out, time.perf_counter() - t0)
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
