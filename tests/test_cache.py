from __future__ import annotations

import json
import os

import numpy as np
import pytest

from probekit.core.cache import CacheWriter
from probekit.core.cache_reader import SCHEMA_VERSION, read_cache
from probekit.core.errors import CacheError
from probekit.core.runfolder import MANIFEST_NAME, cache_key


def write(path, n=5, dim=4, multi=True, manifest=None):
    rng = np.random.default_rng(0)
    with CacheWriter(path) as w:
        for split in ("train", "test"):
            X = rng.normal(size=(n, dim)).astype(np.float32)
            y = (rng.random((n, 3)) > 0.5).astype(np.uint8) if multi else rng.integers(0, 3, n).astype(np.int64)
            w.add_split(split, X, y, [f"text {i} é🙂" for i in range(n)], [f"{split}-{i}" for i in range(n)])
        w.commit({"label_names": ["a", "b", "c"], "problem_type": "multi_label" if multi else "single_label",
                  "hidden_size": dim, "dtype": "float32", "cache_key": "k1", **(manifest or {})})
    return path


def test_round_trip(tmp_path):
    c = read_cache(write(tmp_path / "features"))
    assert c.splits == ["train", "test"] and c.label_names == ["a", "b", "c"]
    X = c.X("train")
    assert isinstance(X, np.memmap) and X.shape == (5, 4) and X.dtype == np.float32
    assert c.y("test").dtype == np.uint8 and c.Y("test").shape == (5, 3)
    assert c.texts("train")[1] == "text 1 é🙂" and c.ids("test")[4] == "test-4"
    m = c.manifest
    assert m["schema_version"] == SCHEMA_VERSION == 3 and m["splits"] == {"train": 5, "test": 5}
    assert set(m["files"]) == {f"{s}.{k}" for s in ("train", "test") for k in ("X.npy", "y.npy", "texts.jsonl")}


def test_single_label_Y_is_one_hot(tmp_path):
    c = read_cache(write(tmp_path / "f", multi=False))
    y, Y = np.asarray(c.y("train")), c.Y("train")
    assert Y.shape == (5, 3) and (Y.argmax(1) == y).all() and (Y.sum(1) == 1).all()


def test_no_manifest_means_no_cache(tmp_path):
    d = write(tmp_path / "features")
    (d / MANIFEST_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="make extract"):
        read_cache(d)


def test_changed_file_is_not_trusted(tmp_path):
    d = write(tmp_path / "features")
    arr = np.load(d / "train.X.npy")
    arr[0, 0] += 1
    np.save(d / "train.X.npy", arr)
    with pytest.raises(CacheError, match="checksum differs"):
        read_cache(d)
    read_cache(d, verify=False)  # sizes still agree: only the checksum catches it


def test_truncated_file_is_not_trusted(tmp_path):
    d = write(tmp_path / "features")
    with open(d / "test.y.npy", "r+b") as f:
        f.truncate(10)
    with pytest.raises(CacheError, match="test.y.npy: missing or not the size"):
        read_cache(d, verify=False)


def test_other_schema_version_is_refused(tmp_path):
    d = write(tmp_path / "features")
    m = json.loads((d / MANIFEST_NAME).read_text())
    m["schema_version"] = 99
    (d / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(CacheError, match="schema_version=99"):
        read_cache(d)


def test_failed_write_leaves_the_old_cache_intact(tmp_path):
    d = write(tmp_path / "features")
    before = (d / MANIFEST_NAME).read_text()
    with pytest.raises(RuntimeError), CacheWriter(d) as w:
        w.add_split("train", np.zeros((2, 4), np.float32), np.zeros((2, 3), np.uint8), ["a", "b"], ["1", "2"])
        raise RuntimeError("killed half way")
    assert (d / MANIFEST_NAME).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]  # the staged folder is gone
    read_cache(d)


def test_commit_replaces_the_previous_cache(tmp_path):
    d = write(tmp_path / "features", n=5)
    write(d, n=7, manifest={"cache_key": "k2"})
    c = read_cache(d)
    assert c.manifest["cache_key"] == "k2" and c.X("train").shape == (7, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]


