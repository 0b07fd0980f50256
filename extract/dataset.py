"""What a loaded dataset is, and its error: shared by the loader and its checks.

``extract.data`` builds a :class:`Dataset`; ``extract.datacheck`` counts the issues that
``ISSUE_NOTES`` explains and raises :class:`DataError`. Both import this module and not
each other's, so the two have no import circle. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from probekit.core.errors import ProbekitError

OFFLINE_PRESETS = "demo (the default) and goemotions-local (make ... CONFIG=configs/goemotions-local.toml DATA=dir)"

# What the manifest's data_issues counts mean: kind -> how the run handled it.
ISSUE_NOTES = {
    "empty_text": "empty texts encoded as empty string",
    "whitespace_text": "whitespace-only texts encoded as they are (the encoder sees only its special tokens)",
    "non_string_text": "numeric texts converted to strings",
    "invisible_chars": "texts with zero-width or bidirectional control characters, kept as they are",
    "duplicate_row": "duplicate rows (same text and labels as an earlier row) kept",
    "conflicting_duplicate": "texts repeated with different labels, kept",
    "duplicate_id": "ids used by an earlier row of the split, kept",
    "repeated_label": "rows naming a label more than once, counted once",
    "no_label": "rows with no label (multi-label), kept as all-zero",
    "text_in_train": "texts that also occur in train",
}


class DataError(ProbekitError, ValueError):
    """The dataset does not fit the configuration: names the file or split, row and field."""


@dataclass
class Split:
    texts: list[str]
    ids: list[str]
    y: np.ndarray  # int64 (n,) single-label, uint8 (n, n_labels) multi-label


@dataclass
class Dataset:
    splits: dict[str, Split]
    label_names: list[str]
    problem_type: str
    fingerprints: dict[str, str]
    source: dict  # what the manifest records about where the data came from
    issues: dict = field(default_factory=dict)  # split -> {kind: count} (ISSUE_NOTES), for the manifest

    def issue_notes(self) -> list[str]:
        """One line per non-zero count, e.g. 'train: 3 empty texts encoded as empty string'."""
        return [f"{split}: {n} {ISSUE_NOTES[kind]}" for split, counts in self.issues.items()
                for kind, n in counts.items() if n]

    def manifest_issues(self) -> dict:
        """The manifest's ``data_issues``: every count (zeros too: those checks ran) and the notes."""
        return {"counts": self.issues, "notes": self.issue_notes()}
