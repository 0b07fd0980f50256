"""A task's labels derived from a dataset's own: ``[data] keep_rows``, ``label_groups``, ``label_groups_rest``.

``extract.data`` reads every split's source labels into a 0/1 matrix over the dataset's label
names, then calls :func:`derive` per split: the row filter first (``keep_rows = "single_label"``
keeps rows with exactly one source label), then the grouping (a new label is on when any of its
source labels is; single-label tasks keep only the first group listed that a row falls in).
The Ekman preset, for one:

    [data]
    keep_rows = "single_label"
    label_groups = { anger = ["anger", "annoyance", "disapproval"], disgust = ["disgust"], ... }

:func:`spec` is what the manifest records and the dataset fingerprint hashes, so a grouped
run never reuses an ungrouped cache. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probekit.core.config import DataSection
from probekit.stages.extract.dataset import DataError


def active(data: DataSection) -> bool:
    return bool(data.label_groups) or data.keep_rows != "all"


def spec(data: DataSection) -> dict:
    """The derivation as the manifest records it ({} when the dataset's labels are used as they are)."""
    if not active(data):
        return {}
    return {"keep_rows": data.keep_rows, "label_groups": {k: list(v) for k, v in data.label_groups.items()},
            "label_groups_rest": data.label_groups_rest}


@dataclass
class Grouping:
    """Source label columns -> new label columns."""

    names: list[str]  # the new label names, in order
    members: np.ndarray  # (n_source, n_new) 0/1: source label k belongs to new label g

    @classmethod
    def build(cls, data: DataSection, source: list[str]) -> Grouping:
        """Check the groups against the dataset's label names.

        Raises:
            DataError: a source name the dataset does not have, or (no rest group) a source
                label in no group.
        """
        groups, rest = data.label_groups, data.label_groups_rest
        if not groups:
            return cls(list(source), np.eye(len(source), dtype=np.uint8))
        index = {n: k for k, n in enumerate(source)}
        shown = ", ".join(source[:40]) + (" ..." if len(source) > 40 else "")
        for name, members in groups.items():
            unknown = [x for x in members if x not in index]
            if unknown:
                raise DataError(f"[data] label_groups: group {name!r} names {unknown}, not among the dataset's "
                                f"{len(source)} label names ({shown}); fix the spelling in data.label_groups.")
        listed = {x for members in groups.values() for x in members}
        unlisted = [n for n in source if n not in listed]
        if unlisted and not rest:
            raise DataError(f"[data] label_groups: source labels {unlisted} are in no group; list them in "
                            "data.label_groups, or set data.label_groups_rest = \"other\" (one group for all of "
                            "them) or \"drop\" (ignore them).")
        names = list(groups) + ([rest] if rest != "drop" and unlisted else [])
        members = np.zeros((len(source), len(names)), dtype=np.uint8)
        for g, name in enumerate(groups):
            members[[index[x] for x in groups[name]], g] = 1
        if len(names) > len(groups):
            members[[index[x] for x in unlisted], -1] = 1
        return cls(names, members)


def derive(data: DataSection, grouping: Grouping, Y: np.ndarray, single_label: bool) -> tuple[np.ndarray,
                                                                                              np.ndarray, dict]:
    """One split's source labels -> (the rows kept, as a boolean mask; their new 0/1 labels; counts).

    Counts: ``read`` rows, ``not_single_label`` (dropped by keep_rows), ``no_group`` (had labels,
    all of them in no group: dropped), ``kept``.
    """
    keep = np.ones(len(Y), dtype=bool)
    counts = {"read": len(Y)}
    n_source = Y.sum(axis=1)
    if data.keep_rows == "single_label":
        keep &= n_source == 1
        counts["not_single_label"] = int(np.count_nonzero(n_source != 1))
    G = (Y.astype(np.int64) @ grouping.members > 0).astype(np.uint8)
    if data.label_groups:
        lost = keep & (n_source > 0) & (G.sum(axis=1) == 0)
        counts["no_group"] = int(np.count_nonzero(lost))
        keep &= ~lost
    if single_label:  # the first group listed that the row falls in
        first = G.argmax(axis=1)
        G = np.where(G.any(axis=1, keepdims=True), np.eye(G.shape[1], dtype=np.uint8)[first], 0).astype(np.uint8)
    counts["kept"] = int(np.count_nonzero(keep))
    return keep, G[keep], counts


def check_positive(data: DataSection, names: list[str], problem_type: str) -> None:
    """``positive_label`` against the labels as loaded.

    Raises:
        DataError: the name is not a label, or the data is not two-label single-label.
    """
    want = data.positive_label
    if not want:
        return
    if problem_type != "single_label" or len(names) != 2:
        raise DataError(f"[data] positive_label={want!r} applies to two-label single-label data; this data has "
                        f"{len(names)} labels ({problem_type}); set data.positive_label = \"\".")
    if want not in names:
        raise DataError(f"[data] positive_label={want!r} is not among the labels {names}; name one of them, "
                        "or \"\" for the minority class of train.")


def summary(data: DataSection, n_source: int, names: list[str], counts: dict[str, dict]) -> str:
    """The log line: what was kept of each split and how the labels were derived."""
    parts = []
    if data.keep_rows != "all":
        kept = ", ".join(f"{s} {c['kept']} of {c['read']}" for s, c in counts.items())
        parts.append(f"keep_rows = {data.keep_rows}: {kept} rows kept")
    if data.label_groups:
        n_rest = n_source - sum(len(v) for v in data.label_groups.values())
        rest = f"; the {n_rest} labels in no group " + ("ignored" if data.label_groups_rest == "drop" else
                                                         f"-> {data.label_groups_rest!r}") if n_rest else ""
        parts.append(f"label_groups: {n_source} labels -> {len(names)} ({', '.join(names)}{rest})")
    return "; ".join(parts)