def test_leftovers_of_a_dead_run_are_removed(tmp_path):
    dead = tmp_path / "features.tmp-999999999"
    dead.mkdir()
    (dead / "train.X.npy").write_bytes(b"half")
    write(tmp_path / "features")
    assert not dead.exists()


def test_mismatched_rows_are_a_bug_not_a_cache(tmp_path):
    with pytest.raises(ValueError, match="X has 2 rows"), CacheWriter(tmp_path / "f") as w:
        w.add_split("train", np.zeros((2, 4), np.float32), np.zeros((3, 3), np.uint8), ["a"] * 3, ["1"] * 3)


def test_cache_key_is_stable_and_sensitive():
    a = {"model_id": "m", "max_length": 128, "data": {"train": "x"}}
    assert cache_key(a) == cache_key(dict(reversed(list(a.items()))))
    assert cache_key(a) != cache_key({**a, "max_length": 64})
    assert len(cache_key(a)) == 16 and os.sep not in cache_key(a)


def test_a_cache_without_a_poolings_table_holds_its_one_pooling(tmp_path):
    c = read_cache(write(tmp_path / "f", manifest={"pooling": "cls"}))
    assert c.poolings == ["cls"] and c.hidden_size() == 4
    np.testing.assert_array_equal(c.X("train", "cls"), c.X("train"))


def write_poolings(path, n=6):
    """A cache with a default pooling (dim 4) and a concatenated one (dim 8), streamed in blocks."""
    rng = np.random.default_rng(1)
    arrays = {}
    with CacheWriter(path) as w:
        for split in ("train", "test"):
            X, Xc = rng.normal(size=(n, 4)).astype(np.float32), rng.normal(size=(n, 8)).astype(np.float32)
            arrays[split] = (X, Xc)
            w.add_features(split, [X[:2], X[2:5], X[5:]], n, 4)
            w.add_features(split, iter([Xc[:4], Xc[4:]]), n, 8, pooling="cls_last2_concat")
            w.add_labels(split, np.zeros((n, 3), np.uint8), [f"t{i}" for i in range(n)], [str(i) for i in range(n)])
        w.commit({"label_names": ["a", "b", "c"], "problem_type": "multi_label", "hidden_size": 4,
                  "dtype": "float32", "cache_key": "k", "pooling": "mean",
                  "poolings": {"mean": {"hidden_size": 4}, "cls_last2_concat": {"hidden_size": 8}}})
    return path, arrays


def test_several_poolings_streamed_in_blocks(tmp_path):
    d, arrays = write_poolings(tmp_path / "f")
    c = read_cache(d)
    assert c.poolings == ["mean", "cls_last2_concat"] and c.hidden_size("cls_last2_concat") == 8
    for split, (X, Xc) in arrays.items():
        assert isinstance(c.X(split, "cls_last2_concat"), np.memmap)
        np.testing.assert_array_equal(c.X(split), X)
        np.testing.assert_array_equal(c.X(split, "mean"), X)
        np.testing.assert_array_equal(c.X(split, "cls_last2_concat"), Xc)
    assert set(c.manifest["files"]) >= {"train.X.npy", "train.X.cls_last2_concat.npy"}
    with pytest.raises(CacheError, match="no pooling 'cls'.*holds mean, cls_last2_concat.*extra_poolings"):
        c.X("train", "cls")


def test_a_damaged_extra_pooling_is_not_trusted(tmp_path):
    d, _ = write_poolings(tmp_path / "f")
    with open(d / "test.X.cls_last2_concat.npy", "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\0\0\0\1")
    with pytest.raises(CacheError, match="test.X.cls_last2_concat.npy: checksum differs"):
        read_cache(d)


def test_streamed_blocks_must_add_up(tmp_path):
    with pytest.raises(ValueError, match="5 rows written, 6 expected"), CacheWriter(tmp_path / "f") as w:
        w.add_features("train", [np.zeros((5, 4), np.float32)], 6, 4)
    with pytest.raises(ValueError, match="expected \\(rows, 4\\)"), CacheWriter(tmp_path / "f") as w:
        w.add_features("train", [np.zeros((5, 3), np.float32)], 5, 4)
