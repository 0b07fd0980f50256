"""The Python API behind ``import probekit``: each pipeline stage as a function, returning what it wrote.

    import probekit

    cfg = probekit.load_config()                       # the embedded demo (or a preset path)
    cache = probekit.extract(cfg)                      # FeatureCache: cache.X("test"), cache.label_names
    metrics = probekit.classify(cfg)                   # the metrics.json dict
    page = probekit.report(cfg)                        # Path of <run>/report/index.html
    run = probekit.load_run(cfg.run_dir)               # run.predict(["so happy"]), encoder kept loaded

Each function does what its ``probekit <stage>`` subcommand does (the same handler, under
the same run-folder lock, W&B logging included when ``[report] wandb`` is on), so a
notebook and the Makefile produce the same files. ``config`` is a Config, the path of a
TOML preset, or None for the embedded demo.
"""

from __future__ import annotations

import json
from pathlib import Path

from probekit.core import config as _config
from probekit.core.config import Config
from probekit.core.errors import os_error
from probekit.core.runfolder import METRICS_NAME, features_dir, finetuned_dir
from probekit.core.runlock import run_lock
from probekit.core.sections_common import PROJECT_ROOT

DEMO_PRESET = PROJECT_ROOT / "configs" / "demo.toml"


def _demo_data() -> Path:
    """The bundled demo data folder (package data of probekit.stages.extract), found without importing it."""
    from importlib.util import find_spec

    spec = find_spec("probekit.stages.extract")
    return Path(next(iter(spec.submodule_search_locations))) / "demo"


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = (), **kwargs) -> Config:
    """A resolved Config: a TOML preset with ``section.key=value`` overrides.

    Args:
        path: a preset (e.g. "configs/goemotions.toml"); None: the embedded demo (bundled data,
            packaged MiniLM, offline), whatever the working directory.
        overrides: e.g. ``["classify.logreg.C=[0.5]", "run.artifacts='/tmp/a'"]``.
        **kwargs: passed on to probekit.core.config.load_config (``trust_remote_code``).
    """
    if path is None:
        if not DEMO_PRESET.is_file():
            raise FileNotFoundError(f"{DEMO_PRESET} not found (the demo preset ships with the checkout); "
                                    "pass the path of a preset: probekit.load_config('my.toml').")
        return _config.load_config(DEMO_PRESET, [f"data.path={str(_demo_data())!r}", *overrides], **kwargs)
    return _config.load_config(path, overrides, **kwargs)


def _resolve(config: Config | str | Path | None) -> Config:
    return config if isinstance(config, Config) else load_config(config)


def _stage(command: str, cfg: Config) -> None:
    """Run the subcommand's handler (probekit.cli), holding the run folder's lock as the CLI does."""
    from probekit import cli

    try:
        with run_lock(cfg.run_dir, command):
            cli.run_stage(command, cfg)
    except OSError as e:  # a full disk, a read-only or forbidden folder: the CLI's one line, as a ProbekitError
        err = os_error(e, cfg.run_dir)
        if err is None:
            raise
        raise err from None


def extract(config: Config | str | Path | None = None):
    """Run the frozen encoder over every split (or reuse the matching cache); return the FeatureCache."""
    from probekit.core.cache_reader import read_cache

    cfg = _resolve(config)
    _stage("extract", cfg)
    return read_cache(features_dir(cfg.run_dir))


def classify(config: Config | str | Path | None = None) -> dict:
    """Fit, select and score every model on the cached features (and gather finetuned/); return metrics.json."""
    cfg = _resolve(config)
    _stage("classify", cfg)
    return json.loads((cfg.run_dir / METRICS_NAME).read_text(encoding="utf-8"))


def report(config: Config | str | Path | None = None) -> Path:
    """Write the report (plots, per-label tables, HTML page); return the path of its index.html."""
    from probekit.stages.analysis.report import HTML_NAME, REPORT_DIRNAME

    cfg = _resolve(config)
    _stage("report", cfg)
    return cfg.run_dir / REPORT_DIRNAME / HTML_NAME


def finetune(config: Config | str | Path | None = None) -> Path:
    """Fine-tune the encoder into ``<run>/finetuned/`` (``finetuned-<name>/`` with ``[finetune] name``;
    classify scores it next); return that folder."""
    cfg = _resolve(config)
    _stage("finetune", cfg)
    return finetuned_dir(cfg.run_dir, cfg.finetune.name)
