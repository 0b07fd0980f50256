"""Weights & Biases runs for every stage: offline by default, never a login prompt.

The mode is ``$WANDB_MODE`` when set, else ``[report] wandb_mode`` (default "offline"): an
offline run lands under ``<run>/wandb/offline-run-*/``, never contacts a server and never
asks for a login; upload later with ``wandb sync <run>/wandb/offline-run-*``. "disabled"
logs nothing. ``wandb`` is imported only inside :func:`start_run`.

Shared by every stage that logs (classify's search trials, the report's runs, the CLI's
extract and finetune runs); what each run logs lives with its stage
(``probekit.stages.analysis.wandb_log`` and ``wandb_evidence``).
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
from pathlib import Path

from probekit.core.config import Config
from probekit.core.errors import ProbekitError

logger = logging.getLogger(__name__)

MODES = ("offline", "online", "disabled")
_ALIASES = {"dryrun": "offline", "run": "online"}  # older spellings wandb still accepts


def resolve_mode(cfg: Config) -> str:
    """``$WANDB_MODE`` if set, else ``cfg.report.wandb_mode``."""
    env = os.environ.get("WANDB_MODE", "").strip()
    mode = _ALIASES.get(env, env) if env else cfg.report.wandb_mode
    if mode not in MODES:
        raise ProbekitError(f"environment variable WANDB_MODE={env!r} is not one of {', '.join(MODES)}; "
                            "unset it or set it to offline.")
    return mode


def import_wandb():
    """The wandb module, or one line naming the extra that installs it."""
    try:
        import wandb
    except ImportError:
        raise ProbekitError("W&B logging needs wandb: pip install -e '.[analysis]' (or pip install wandb), "
                            "or turn it off with --set report.wandb=False.") from None
    return wandb


def _check_login(wandb) -> None:
    """Online mode with no credentials would ask for an API key on the terminal: fail instead."""
    try:
        ok = wandb.login(prompt=False, verify=False)
    except TypeError:  # a wandb without `prompt` (before 0.22): let init handle it
        return
    if not ok:
        raise ProbekitError("W&B mode is online but no credentials are set: run 'wandb login' or set "
                            "WANDB_API_KEY, or log offline (--set report.wandb_mode=offline, the default).")


def start_run(cfg: Config, stage: str, manifest: dict | None = None, group: str | None = None,
              name: str | None = None, extra_config: dict | None = None):
    """``wandb.init`` for one stage of `cfg`'s run; None when the mode is "disabled"."""
    mode = "online" if os.environ.get("WANDB_SWEEP_ID") else resolve_mode(cfg)  # a sweep agent needs its server
    if mode == "disabled":
        logger.info("W&B disabled (mode=disabled); nothing logged")
        return None
    wandb = import_wandb()
    if mode == "online" and not os.environ.get("WANDB_SWEEP_ID") and wandb.run is None:
        _check_login(wandb)
    m = manifest or {}
    dataset = (m.get("dataset") or {}).get("path") or m.get("dataset_id") or cfg.data.path or cfg.run.name
    encoder = m.get("model_id") or cfg.encoder.model
    top = {"stage": stage, "encoder": encoder, "dataset": dataset, "pooling": m.get("pooling", cfg.encoder.pooling),
           "problem_type": m.get("problem_type")}
    tags = [stage, f"encoder:{encoder}"[:64], f"data:{Path(str(dataset)).name}"[:64], f"pooling:{top['pooling']}"]
    run = wandb.init(
        project=cfg.report.wandb_project, group=group or cfg.report.wandb_group or cfg.run.name,
        name=name or f"{cfg.run.name}-{stage}", job_type=stage, tags=tags, mode=mode,
        dir=str(cfg.run_dir),  # runs land under <run>/wandb/
        config={**cfg.to_dict(), **top, **(extra_config or {})},
        # create_new: never finish or reuse a run the caller may have open (e.g. in a notebook)
        reinit="create_new",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False),
    )
    return run


def safe(text) -> str:
    """A text for a W&B table cell: HTML-escaped, as in the report page."""
    return html.escape(str(text), quote=True)


@contextlib.contextmanager
def wandb_run(cfg: Config, stage: str, manifest: dict | None = None, **kwargs):
    """:func:`start_run` as a ``with`` block: yields the run, None when disabled. An exception
    inside finishes the run as failed (exit code 1) and propagates; after a clean block the
    caller returns ``finish_run(run)``."""
    run = start_run(cfg, stage, manifest, **kwargs)
    try:
        yield run
    except BaseException:
        if run is not None:
            run.finish(exit_code=1)
        raise


def finish_run(run) -> str:
    """Finish a W&B run; return its folder (offline: what `wandb sync` takes)."""
    run_dir = str(getattr(run, "sync_dir", "") or run.dir)
    run.finish()
    logger.info("W&B run %s written to %s", run.name, run_dir)
    return run_dir
