"""Weights & Biases: one run per stage (extract, classify, report, each search trial), offline by default.

The mode is ``$WANDB_MODE`` when set, else ``[report] wandb_mode`` (default "offline"): an
offline run lands under ``<run>/wandb/offline-run-*/``, never contacts a server and never
asks for a login; upload later with ``wandb sync <run>/wandb/offline-run-*``. "disabled"
logs nothing. ``wandb`` is imported only inside the logging functions.

Every run carries the resolved config (plus ``stage``, ``encoder``, ``dataset``, ``pooling``
at the top level), ``job_type`` = the stage, a group (``[report] wandb_group``, default
the run name) and tags, so the W&B UI can group and compare runs by encoder and setting.
Texts in W&B tables are HTML-escaped like everywhere else.

    log_extract(cfg, features_dir(run_dir))          # after `probekit extract`
    log_finetune(cfg, finetuned_dir(run_dir, name))   # after `probekit finetune`

The classify and report runs, with their tables and test evidence, are in
``analysis.wandb_evidence``; both use the runs started here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from probekit.core.config import Config
from probekit.core.tracking import finish_run, resolve_mode, wandb_run

logger = logging.getLogger(__name__)

def flatten_metrics(metrics: dict) -> dict[str, float]:
    """Every number of metrics.json as ``<split>/<model>/<metric>[/<label>]``.

    Intervals become ``.../ci/<metric>/lo`` and ``/hi``; timings ``time/<model>/<key>``;
    thresholds ``thresholds/<model>/<label>``; ``comparisons/p_better/<model>``. None and
    lists of records (selection grids, logged as tables) are skipped.
    """
    flat: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            flat[f"{prefix}/lo"], flat[f"{prefix}/hi"] = float(value[0]), float(value[1])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix] = float(value)

    for model, entry in metrics["models"].items():
        for key, value in entry.items():
            if key in ("validation", "test"):
                walk(f"{key}/{model}", {k: v for k, v in value.items() if k != "confusion_matrix"})
            elif key == "selection":
                walk(f"selection/{model}", {k: v for k, v in value.items() if k != "grid"})
            elif key.endswith("_seconds"):
                walk(f"time/{model}/{key}", value)
            elif key != "params":
                walk(f"{key}/{model}", value)
    walk("comparisons/p_better", metrics.get("comparisons", {}).get("p_better", {}))
    return flat


def log_extract(cfg: Config, cache_dir: str | Path) -> str | None:
    """The extract stage's run: rows, truncated texts and seconds per split, the feature size,
    with the manifest (checksums left out) in the run's config."""
    from probekit.core.cache_reader import read_cache

    if resolve_mode(cfg) == "disabled":
        return None
    cache = read_cache(cache_dir, verify=False)
    m = cache.manifest
    with wandb_run(cfg, "extract", m, extra_config={"manifest": {k: v for k, v in m.items() if k != "files"}}) as run:
        if run is None:
            return None
        payload = {f"rows/{s}": n for s, n in m.get("splits", {}).items()}
        payload |= {f"truncated/{s}": n for s, n in (m.get("n_truncated") or {}).items()}
        payload |= {f"seconds/{s}": t for s, t in (m.get("extract_seconds") or {}).items()}
        payload["hidden_size"] = m.get("hidden_size")
        run.log({k: v for k, v in payload.items() if isinstance(v, (int, float))})
    return finish_run(run)


def log_finetune(cfg: Config, finetuned: str | Path) -> str | None:
    """The fine-tuning stage's run, in the run's group: the training curves (train loss,
    validation loss, macro/micro F1 and AUC per epoch, against the epoch) from
    ``finetuned/result.json``, and the kept model's validation and test metrics when
    classify has already scored this very model (its metrics.json entry has the same run key)."""
    from probekit.core.runfolder import FINETUNED_RESULT, METRICS_NAME

    if resolve_mode(cfg) == "disabled":
        return None
    result = json.loads((Path(finetuned) / FINETUNED_RESULT).read_text(encoding="utf-8"))
    metrics_path = cfg.run_dir / METRICS_NAME
    scored = {}
    if metrics_path.is_file():
        scored = json.loads(metrics_path.read_text(encoding="utf-8"))["models"].get(Path(finetuned).name) or {}
        scored = scored if scored.get("run_key") == result.get("run_key") else {}
    with wandb_run(cfg, "finetune", extra_config={"finetuned": result["config"]}) as run:
        if run is None:
            return None
        run.define_metric("epoch")
        for prefix in ("train/*", "validation/*"):
            run.define_metric(prefix, step_metric="epoch")
        for h in result["history"]:
            row = {"epoch": h["epoch"], "train/loss": h["train_loss"], "train/lr": h["lr"],
                   "train/step": h["step"], "validation/loss": h["validation_loss"]}
            row |= {f"validation/{k}": h[f"validation_{k}"] for k in ("macro_f1", "micro_f1", "macro_auc", "micro_auc")
                    if h[f"validation_{k}"] is not None}
            run.log(row)
        for split in ("validation", "test"):
            for k, v in (scored.get(split) or {}).get("tuned", {}).items():
                if isinstance(v, (int, float)) and v is not None:
                    run.summary[f"finetuned/{split}/{k}"] = v
        run.summary["best_epoch"] = result["chosen"]["epoch"]
        run.summary["seconds_per_1000_train_examples"] = result["seconds_per_1000_train_examples"]
    return finish_run(run)
