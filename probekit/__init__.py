"""probekit: a frozen transformer encoder -> cached features -> classical ML, and what fine-tuning adds.

    import probekit
    cfg = probekit.load_config()            # the embedded demo; or a preset path
    probekit.extract(cfg); probekit.classify(cfg); probekit.report(cfg)
    run = probekit.load_run(cfg.run_dir); run.predict(["what a lovely surprise"])
    make_pipeline(probekit.FrozenEncoder(), LogisticRegression())

Names are loaded on first use (module ``__getattr__``), so ``import probekit`` imports no
torch, scikit-learn or pipeline stage: a laptop without the extract extra can import it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "load_config": "probekit.api",
    "extract": "probekit.api",
    "classify": "probekit.api",
    "report": "probekit.api",
    "finetune": "probekit.api",
    "load_run": "probekit.run",
    "Run": "probekit.run",
    "FrozenEncoder": "probekit.encoder",
    "Config": "probekit.core.config",
    "ProbekitError": "probekit.core.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'probekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
