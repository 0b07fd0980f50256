"""Typed run configuration: TOML presets in ``configs/`` plus ``--set`` overrides.

A preset has one table per stage (``[run]``, ``[data]``, ``[encoder]``, ``[classify]``,
``[report]``). Each table loads into a frozen dataclass below; a key that no dataclass
declares is an error that names the key and lists the valid ones. This module is
torch-free: ``classify`` and ``analysis`` import it on a laptop.

    cfg = load_config("configs/demo.toml", overrides=["classify.logreg.C=0.5"])

A section may hold sub-tables one level down: ``[classify.<model>]`` (a model's grid and
settings, collected into ``ClassifySection.model_tables``) and ``[search.grid]``; an
override reaches them as ``--set classify.logreg.C=0.5``.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probekit.core.errors import ConfigError
from probekit.core.sections import DataSection, EncoderSection, ReportSection, RunSection
from probekit.core.sections_classify import ClassifySection, SearchSection
from probekit.core.sections_common import PROJECT_ROOT
from probekit.core.sections_tools import BenchSection, FinetuneSection

SECTIONS = {
    "run": RunSection,
    "data": DataSection,
    "encoder": EncoderSection,
    "classify": ClassifySection,
    "report": ReportSection,
    "search": SearchSection,
    "bench": BenchSection,
    "finetune": FinetuneSection,
}


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    encoder: EncoderSection = field(default_factory=EncoderSection)
    classify: ClassifySection = field(default_factory=ClassifySection)
    report: ReportSection = field(default_factory=ReportSection)
    search: SearchSection = field(default_factory=SearchSection)
    bench: BenchSection = field(default_factory=BenchSection)
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    source: str = ""  # the preset file it came from
    # Run Python code shipped with a model (Hugging Face trust_remote_code). Only the
    # --trust-remote-code flag sets it: a preset or --set that tries is refused (load_config).
    trust_remote_code: bool = False

    @property
    def run_dir(self) -> Path:
        return Path(self.run.artifacts) / self.run.name

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists), for outputs and wandb.init(config=...)."""
        return json_ready(dataclasses.asdict(self))


def json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def _coerce(where: str, default: Any, value: Any) -> Any:
    """Check `value` against the type of the field's default (nanoGPT's configurator rule)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, tuple):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = (value,)  # one value for a list-valued key: a one-point grid
        ok = isinstance(value, (list, tuple))
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{where}={value!r} should be of type {type(default).__name__}.")
    return value


def _build_section(section: str, values: dict) -> Any:
    cls = SECTIONS[section]
    sub = getattr(cls, "SUBTABLES", "")  # the field that collects the [section.<name>] tables, if any
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != sub}
    defaults = cls()
    kwargs: dict = {sub: {}} if sub else {}
    for key, value in values.items():
        if sub and key not in fields and isinstance(value, dict):
            kwargs[sub][key] = value
            continue
        if key not in fields:
            hint = f"; a model's grid and settings go in its own table, e.g. [{section}.logreg] C = [0.1, 1.0] " \
                f"or --set {section}.logreg.C=0.5" if sub else ""
            raise ConfigError(f"[{section}] has no key {key!r}; valid keys: {', '.join(fields)}{hint}.")
        kwargs[key] = _coerce(f"[{section}] {key}", getattr(defaults, key), value)
    return cls(**kwargs)


def _check_finite(raw: dict, where: str = "") -> None:
    """Refuse nan and inf anywhere (TOML and --set accept them): no setting means them."""
    for key, value in raw.items():
        name = f"{where}.{key}" if where else key
        if isinstance(value, dict):
            _check_finite(value, name)
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            section, _, rest = name.partition(".")
            table, _, leaf = rest.rpartition(".")
            raise ConfigError(f"[{section}{'.' + table if table else ''}] {leaf}={value!r}: numbers must be finite "
                              "(no nan or inf).")


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.key=value`` or ``section.table.key=value`` (a sub-table such as
    ``[classify.logreg]``: the key is then ``table.key``); the value is TOML (as in the
    presets), a Python literal, or a bare string."""
    dotted = text.split("=", 1)[0].strip()
    if "=" not in text or not 2 <= len(dotted.split(".")) <= 3 or not all(dotted.split(".")):
        raise ConfigError(f"--set {text!r}: expected section.key=value or section.table.key=value, "
                          "e.g. --set classify.n_jobs=2 or --set classify.logreg.C=0.5.")
    raw = text.split("=", 1)[1]
    section, key = dotted.split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]  # false, 0.5, "x", [1, 2]
    except tomllib.TOMLDecodeError:
        try:
            value = ast.literal_eval(raw)  # False, None, (1, 2)
        except (ValueError, SyntaxError):
            value = raw  # a bare word such as --set encoder.device=cpu
    return section, key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = (),
                trust_remote_code: bool = False) -> Config:
    """Read a TOML preset and apply ``section.key=value`` overrides.

    ``trust_remote_code`` comes only from the caller (the command-line flag): a config file
    handed over with a model must not be able to make probekit run that model's code.

    Raises:
        ConfigError: unknown section or key, wrong type, or a value a section rejects.
        FileNotFoundError: the preset does not exist.
    """
    raw: dict = {}
    source = ""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            presets = ", ".join(sorted(q.name for q in (PROJECT_ROOT / "configs").glob("*.toml")))
            raise FileNotFoundError(f"config {p} does not exist; presets in configs/: {presets}.")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}.") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a text file (not UTF-8); a preset is TOML text, "
                              "e.g. configs/demo.toml.") from None
        except OSError as e:
            raise ConfigError(f"{p}: cannot be read ({e.strerror or e}); check its permissions.") from None
        source = str(p)
    for item in overrides:
        section, key, value = parse_override(item)
        table, _, leaf = key.rpartition(".")
        target = raw.setdefault(section, {})
        if table:  # one level down: [section.table]
            if not isinstance(target, dict) or not isinstance(target.get(table, {}), dict):
                raise ConfigError(f"--set {item!r}: [{section}] {table} is not a table.")
            target = target.setdefault(table, {})
        if isinstance(target, dict):
            target[leaf] = value
    where = f"{source or '--set'}: "
    try:
        tables = [("", raw)] + [(f"[{k}] ", v) for k, v in raw.items() if isinstance(v, dict)]
        for where_key, table in tables:
            if "trust_remote_code" in table:
                raise ConfigError(
                    f"{where_key}trust_remote_code cannot be set in a config file or with --set: it runs code "
                    "shipped with the model. Remove the key and pass --trust-remote-code on the command line.")
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown section(s) {unknown}; valid sections: {', '.join(SECTIONS)}.")
        for section, table in raw.items():
            if not isinstance(table, dict):
                raise ConfigError(f"[{section}] must be a table of key = value lines.")
        _check_finite(raw)
        built = {s: _build_section(s, raw.get(s, {})) for s in SECTIONS}
    except ConfigError as e:
        raise ConfigError(where + str(e)) from None
    return Config(**built, source=source, trust_remote_code=bool(trust_remote_code))
