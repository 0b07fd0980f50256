"""Search the classify settings on the cached features, with no server: each trial a W&B run.

    probekit search --config configs/demo.toml          (or: make search; or python -m probekit.stages.classify.search)

One model's classify grid (``[search] model``, default ``logreg``: its ``[classify.<model>]``
grid, e.g. C and class weight, with the keys of ``[search.grid]`` replaced), times feature
set (pooling), times threshold strategy. The trials are classify's own candidates
(classify.registry.candidates), fitted by classify.select. Every trial is fitted on train,
picked on validation (classify's ``validation_score``: macro-F1 at thresholds cross-fitted over
``[classify] cv_folds`` folds when "tune"); test is scored too and shown, never used to pick.
Writes ``<run>/search/search.json`` (the grid, every trial, the best), which the report shows;
each trial is one W&B run (offline by default) in the group ``<run>-search``, so the W&B UI
compares them (parallel coordinates over the grid's keys).

With a W&B server, ``configs/sweep.yaml`` runs the same trials as a W&B sweep: the agent
calls ``python -m probekit.stages.classify.search ... C=0.1 class_weight=balanced pooling=cls thresholds=tune``,
one trial per call (a sweep needs a server; this module alone does not).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from probekit.core.config import Config, SearchSection, load_config
from probekit.core.errors import ConfigError, ProbekitError
from probekit.core.metrics import positive_block, score
from probekit.core.runfolder import write_json_atomic
from probekit.core.sections_common import PROJECT_ROOT
from probekit.stages.classify import models, registry
from probekit.stages.classify.select import (
    cross_fitted_score,
    fit_scored,
    positive_for,
    selection_metric,
    thresholds_for,
)

logger = logging.getLogger(__name__)

SEARCH_DIRNAME, SEARCH_NAME = "search", "search.json"
TRIAL_AXES = ("pooling", "thresholds")  # the axes a trial adds to the model's grid
TEXTS_ONLY = "-"  # the pooling of a model that reads the texts alone


def search_path(cfg: Config) -> Path:
    return cfg.run_dir / SEARCH_DIRNAME / SEARCH_NAME


def trial_keys(model: str) -> tuple[str, ...]:
    """The parameters of one trial of `model`: its grid keys, pooling and thresholds."""
    return (*registry.axes(model), *TRIAL_AXES)


def _poolings(s: SearchSection, poolings: list[str]) -> list[str]:
    pool = list(s.pooling) or list(poolings)
    unknown = [p for p in pool if p not in poolings]
    if unknown:
        raise ConfigError(f"[search] pooling={unknown}: the cache holds {poolings}; choose among them.")
    return pool


def search_trials(cfg: Config, s: SearchSection, poolings: list[str]) -> tuple[dict[str, list], list[dict]]:
    """The grid's axes and its trials: classify's candidates of the model, times thresholds.

    Args:
        poolings: the feature sets the cache holds.
    """
    pool = _poolings(s, poolings)
    cands = registry.candidates(s.model, cfg.classify, pool, grid=s.grid)
    axes = registry.grid_of(s.model, cfg.classify.model_tables) | s.grid
    pools = [TEXTS_ONLY] if registry.spec(s.model).input_kind == registry.TEXTS else pool
    grid = {k: list(v) for k, v in axes.items()} | {"pooling": pools, "thresholds": list(s.thresholds)}
    trials = [{**c.params, "pooling": c.feature_set or TEXTS_ONLY, "thresholds": t}
              for c in cands for t in s.thresholds]
    return grid, trials


def subset(trials: list[dict], max_trials: int = 0, seed: int = 0) -> list[dict]:
    """A seeded random subset of `max_trials` trials (in grid order); 0 = all."""
    if 0 < max_trials < len(trials):
        keep = np.sort(np.random.default_rng(seed).choice(len(trials), size=max_trials, replace=False))
        trials = [trials[i] for i in keep]
    return trials


def run_trial(params: dict, model: str, data, cfg: Config, fitted: dict | None = None) -> dict:
    """Fit one grid point on train (as classify does); score it on validation and test.

    Args:
        fitted: a cache shared across trials: the threshold strategy does not change the fit,
            so trials that differ only in it reuse one fit's probabilities.
    """
    # models=(model,): a fusion model's parts are then fitted once and reused, as in classify
    # binary data: "tune" is classify's binary_threshold rule, "fixed" the fixed threshold
    binary_rule = cfg.classify.binary_threshold if params["thresholds"] == "tune" else "fixed"
    ccfg = dataclasses.replace(cfg.classify, thresholds=params["thresholds"], models=(model,),
                               binary_threshold=binary_rule)
    spec = registry.spec(model)
    feature_set = None if spec.input_kind == registry.TEXTS else params["pooling"]
    cand = registry.Candidate(model, {k: params[k] for k in registry.axes(model)}, feature_set)
    key = (feature_set, tuple(sorted(cand.params.items())))
    if fitted is not None and key in fitted:
        P, fit_s = fitted[key]
    else:
        f = fit_scored(cand, data, ccfg, cfg.run.seed)
        # float32, as classify saves them: validation is the very scores classify tunes on
        P = {"validation": f.P_val.astype(np.float32),
             "test": models.predict_scores(f.model, data.inputs(cand, "test"), len(data.label_names))}
        fit_s = f.fit_seconds
        if fitted is not None:
            fitted[key] = (P, fit_s)
    thr = thresholds_for(P["validation"], data, ccfg)
    thr = ccfg.threshold if thr is None else thr
    m = {s: score(data.Y[s], P[s], data.problem_type, data.label_names, thr) for s in P}
    out = {"params": dict(params), "fit_seconds": round(fit_s, 3)}
    for split, block in m.items():
        for k in ("macro_f1", "micro_f1", "macro_auc", "micro_auc"):
            out[f"{split}_{k}"] = block[k]
    out["per_label_f1"] = m["validation"]["per_label_f1"]
    # classify's selection score: thresholds cross-fitted over [classify] cv_folds folds of validation
    out["validation_score"] = cross_fitted_score(P["validation"], data, ccfg, cfg.run.seed)["validation_score"]
    pos = positive_for(P["validation"], data, ccfg)
    if pos is not None:  # binary data: the positive class at its threshold from validation, as classify scores it
        k, t = pos
        for split in P:
            b = positive_block(data.Y[split][:, k], P[split][:, k], data.label_names[k], t)
            out |= {f"{split}_positive_f1": b["f1"], f"{split}_average_precision": b["average_precision"]}
        out["positive_threshold"] = t
    return out


def _log_trial(cfg: Config, trial: dict, model: str, group: str, manifest: dict, name: str | None) -> str | None:
    from probekit.core.tracking import finish_run, wandb_run

    with wandb_run(cfg, "search", manifest, group=group, name=name,
                   extra_config={"search_model": model, **trial["params"]}) as run:
        if run is None:
            return None
        run.log({f"{split}/{key}": trial[f"{split}_{key}"] for split in ("validation", "test")
                 for key in ("macro_f1", "micro_f1", "macro_auc", "micro_auc") if trial[f"{split}_{key}"] is not None}
                | {"fit_seconds": trial["fit_seconds"]})
    return finish_run(run)


def load_data(cfg: Config):
    """classify's reader of the cache (imported here: classify.train pulls in skops, which
    imports torch when it is installed)."""
    from probekit.stages.classify.train import load_data as load

    return load(cfg)


def run_search(cfg: Config, section: SearchSection | None = None) -> Path:
    """Run every trial of the grid; write and return ``<run>/search/search.json``.

    Args:
        section: the search settings; default ``cfg.search`` (or the defaults of SearchSection).
    """
    t0 = time.perf_counter()
    s = section or cfg.search
    cache, poolings, data = load_data(cfg)
    grid, trials = search_trials(cfg, s, poolings)
    trials = subset(trials, s.max_trials, cfg.run.seed)
    group = s.wandb_group or f"{cfg.run.name}-search"
    out, fitted = [], {}
    for i, params in enumerate(trials):
        trial = {"trial": i, **run_trial(params, s.model, data, cfg, fitted)}
        if s.wandb and cfg.report.wandb:
            trial["wandb_run_dir"] = _log_trial(cfg, trial, s.model, group, cache.manifest,
                                                f"{cfg.run.name}-search-{i:03d}")
        logger.info("search: trial %d/%d %s: validation macro-F1 %.3f (%.1fs)", i + 1, len(trials),
                    ", ".join(f"{k}={v}" for k, v in params.items()), trial["validation_macro_f1"],
                    trial["fit_seconds"])
        out.append(trial)
    binary = bool(out) and "validation_positive_f1" in out[0]  # binary data: the positive class's F1
    tie = "validation_average_precision" if binary else "validation_macro_auc"
    best = max(out, key=lambda t: (t["validation_score"], t[tie] or -1.0))
    result = {"run": cfg.run.name, "model": s.model,
              "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "selection": f"validation_score: {selection_metric(binary)} (no tie rule: the best trial)",
              "grid": grid, "n_trials": len(out),
              "wandb_group": group, "best": best, "trials": out, "config": cfg.to_dict()}
    path = search_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    logger.info("search: %d trials of %s -> %s; best %s, validation macro-F1 %.3f (%.1fs)", len(out), s.model, path,
                ", ".join(f"{k}={v}" for k, v in best["params"].items()), best["validation_macro_f1"],
                time.perf_counter() - t0)
    return path


def parse_trial(items: list[str], model: str = "logreg") -> dict:
    """``C=0.1 class_weight=balanced pooling=cls thresholds=tune`` (a sweep agent's args) -> params."""
    params, keys = {}, trial_keys(model)
    for item in items:
        key, sep, raw = item.lstrip("-").partition("=")
        if not sep or key not in keys:
            raise ConfigError(f"trial parameter {item!r}: expected key=value with key one of {', '.join(keys)} "
                              f"(the trial parameters of {model}).")
        try:
            params[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[key] = raw
    return params


def run_one(cfg: Config, params: dict, section: SearchSection | None = None) -> dict:
    """One trial, as a W&B sweep agent runs it; the grid's first values fill missing parameters."""
    s = section or cfg.search
    cache, poolings, data = load_data(cfg)
    grid, _ = search_trials(cfg, s, poolings)
    full = {k: params.get(k, grid[k][0]) for k in trial_keys(s.model)}
    for key in registry.axes(s.model):  # the value rules of [classify.<model>], one line each
        registry.check_grid("trial", s.model, key, full[key])
    if full["pooling"] not in poolings and registry.spec(s.model).input_kind != registry.TEXTS:
        raise ConfigError(f"trial pooling={full['pooling']!r}: the cache holds {poolings}.")
    trial = {"trial": 0, **run_trial(full, s.model, data, cfg)}
    if cfg.report.wandb:
        trial["wandb_run_dir"] = _log_trial(cfg, trial, s.model, s.wandb_group or f"{cfg.run.name}-search",
                                            cache.manifest, None)
    logger.info("search: %s: validation macro-F1 %.3f", full, trial["validation_macro_f1"])
    return trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probekit.stages.classify.search",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="TOML preset (default: the embedded demo)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--data", help="data directory of a local-files preset (sets data.path)")
    parser.add_argument("--artifacts", help="output root (sets run.artifacts)")
    parser.add_argument("trial", nargs="*", help="one trial: C=... class_weight=... pooling=... thresholds=...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    overrides = list(args.overrides)
    overrides += [f"data.path={args.data!r}"] if args.data else []
    overrides += [f"run.artifacts={args.artifacts!r}"] if args.artifacts else []
    try:
        cfg = load_config(args.config or PROJECT_ROOT / "configs" / "demo.toml", overrides)
        run_one(cfg, parse_trial(args.trial, cfg.search.model)) if args.trial else run_search(cfg)
    except (ProbekitError, FileNotFoundError) as e:
        logger.error("error: %s", e)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
