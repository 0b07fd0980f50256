"""A resolved configuration written back as a TOML preset: ``probekit config``.

    probekit config --config configs/goemotions-local.toml           # what users change
    probekit config --config configs/goemotions-local.toml --all     # every key, advanced ones too

Each section lists the keys users change first; the advanced ones (a section's
``ADVANCED``: speed, memory and fine-print knobs whose defaults suit most runs) are named
in one comment line unless ``--all`` prints them too. ``[classify.<model>]`` tables are
printed for the models the run fits. The output is itself a valid preset: loading it
gives the same configuration (tests/test_config.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from probekit.core.config import SECTIONS, Config


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def _key(k: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise (a label group named "not toxic")."""
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def _table(name: str, values: dict, advanced: tuple, defaults: dict, show_advanced: bool) -> list[str]:
    """One ``[name]`` table: users' keys, then the advanced ones that are set (all of them with --all)."""
    lines = [f"[{name}]"] + [f"{k} = {_value(v)}" for k, v in values.items() if k not in advanced]
    shown = [k for k in advanced if k in values and (show_advanced or values[k] != defaults.get(k))]
    hidden = [k for k in advanced if k in values and k not in shown]
    if shown:
        lines += ["# advanced"] + [f"{k} = {_value(values[k])}" for k in shown]
    if hidden:
        lines.append(f"# {len(hidden)} advanced keys at their defaults: {', '.join(hidden)} (probekit config --all)")
    return lines


def to_toml(cfg: Config, show_advanced: bool = False) -> str:
    """`cfg` as a TOML preset: every section, users' keys first, advanced keys on request."""
    out = [f"# probekit config{' --all' if show_advanced else ''} (from {cfg.source or 'the defaults'})"]
    for name in SECTIONS:
        section = getattr(cfg, name)
        sub = getattr(type(section), "SUBTABLES", "")
        values = {f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name != sub}
        defaults = {f.name: getattr(type(section)(), f.name) for f in dataclasses.fields(section)}
        out += [""] + _table(name, values, getattr(type(section), "ADVANCED", ()), defaults, show_advanced)
        for model, table in (getattr(section, sub) if sub else {}).items():
            if table and (show_advanced or model in getattr(section, "models", ())):
                out += [""] + _table(f"{name}.{model}", table, (), {}, True)
    return "\n".join(out) + "\n"
