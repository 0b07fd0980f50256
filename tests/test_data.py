from __future__ import annotations

import numpy as np
import pytest
from conftest import write_jsonl

from probekit.core.config import load_config

pytest.importorskip("datasets")
from probekit.stages.extract.data import DataError, load  # noqa: E402


def data_cfg(path, *overrides):
    return load_config(None, [f"data.path={str(path)!r}", *overrides]).data


def write_tsv(d, rows_by_split):
    d.mkdir(exist_ok=True)
    for split, rows in rows_by_split.items():
        (d / f"{split}.tsv").write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


GOEMO = {
    "train": [("I love it", "18", "a1"), ('he said "wow" and left', "26,7", "a2"), ("NA", "27", "a3")],
    "dev": [("meh", "27", "b1")],
    "test": [("so angry", "2,3", "c1"), ("thanks!", "15", "c2")],
}
GOEMO_ARGS = ("data.format='tsv'", "data.header=False", "data.column_names=['text','labels','id']",
              "data.splits={'train':'train','validation':'dev','test':'test'}", "data.id_field='id'",
              "data.label_format='ids_csv'", "data.label_names_file='labels.txt'")


@pytest.fixture
def goemo_dir(tmp_path):
    d = tmp_path / "goemo"
    write_tsv(d, GOEMO)
    (d / "labels.txt").write_text("\n".join(f"label{i}" for i in range(28)) + "\n")
    return d


def test_goemotions_tsv_layout(goemo_dir):
    ds = load(data_cfg(goemo_dir, *GOEMO_ARGS))
    assert ds.problem_type == "multi_label" and len(ds.label_names) == 28
    train = ds.splits["train"]
    assert train.texts == ["I love it", 'he said "wow" and left', "NA"]  # quotes and "NA" kept verbatim
    assert train.ids == ["a1", "a2", "a3"]
    assert train.y.dtype == np.uint8 and train.y.shape == (3, 28)
    assert np.flatnonzero(train.y[1]).tolist() == [7, 26]
    assert ds.splits["validation"].texts == ["meh"]


def test_multilabel_names_jsonl(toy_data):
    ds = load(data_cfg(toy_data, "data.label_names_file='labels.txt'", "data.id_field='id'"))
    assert ds.label_names == ["joy", "sadness", "anger", "fear"]
    assert ds.problem_type == "multi_label"
    y = ds.splits["train"].y
    assert y.shape == (48, 4) and set(y.sum(axis=1)) == {1, 2}
    assert y[0].tolist() == [1, 1, 0, 0]  # row 0 is labelled joy + sadness


def test_single_label_names_are_sorted_when_not_given(toy_single):
    ds = load(data_cfg(toy_single))
    assert ds.problem_type == "single_label"
    assert ds.label_names == ["anger", "fear", "joy", "sadness"]
    y = ds.splits["train"].y
    assert y.dtype == np.int64 and y.shape == (48,)
    assert y[:4].tolist() == [2, 3, 0, 1]  # joy, sadness, anger, fear
    assert ds.splits["train"].ids[:2] == ["train-0", "train-1"]  # row numbers when no id field


def test_csv_single_label_ids_and_binary(tmp_path):
    d = tmp_path / "csv"
    d.mkdir()
    for split in ("train", "validation", "test"):
        (d / f"{split}.csv").write_text('comment,toxic\n"you, sir, are great",0\nawful person,1\nnice,0\n')
    ds = load(data_cfg(d, "data.format='csv'", "data.text_field='comment'", "data.label_fields=['toxic']",
                       "data.label_names=['clean','toxic']"))
    assert ds.problem_type == "single_label" and ds.label_names == ["clean", "toxic"]
    assert ds.splits["test"].y.tolist() == [0, 1, 0]
    assert ds.splits["test"].texts[0] == "you, sir, are great"


def test_one_column_per_label(tmp_path):
    d = tmp_path / "cols"
    d.mkdir()
    for split in ("train", "validation", "test"):
        write_jsonl(d / f"{split}.jsonl",
                    [{"text": "a", "toxic": 1, "insult": 0}, {"text": "b", "toxic": 1, "insult": 1}])
    ds = load(data_cfg(d, "data.label_fields=['toxic','insult']"))
    assert ds.label_names == ["toxic", "insult"] and ds.problem_type == "multi_label"
    assert ds.splits["train"].y.tolist() == [[1, 0], [1, 1]]


def test_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    d = tmp_path / "pq"
    d.mkdir()
    for split in ("train", "validation", "test"):
        pd.DataFrame({"text": ["x", "y"], "label": [0, 2]}).to_parquet(d / f"{split}.parquet")
    ds = load(data_cfg(d, "data.format='parquet'", "data.label_fields=['label']"))
    assert ds.problem_type == "single_label" and ds.label_names == ["0", "1", "2"]


