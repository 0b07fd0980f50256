"""Messy input through the loaders, property-based (hypothesis): every case is either handled
and counted (``Dataset.issues`` -> the manifest's ``data_issues``) or refused with one line
naming the file, row and field.

Handled: empty and whitespace-only texts, arbitrary Unicode (emoji, RTL, zero-width and bidi
controls), a UTF-8 BOM, CRLF line ends, 100,000-character texts, duplicate rows, repeated
label ids in one row, rows without labels. Refused: None/NaN texts or labels, lone
surrogates (as JSON escapes or as bytes), bytes that are not UTF-8, a list where a text
belongs, a label id that is not a whole number, labels outside the label list.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from pathlib import Path

import pytest
from conftest import write_jsonl

pytest.importorskip("datasets")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from probekit.core.config import load_config  # noqa: E402
from probekit.stages.extract.data import DataError, load  # noqa: E402

LABELS = ["a", "b", "c", "d"]
SPLITS = ("train", "validation", "test")
LONG_TEXT = ("happy day " * 10_000)[:100_000]
SPECIAL_TEXTS = ["", " ", "\t \n", "\u200b", "\u202eevil\u202c", "\u2066rtl\u2069", "שלום עולם", "مرحبا", "😀🔥👍🏽",
                 "\ufeffbom inside", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "NaN", "null",
                 "e\u0301\u0301", "a\u00a0b", "line\u2028sep", "\"", "say \"hi\", twice", LONG_TEXT]
INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def texts(fmt: str):
    base = st.one_of(st.text(st.characters(codec="utf-8"), max_size=30), st.sampled_from(SPECIAL_TEXTS))
    if fmt == "tsv":  # tab-separated without quoting: a text cannot hold a tab or a line break
        return base.map(lambda t: re.sub(r"[\t\n\r]", " ", t))
    if fmt == "csv":  # csv quoting keeps \n; a lone \r inside a quoted field is a line end to pandas
        return base.map(lambda t: t.replace("\r", ""))
    return base


@st.composite
def messy_split(draw, fmt: str):
    """Rows (text, label ids), with some rows repeated verbatim."""
    min_labels = 0 if fmt == "jsonl" else 1  # csv/tsv "" is an empty label cell: refused, tested below
    row = st.tuples(texts(fmt), st.lists(st.integers(0, len(LABELS) - 1), min_size=min_labels, max_size=4))
    rows = draw(st.lists(row, min_size=1, max_size=8))
    for i in draw(st.lists(st.integers(0, len(rows) - 1), max_size=3)):
        rows.append(rows[i])  # duplicate rows
    return rows


def write_split(path: Path, rows, fmt: str, bom: bool, crlf: bool) -> None:
    end = "\r\n" if crlf else "\n"
    if fmt == "jsonl":
        body = "".join(json.dumps({"text": t, "labels": y}, ensure_ascii=False) + end for t, y in rows)
    elif fmt == "tsv":  # no quoting at all: a '"' in a text is just a character (csv.writer would refuse it)
        body = "".join(f"{t}\t{','.join(map(str, y))}{end}" for t, y in [("text", ["labels"]), *rows])
    else:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator=end)
        w.writerow(["text", "labels"])
        for t, y in rows:
            w.writerow([t, ",".join(map(str, y))])
        body = buf.getvalue()
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8"))


def config(d: Path, fmt: str):
    return load_config(None, [f"data.path={str(d)!r}", f"data.format={fmt!r}", f"data.label_names={LABELS!r}",
                              "data.problem_type='multi_label'",
                              f"data.label_format={'ids' if fmt == 'jsonl' else 'ids_csv'!r}"]).data


def expected_counts(rows, train_texts: set | None) -> dict:
    t = [r[0] for r in rows]
    seen: dict = {}
    dup = conflict = 0
    for text, y in rows:
        key = frozenset(y)
        if text in seen:
            dup += seen[text] == key
            conflict += seen[text] != key
        else:
            seen[text] = key
    out = {"empty_text": sum(x == "" for x in t), "whitespace_text": sum(x != "" and not x.strip() for x in t),
           "non_string_text": 0, "invisible_chars": sum(bool(INVISIBLE.search(x)) for x in t),
           "duplicate_row": dup, "conflicting_duplicate": conflict, "duplicate_id": 0,
           "no_label": sum(not y for _, y in rows), "repeated_label": sum(len(set(y)) < len(y) for _, y in rows)}
    if train_texts is not None:
        out["text_in_train"] = sum(x in train_texts for x in t)
    return out


def _check_loaded(fmt, data, bom, crlf):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for split in SPLITS:
            write_split(d / f"{split}.{fmt}", data[split], fmt, bom, crlf)
        ds = load(config(d, fmt))
    notes = "\n".join(ds.issue_notes())
    for split in SPLITS:
        rows = data[split]
        part = ds.splits[split]
        assert part.texts == [t for t, _ in rows]  # every text verbatim, BOM and CRLF gone
        assert part.y.shape == (len(rows), len(LABELS)) and part.y.dtype.name == "uint8"
        for (_, y), got in zip(rows, part.y):
            assert sorted(k for k in range(len(LABELS)) if got[k]) == sorted(set(y))
        want = expected_counts(rows, {t for t, _ in data["train"]} if split != "train" else None)
        assert ds.issues[split] == want
        if want["empty_text"]:
            assert f"{split}: {want['empty_text']} empty texts encoded as empty string" in notes
    assert ds.manifest_issues() == {"counts": ds.issues, "notes": ds.issue_notes()}


@SETTINGS
@given(fmt=st.sampled_from(["jsonl", "csv", "tsv"]), bom=st.booleans(), crlf=st.booleans(), data=st.data())
def test_messy_files_load_verbatim_and_every_issue_is_counted(fmt, bom, crlf, data):
    splits = {s: data.draw(messy_split(fmt), label=s) for s in SPLITS}
    _check_loaded(fmt, splits, bom, crlf)


def test_the_named_cases_are_counted(tmp_path):
    """The hand-picked cases, each once, with their counts spelled out."""
    rows = [("", [0]), ("  \t", [1]), ("", [0]), ("dup", [2, 2]), ("dup", [2]), ("dup", [3]), (LONG_TEXT, [0]),
            ("\u202eevil", []), ("😀 שלום", [1])]
    splits = {"train": rows, "validation": [("dup", [1])], "test": [("new", [0])]}
    for fmt in ("jsonl",):
        for split in SPLITS:
            write_split(tmp_path / f"{split}.{fmt}", splits[split], fmt, bom=True, crlf=True)
        ds = load(config(tmp_path, fmt))
    assert ds.splits["train"].texts[6] == LONG_TEXT
    assert ds.issues["train"] == {"empty_text": 2, "whitespace_text": 1, "non_string_text": 0, "invisible_chars": 1,
                                  "duplicate_row": 2, "conflicting_duplicate": 1, "duplicate_id": 0, "no_label": 1,
                                  "repeated_label": 1}
    assert ds.issues["validation"]["text_in_train"] == 1 and ds.issues["test"]["text_in_train"] == 0
    assert "train: 2 empty texts encoded as empty string" in ds.issue_notes()
    assert "train: 1 rows naming a label more than once, counted once" in ds.issue_notes()


def test_numeric_texts_and_duplicate_ids_are_counted(tmp_path):
    for split in SPLITS:
        write_jsonl(tmp_path / f"{split}.jsonl", [{"id": "x", "text": 42, "labels": [0]},
                                                 {"id": "x", "text": "ok", "labels": [1]}])
    data = load_config(None, [f"data.path={str(tmp_path)!r}", "data.id_field='id'", f"data.label_names={LABELS!r}",
                              "data.problem_type='multi_label'"]).data
    ds = load(data)
    assert ds.splits["train"].texts == ["42", "ok"]
    assert ds.issues["train"]["non_string_text"] == 1 and ds.issues["train"]["duplicate_id"] == 1


# --- refused: one line naming the file, the row and the field ------------------------------

POISON = {  # kind -> (raw jsonl line for the poisoned row, field the error must name)
    "null_text": (b'{"text": null, "labels": [0]}', "text"),
    "nan_text": (b'{"text": NaN, "labels": [0]}', "text"),
    "list_text": (b'{"text": ["a", "b"], "labels": [0]}', "text"),
    "null_label": (b'{"text": "x", "labels": null}', "labels"),
    "nan_label": (b'{"text": "x", "labels": NaN}', "labels"),
    "null_in_labels": (b'{"text": "x", "labels": [0, null]}', "labels"),
    "fractional_label": (b'{"text": "x", "labels": [1.5]}', "labels"),
    "label_out_of_range": (b'{"text": "x", "labels": [7]}', "labels"),
    "negative_label": (b'{"text": "x", "labels": [-1]}', "labels"),
    "lone_surrogate_escape": (b'{"text": "a\\ud800b", "labels": [0]}', "text"),
    "lone_surrogate_bytes": (b'{"text": "a\xed\xa0\x80b", "labels": [0]}', "text"),
    "not_utf8": (b'{"text": "caf\xe9", "labels": [0]}', "text"),
}


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(sorted(POISON)), split=st.sampled_from(SPLITS), n_rows=st.integers(1, 6),
       data=st.data())
def test_bad_cells_are_refused_with_file_row_and_field(kind, split, n_rows, data):
    row = data.draw(st.integers(0, n_rows - 1), label="row")
    line, field = POISON[kind]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for s in SPLITS:
            lines = [json.dumps({"text": f"fine {i}", "labels": [i % 4]}).encode() for i in range(n_rows)]
            if s == split:
                lines[row] = line
            (d / f"{s}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        with pytest.raises(DataError) as err:
            load(load_config(None, [f"data.path={str(d)!r}", f"data.label_names={LABELS!r}",
                                    "data.problem_type='multi_label'", "data.label_format='ids'"]).data)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"{split}.jsonl, row {row + 1}" in msg and f"field {field!r}" in msg, msg


@pytest.mark.parametrize(("kind", "body", "fragment"), [
    ("unknown label name", b'text,labels\nok,a\nbad,zz\n', "train.csv, row 2, field 'labels': label 'zz'"),
    ("empty label cell", b'text,labels\nok,a\nbad,\n', "train.csv, row 2, field 'labels'"),
    ("not utf-8", b'text,labels\nok,a\ncaf\xe9,b\n', "train.csv, row 2 (line 3), field 'text': not valid UTF-8"),
    ("label column not 0/1", None, "train.csv, row 1, field 'b'"),
])
def test_csv_refusals_name_file_row_and_field(tmp_path, kind, body, fragment):
    overrides = [f"data.path={str(tmp_path)!r}", "data.format='csv'"]
    if body is None:  # one 0/1 column per label
        body = b"text,a,b\nx,1,2\n"
        overrides += ["data.label_fields=['a','b']"]
    else:
        overrides += [f"data.label_names={LABELS!r}", "data.label_format='names'"]
    for s in SPLITS:
        (tmp_path / f"{s}.csv").write_bytes(body)
    with pytest.raises(DataError, match=re.escape(fragment)):
        load(load_config(None, overrides).data)
