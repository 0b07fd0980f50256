"""Tests for the bundled synthetic demo dataset (extract/demo/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import demo_data

SHIPPED = demo_data.DEFAULT_OUT
SPLIT_SIZES = {"train": 360, "validation": 120, "test": 120}
SHIPPED_FILES = [f"{s}.jsonl" for s in SPLIT_SIZES] + ["labels.txt"]


def _load(split: str) -> list[dict]:
    with open(SHIPPED / f"{split}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {s: _load(s) for s in SPLIT_SIZES}


@pytest.fixture(scope="module")
def labels() -> list[str]:
    return (SHIPPED / "labels.txt").read_text(encoding="utf-8").splitlines()


def test_regenerate_is_byte_identical(tmp_path: Path) -> None:
    demo_data.write(tmp_path)
    for name in SHIPPED_FILES:
        assert (tmp_path / name).read_bytes() == (SHIPPED / name).read_bytes(), name


def test_independent_of_hash_seed(tmp_path: Path) -> None:
    root = Path(demo_data.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(root))
    subprocess.run([sys.executable, "-m", "tests.demo_data", "--out", str(tmp_path)],
                   check=True, cwd=root, env=env, capture_output=True)
    for name in SHIPPED_FILES:
        assert (tmp_path / name).read_bytes() == (SHIPPED / name).read_bytes(), name


def test_generate_matches_shipped(splits: dict[str, list[dict]]) -> None:
    assert demo_data.generate() == splits


def test_labels_file(labels: list[str]) -> None:
    assert labels == ["anger", "fear", "joy", "love", "sadness", "surprise", "neutral"]


def test_sizes_and_schema(splits: dict[str, list[dict]], labels: list[str]) -> None:
    for split, n in SPLIT_SIZES.items():
        rows = splits[split]
        assert len(rows) == n
        for i, row in enumerate(rows, start=1):
            assert list(row) == ["id", "text", "labels"]
            assert row["id"] == f"{split}-{i:04d}"
            assert row["text"].strip() == row["text"] and row["text"]
            assert 1 <= len(row["labels"]) <= 2
            assert len(set(row["labels"])) == len(row["labels"])
            assert all(lab in labels for lab in row["labels"])


def test_every_label_at_least_8_per_split(splits: dict[str, list[dict]], labels: list[str]) -> None:
    for split, rows in splits.items():
        for lab in labels:
            count = sum(lab in row["labels"] for row in rows)
            assert count >= 8, (split, lab, count)


def test_no_duplicate_texts_across_splits(splits: dict[str, list[dict]]) -> None:
    texts = [row["text"] for rows in splits.values() for row in rows]
    assert len(texts) == len(set(texts))


def test_two_label_fraction(splits: dict[str, list[dict]]) -> None:
    for split, rows in splits.items():
        frac = sum(len(row["labels"]) == 2 for row in rows) / len(rows)
        assert 0.1 <= frac <= 0.35, (split, frac)


def test_neutral_is_exclusive(splits: dict[str, list[dict]]) -> None:
    for rows in splits.values():
        for row in rows:
            if "neutral" in row["labels"]:
                assert row["labels"] == ["neutral"], row
