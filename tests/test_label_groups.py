"""Labels derived from a dataset's own ([data] keep_rows, label_groups, label_groups_rest), positive_label,
and the truncation share in the extract line. Tiny fixtures: conftest's toy_data (multi-label, every
fifth row carries two labels) and the tiny random BERT."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from conftest import make_config, toy_overrides, write_jsonl
from test_cli import assert_one_line_error, probekit

from probekit.core.cache import feature_identity
from probekit.core.config import load_config
from probekit.core.errors import ConfigError
from probekit.core.runfolder import cache_key

pytest.importorskip("datasets")
from probekit.stages.extract.data import DataError, load  # noqa: E402

NAMES = ["joy", "sadness", "anger", "fear"]


def data_cfg(path, *overrides):
    return load_config(None, [f"data.path={str(path)!r}", "data.id_field='id'",
                              "data.label_names_file='labels.txt'", *overrides]).data


def source_rows(d, split="train") -> list[dict]:
    return [json.loads(line) for line in (d / f"{split}.jsonl").read_text().splitlines()]


def test_single_label_groups_first_listed_group_wins(toy_data):
    ds = load(data_cfg(toy_data, "data.problem_type='single_label'",
                       "data.label_groups={'sad_or_angry': ['sadness', 'anger'], 'joy': ['joy'], 'fear': ['fear']}"))
    assert ds.label_names == ["sad_or_angry", "joy", "fear"] and ds.problem_type == "single_label"
    rows = source_rows(toy_data)
    first = {"sadness": 0, "anger": 0, "joy": 1, "fear": 2}
    want = [min(first[x] for x in r["labels"]) for r in rows]  # the group listed first wins
    assert ds.splits["train"].y.tolist() == want and ds.splits["train"].y.dtype == np.int64
    assert rows[0]["labels"] == ["joy", "sadness"] and want[0] == 0  # joy + sadness -> sad_or_angry
    assert ds.splits["train"].ids == [r["id"] for r in rows]


def test_rest_group_gathers_every_unlisted_label(toy_data):
    ds = load(data_cfg(toy_data, "data.problem_type='single_label'", "data.label_groups={'joyful': ['joy']}",
                       "data.label_groups_rest='other'", "data.positive_label='joyful'"))
    assert ds.label_names == ["joyful", "other"]
    want = [0 if "joy" in r["labels"] else 1 for r in source_rows(toy_data)]
    assert ds.splits["train"].y.tolist() == want and 0 < sum(want) < len(want)
    assert ds.source["derived_labels"]["label_groups_rest"] == "other"


def test_keep_rows_single_label_drops_rows_with_several_labels_and_logs_it(toy_data, caplog):
    with caplog.at_level(logging.INFO):
        ds = load(data_cfg(toy_data, "data.keep_rows='single_label'"))
    rows = source_rows(toy_data)
    kept = [r for r in rows if len(r["labels"]) == 1]
    assert ds.problem_type == "single_label" and ds.label_names == NAMES  # auto -> single_label
    assert ds.splits["train"].ids == [r["id"] for r in kept]  # the file's ids, in order
    assert ds.splits["train"].y.tolist() == [NAMES.index(r["labels"][0]) for r in kept]
    counts = ds.source["derived_labels"]["rows"]["train"]
    assert counts == {"read": 48, "not_single_label": 10, "kept": 38}
    assert "keep_rows = single_label: train 38 of 48" in caplog.text


def test_multi_label_groups_take_the_union(toy_data):
    ds = load(data_cfg(toy_data, "data.problem_type='multi_label'",
                       "data.label_groups={'negative': ['sadness', 'anger', 'fear'], 'positive': ['joy']}"))
    Y = ds.splits["train"].y
    assert ds.label_names == ["negative", "positive"] and Y.dtype == np.uint8
    for r, row in zip(source_rows(toy_data), Y):
        assert row.tolist() == [int(any(x != "joy" for x in r["labels"])), int("joy" in r["labels"])]
    assert Y[0].tolist() == [1, 1]  # joy + sadness: both groups


def test_drop_ignores_unlisted_labels_and_counts_the_rows_left_without_one(toy_data, caplog):
    with caplog.at_level(logging.INFO):
        ds = load(data_cfg(toy_data, "data.problem_type='multi_label'", "data.label_groups={'joy': ['joy']}",
                           "data.label_groups_rest='drop'"))
    rows = source_rows(toy_data)
    with_joy = [r["id"] for r in rows if "joy" in r["labels"]]
    assert ds.splits["train"].ids == with_joy and ds.splits["train"].y.sum() == len(with_joy)
    dropped = len(rows) - len(with_joy)
    assert ds.source["derived_labels"]["rows"]["train"]["no_group"] == dropped
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "no group" in r.getMessage()]
    assert len(warned) == 1 and f"train {dropped}" in warned[0]


def test_grouping_is_in_the_fingerprint_and_cache_key(toy_data):
    same = "{" + ", ".join(f"'{n}': ['{n}']" for n in NAMES) + "}"  # one group per label: the same labels
    plain = load(data_cfg(toy_data, "data.problem_type='multi_label'"))
    grouped = load(data_cfg(toy_data, "data.problem_type='multi_label'", f"data.label_groups={same}"))
    assert grouped.label_names == plain.label_names
    np.testing.assert_array_equal(grouped.splits["train"].y, plain.splits["train"].y)
    assert grouped.fingerprints["train"] != plain.fingerprints["train"]
    enc = load_config().encoder
    keys = [cache_key(feature_identity(enc, "m", "r", "float32", ds)) for ds in (plain, grouped)]
    assert keys[0] != keys[1]
    again = load(data_cfg(toy_data, "data.problem_type='multi_label'", f"data.label_groups={same}"))
    assert again.fingerprints == grouped.fingerprints  # and stable


def test_positive_label_is_checked_against_the_labels_as_loaded(toy_data, tmp_path):
    with pytest.raises(DataError, match=r"positive_label='joy' applies to two-label single-label data"):
        load(data_cfg(toy_data, "data.keep_rows='single_label'", "data.positive_label='joy'"))
    d = tmp_path / "binary"
    d.mkdir()
    for split in ("train", "validation", "test"):
        write_jsonl(d / f"{split}.jsonl", [{"text": "good", "labels": "yes"}, {"text": "bad", "labels": "no"}])
    assert load(load_config(None, [f"data.path={str(d)!r}", "data.positive_label='yes'"]).data).label_names == [
        "no", "yes"]
    with pytest.raises(DataError, match=r"positive_label='maybe' is not among the labels \['no', 'yes'\]"):
        load(load_config(None, [f"data.path={str(d)!r}", "data.positive_label='maybe'"]).data)


CONFIG_ERRORS = [  # --set ... -> fragments of the one line (checked when the config loads, no data needed)
    (["data.label_groups={'a': ['joy'], 'b': ['sadness', 'joy']}"], "'joy' is in groups 'a' and 'b'"),
    (["data.label_groups={'a': []}"], "group 'a' is empty"),
    (["data.label_groups={'a': ['joy']}", "data.label_groups_rest='a'"], "is already a group"),
    (["data.label_groups={'a': 'joy'}"], "must be a list of source label names"),
    (["data.label_groups_rest='other'"], "needs label_groups"),
    (["data.keep_rows='one'"], "[data] keep_rows='one' is not one of"),
    (["data.label_groups={'a': ['joy']}", "data.label_groups_rest='other'", "data.positive_label='b'"],
     "positive_label='b' is not among the labels ['a', 'other']"),
]


@pytest.mark.parametrize(("sets", "fragment"), CONFIG_ERRORS, ids=[c[1][:30] for c in CONFIG_ERRORS])
def test_bad_groups_are_one_line_when_the_config_loads(sets, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(None, sets)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_bad_groups_stop_the_cli_with_one_line(tmp_path):
    args = ("--artifacts", str(tmp_path / "a"))
    r = probekit("config", *args, "--set", "data.label_groups={'a': ['joy'], 'b': ['joy']}")
    assert_one_line_error(r, "[data] label_groups", "'joy' is in groups 'a' and 'b'")
    dup = tmp_path / "dup.toml"
    dup.write_text('[data]\nlabel_groups = { a = ["joy"], a = ["sadness"] }\n')
    assert_one_line_error(probekit("config", "--config", str(dup), *args), "dup.toml: not valid TOML")


@pytest.mark.parametrize(("sets", "fragments"), [
    ("data.label_groups={'happy': ['joyy']}", ("[data] label_groups: group 'happy' names ['joyy']", "spelling")),
    ("data.label_groups={'happy': ['joy']}", ("source labels ['sadness', 'anger', 'fear'] are in no group",
                                              'label_groups_rest = "other"')),
])
def test_groups_that_do_not_fit_the_data_stop_extract_with_one_line(tmp_path, toy_data, sets, fragments):
    r = probekit("extract", "--artifacts", str(tmp_path / "a"), "--data", str(toy_data), "--set", "data.id_field='id'",
                 "--set", "data.label_names_file='labels.txt'", "--set", sets)
    assert_one_line_error(r, *fragments)


def test_extract_line_states_the_share_of_texts_cut(tmp_path, toy_data, tiny_encoder, caplog):
    pytest.importorskip("torch")
    from probekit.stages.extract.encode import run_extract

    # toy rows: 5 words (one label) or 7 (two labels); with [CLS] and [SEP], 7 or 9 tokens: 9 > 8 is cut
    cfg = make_config(tmp_path, *toy_overrides(toy_data, tiny_encoder), "encoder.max_length=8")
    with caplog.at_level(logging.INFO):
        run_extract(cfg)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("extract: 80 texts"))
    assert ("texts cut at max_length 8: train 20.8% (10/48), validation 25.0% (4/16), test 25.0% (4/16)"
            in line), line
    assert 'encoder.long_text = "window" or a larger encoder.max_length' in line
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_extract(cfg)  # reused: the same statement
    assert "texts cut at max_length 8: train 20.8%" in next(r.getMessage() for r in caplog.records
                                                            if "reusing" in r.getMessage())


def test_truncation_note_wording():
    from probekit.stages.extract.encode import truncation_note

    m = {"max_length": 128, "splits": {"train": 10, "test": 4}, "n_truncated": {"train": 0, "test": 0},
         "long_text": {"mode": "truncate"}}
    assert truncation_note(m) == "; no text cut at max_length 128"
    m["n_truncated"]["test"] = 1
    m["long_text"] = {"mode": "window"}
    assert truncation_note(m) == "; texts over max_length 128 read in windows: train 0.0% (0/10), test 25.0% (1/4)"
    assert truncation_note({}) == ""
