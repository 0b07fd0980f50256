"""Log a finished report to Weights & Biases, offline by default.

The mode is ``$WANDB_MODE`` when set, else ``[report] wandb_mode`` (default "offline"):
an offline run lands under ``<run>/wandb/offline-run-*/`` and never contacts a server or
asks for a login; upload it later with ``wandb sync <run>/wandb/offline-run-*``. Mode
"disabled" skips W&B entirely. ``wandb`` is imported only inside :func:`log_report`.

    log_report(cfg, metrics, images, per_label_rows, run_dir / "report" / "index.html")
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from extract.config import Config, ProbekitError

logger = logging.getLogger(__name__)

MODES = ("offline", "online", "disabled")
_ALIASES = {"dryrun": "offline", "run": "online"}  # older spellings wandb still accepts


def resolve_mode(cfg: Config) -> str:
    """``$WANDB_MODE`` if set, else ``cfg.report.wandb_mode``."""
    env = os.environ.get("WANDB_MODE", "").strip()
    mode = _ALIASES.get(env, env) if env else cfg.report.wandb_mode
    if mode not in MODES:
        raise ProbekitError(
            f"environment variable WANDB_MODE={env!r} is not one of {', '.join(MODES)}; "
            "unset it or set it to offline."
        )
    return mode


def flatten_metrics(metrics: dict) -> dict[str, float]:
    """Every numeric value of metrics.json as ``<split>/<model>/<metric>[/<label>]`` (None skipped).

    Timings become ``time/<model>/fit_seconds``.
    """
    flat: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix] = float(value)

    for model, entry in metrics["models"].items():
        for key, value in entry.items():
            if isinstance(value, dict):  # a split: validation, test
                walk(f"{key}/{model}", value)
            else:
                walk(f"time/{model}/{key}" if key.endswith("_seconds") else f"{model}/{key}", value)
    return flat


def log_report(
    cfg: Config, metrics: dict, images: dict[str, Path], per_label_rows: list[dict], report_html: Path
) -> str | None:
    """Log metrics, the per-label AUC table, the figures and the HTML page as one W&B run.

    Args:
        cfg: the run's config; ``cfg.report`` names the project, group and mode.
        metrics: the parsed metrics.json.
        images: figure name -> PNG path.
        per_label_rows: rows {label, support, auc: {model: float | None}, ...} from the report.
        report_html: the report's index.html, logged as an artifact of type "report".

    Returns:
        The W&B run folder (for offline runs, the folder to pass to ``wandb sync``), or None
        when the mode is "disabled".
    """
    mode = resolve_mode(cfg)
    if mode == "disabled":
        logger.info("W&B disabled (mode=disabled); nothing logged")
        return None
    try:
        import wandb
    except ImportError:
        raise ImportError(
            "W&B logging needs the wandb package: pip install wandb, or --set report.wandb=false."
        ) from None

    models = list(metrics["models"])
    table = wandb.Table(
        columns=["label", "support"] + [f"auc_{m}" for m in models],
        data=[[r["label"], int(r["support"])] + [r["auc"].get(m) for m in models] for r in per_label_rows],
        allow_mixed_types=True,  # an undefined AUC is None next to floats
    )
    run = wandb.init(
        project=cfg.report.wandb_project,
        group=cfg.report.wandb_group or cfg.run.name,
        name=f"{cfg.run.name}-report",
        job_type="report",
        dir=str(cfg.run_dir),  # the run lands under <run>/wandb/
        config=cfg.to_dict(),
        mode=mode,
        # create_new: never finish or reuse a run the caller may have open (e.g. in a notebook)
        reinit="create_new",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False),
    )
    try:
        payload: dict = dict(flatten_metrics(metrics))
        payload["per_label_auc"] = table
        for key, path in images.items():
            payload[f"images/{key}"] = wandb.Image(str(path), caption=key)
        run.log(payload)
        artifact = wandb.Artifact(name=f"{cfg.run.name}-report", type="report",
                                  metadata={"run": cfg.run.name, "models": models})
        artifact.add_file(str(report_html), name=Path(report_html).name)
        run.log_artifact(artifact)
        run_dir = run.sync_dir
    finally:
        run.finish()
    logger.info("W&B %s run written to %s", mode, run_dir)
    return run_dir