def test_max_rows_keeps_the_first_rows(toy_data):
    ds = load(data_cfg(toy_data, "data.label_names_file='labels.txt'", "data.max_rows=5"))
    assert [len(s.texts) for s in ds.splits.values()] == [5, 5, 5]


def test_fingerprint_follows_the_content(toy_data):
    cfg = data_cfg(toy_data, "data.label_names_file='labels.txt'")
    before = load(cfg).fingerprints
    assert load(cfg).fingerprints == before
    lines = (toy_data / "test.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace('"text": "', '"text": "changed ')
    (toy_data / "test.jsonl").write_text("\n".join(lines) + "\n")
    after = load(cfg).fingerprints
    assert after["train"] == before["train"] and after["test"] != before["test"]


# ---- bad input: one line naming the file or field, and the fix ---------------------------------

def test_missing_text_column(toy_data):
    with pytest.raises(DataError, match=r"train.jsonl: no column 'body'; it has \['id', 'text', 'labels'\]"):
        load(data_cfg(toy_data, "data.text_field='body'", "data.label_names_file='labels.txt'"))


def test_empty_split(toy_data):
    (toy_data / "test.jsonl").write_text("")
    with pytest.raises(DataError, match="test"):
        load(data_cfg(toy_data, "data.label_names_file='labels.txt'"))


def test_label_id_out_of_range(goemo_dir):
    write_tsv(goemo_dir, {"test": [("fine", "3,31", "z9")]})
    with pytest.raises(DataError, match=r"test.tsv, row 1, field 'labels': label id 31 is not among the 28 label"):
        load(data_cfg(goemo_dir, *GOEMO_ARGS))


def test_unknown_label_name(toy_data):
    write_jsonl(toy_data / "validation.jsonl", [{"id": "v", "text": "hm", "labels": ["joy", "boredom"]}])
    with pytest.raises(DataError, match=r"validation.jsonl, row 1, field 'labels': label 'boredom' is not among"):
        load(data_cfg(toy_data, "data.label_names_file='labels.txt'"))


def test_missing_split_file_names_it(toy_data):
    (toy_data / "validation.jsonl").unlink()
    with pytest.raises(DataError, match=r"validation.jsonl not found for split 'validation'"):
        load(data_cfg(toy_data, "data.label_names_file='labels.txt'"))


def test_missing_data_dir_says_how_to_give_it():
    with pytest.raises(DataError, match="DATA="):
        load(load_config(None, ["data.path=''"]).data)


def test_two_labels_in_single_label_data(toy_single):
    write_jsonl(toy_single / "test.jsonl", [{"text": "x", "labels": ["joy", "fear"]}])
    with pytest.raises(DataError, match="2 labels in a single_label dataset"):
        load(data_cfg(toy_single, "data.problem_type='single_label'",
                      "data.label_names=['anger','fear','joy','sadness']"))


def test_missing_text_value(toy_single):
    write_jsonl(toy_single / "test.jsonl", [{"text": "ok", "labels": "joy"}, {"text": None, "labels": "joy"}])
    with pytest.raises(DataError, match=r"test.jsonl, row 2, field 'text': the text is missing"):
        load(data_cfg(toy_single))


def test_unreachable_hub_names_the_offline_presets():
    with pytest.raises(DataError, match="Presets that work offline: demo"):
        load(load_config(None, ["data.source='hub'", "data.path='go_emotions'", "data.name='simplified'"]).data)


def test_hub_class_label_names_are_used():
    import datasets

    from probekit.stages.extract.data import _class_names

    assert _class_names(datasets.ClassLabel(names=["a", "b"])) == ["a", "b"]
    assert _class_names(datasets.List(datasets.ClassLabel(names=["x", "y", "z"]))) == ["x", "y", "z"]
    assert _class_names(datasets.Value("int64")) is None


def test_a_label_named_twice_in_the_names_file_is_refused(goemo_dir):
    (goemo_dir / "labels.txt").write_text("\n".join(f"label{i}" for i in range(27)) + "\nlabel3\n")
    with pytest.raises(DataError, match=r"labels.txt: names \['label3'\] appear twice"):
        load(data_cfg(goemo_dir, *GOEMO_ARGS))


def test_a_boolean_label_id_is_refused_not_read_as_class_1(tmp_path):
    d = tmp_path / "bools"
    d.mkdir()
    for split in ("train", "validation", "test"):
        write_jsonl(d / f"{split}.jsonl", [{"text": "fine", "labels": 0}, {"text": "bad", "labels": True}])
    with pytest.raises(DataError, match=r"row 2, field 'labels'.*boolean"):
        load(data_cfg(d, "data.label_format='ids'", "data.label_names=['no','yes']",
                      "data.problem_type='single_label'"))
