"""Messy input through the extraction path (the tiny random BERT), property-based; an
out-of-memory error halves the token budget and carries on; trust_remote_code only from the
command-line flag."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from test_hardening_data import LABELS, expected_counts, messy_split, texts, write_split  # noqa: E402

from probekit.cli import main  # noqa: E402
from probekit.core.cache_reader import read_cache  # noqa: E402
from probekit.core.config import load_config  # noqa: E402
from probekit.core.errors import ConfigError, ProbekitError  # noqa: E402
from probekit.core.pooling import parse_pooling  # noqa: E402
from probekit.stages.extract.encode import run_extract  # noqa: E402
from probekit.stages.extract.engine.extractor import Extractor  # noqa: E402
from probekit.stages.extract.engine.loading import load_encoder  # noqa: E402

MAX_LENGTH = 16


@pytest.fixture(scope="module")
def tiny(_tiny_encoder_dir):
    enc = load_config(None, [f"encoder.max_length={MAX_LENGTH}"]).encoder
    return load_encoder(enc, str(_tiny_encoder_dir), True, "cpu")


def _extractor(tiny, max_tokens: int = 3 * MAX_LENGTH, **kw) -> Extractor:
    tokenizer, model = tiny
    return Extractor(tokenizer, model, "cpu", [parse_pooling("cls"), parse_pooling("mean")], max_length=MAX_LENGTH,
                     max_tokens=max_tokens, **kw)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(texts("jsonl"), min_size=1, max_size=8), long_text=st.sampled_from(["truncate", "window"]))
def test_any_text_gets_finite_features_independent_of_its_batch(tiny, batch, long_text):
    if long_text == "window":  # 100,000 characters make ~2,000 windows: truncate mode takes that one
        batch = [t[:2000] for t in batch]
    ex = _extractor(tiny, long_text=long_text, stride=4)
    arrays, stats = ex.encode(batch)
    tokenizer = tiny[0]
    n_long = sum(len(tokenizer(t)["input_ids"]) > MAX_LENGTH for t in batch)
    assert stats["n_texts"] == len(batch) and stats["n_truncated"] == n_long
    for name, X in arrays.items():
        assert X.shape == (len(batch), 32) and X.dtype == np.float32 and np.isfinite(X).all()
        for i, t in enumerate(batch):  # each text alone gives the same vector: order kept, padding masked
            alone = ex.encode([t])[0][name][0]
            np.testing.assert_allclose(X[i], alone, atol=2e-5, err_msg=f"{name} of {t[:40]!r}")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), bom=st.booleans(), crlf=st.booleans())
def test_messy_dataset_extracts_and_the_manifest_counts_every_issue(_tiny_encoder_dir, data, bom, crlf):
    splits = {s: data.draw(messy_split("jsonl"), label=s) for s in ("train", "validation", "test")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir()
        for split, rows in splits.items():
            write_split(tmp / "data" / f"{split}.jsonl", rows, "jsonl", bom, crlf)
        cfg = make_config(tmp, f"data.path={str(tmp / 'data')!r}", f"data.label_names={LABELS!r}",
                          "data.problem_type='multi_label'", "data.label_format='ids'",
                          f"encoder.model={str(_tiny_encoder_dir)!r}", f"encoder.max_length={MAX_LENGTH}",
                          "encoder.shard_rows=4", "encoder.max_batch_tokens=48", "encoder.dtype='float32'")
        cache = read_cache(run_extract(cfg))
        issues = cache.manifest["data_issues"]
        for split, rows in splits.items():
            want = expected_counts(rows, {t for t, _ in splits["train"]} if split != "train" else None)
            assert issues["counts"][split] == want
            assert cache.texts(split) == [t for t, _ in rows]  # the cache keeps every text verbatim
            X = np.asarray(cache.X(split))
            assert np.isfinite(X).all() and X.shape == (len(rows), 32)
            first = {}
            for i, (t, _) in enumerate(rows):  # equal texts, equal features
                np.testing.assert_allclose(X[i], X[first.setdefault(t, i)], atol=2e-5)
        assert all(": " in note for note in issues["notes"])


def test_the_manifest_says_how_many_empty_texts(tmp_path, _tiny_encoder_dir):
    d = tmp_path / "data"
    d.mkdir()
    for split in ("train", "validation", "test"):
        write_split(d / f"{split}.jsonl", [("", [0]), ("", [1]), ("   ", [2]), ("fine", [3]), ("", [])], "jsonl",
                    bom=False, crlf=False)
    cfg = make_config(tmp_path, f"data.path={str(d)!r}", f"data.label_names={LABELS!r}",
                      "data.problem_type='multi_label'", f"encoder.model={str(_tiny_encoder_dir)!r}",
                      f"encoder.max_length={MAX_LENGTH}")
    manifest = read_cache(run_extract(cfg)).manifest
    assert "train: 3 empty texts encoded as empty string" in manifest["data_issues"]["notes"]
    assert manifest["data_issues"]["counts"]["test"]["whitespace_text"] == 1


# --- out of memory ---------------------------------------------------------------------------


def _oom_once(monkeypatch, above_tokens: int) -> list:
    """The model's forward raises torch.OutOfMemoryError once, on the first batch above `above_tokens`."""
    from transformers import BertModel

    forward, raised = BertModel.forward, []

    def flaky(self, input_ids=None, **kw):
        if not raised and input_ids.numel() > above_tokens:
            raised.append(tuple(input_ids.shape))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")
        return forward(self, input_ids=input_ids, **kw)

    monkeypatch.setattr(BertModel, "forward", flaky)
    return raised


def _toy_cfg(tmp_path, toy_data, tiny_encoder, *more):
    from conftest import toy_overrides

    return make_config(tmp_path, *toy_overrides(toy_data, tiny_encoder), "encoder.max_batch_tokens=64",
                       "encoder.shard_rows=16", "encoder.dtype='float32'", "report.wandb=False", *more)


def test_out_of_memory_halves_the_token_budget_and_carries_on(tmp_path, toy_data, tiny_encoder, monkeypatch,
                                                              caplog):
    ref = read_cache(run_extract(_toy_cfg(tmp_path / "ref", toy_data, tiny_encoder)))
    raised = _oom_once(monkeypatch, above_tokens=32)
    with caplog.at_level(logging.WARNING):
        cache = read_cache(run_extract(_toy_cfg(tmp_path / "oom", toy_data, tiny_encoder)))
    assert len(raised) == 1
    assert "out of memory on cpu with 64 tokens per batch; halved the token budget to 32" in caplog.text
    assert cache.manifest["max_batch_tokens"] == 32 and cache.manifest["oom_halvings"] == 1
    assert ref.manifest["max_batch_tokens"] == 64 and ref.manifest["oom_halvings"] == 0
    for split in cache.splits:
        for pooling in cache.poolings:
            np.testing.assert_allclose(cache.X(split, pooling), ref.X(split, pooling), atol=2e-5)


@pytest.mark.parametrize("overlap", [False, True])  # True: the CUDA path (padding in a producer thread), on CPU
def test_out_of_memory_mid_chunk_recomputes_the_chunk_with_half_the_budget(tiny, monkeypatch, overlap):
    batch = [" ".join(["happy", "sad", "day"] * k) for k in range(1, 13)]
    ref, _ = _extractor(tiny, max_tokens=64, overlap=overlap).encode(batch)
    calls = []
    forward = Extractor._forward

    def flaky(self, ids, mask, full):
        calls.append(ids.numel())  # padded tokens of this batch
        if len(calls) == 3:  # the third batch: two batches of this chunk are already done
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return forward(self, ids, mask, full)

    monkeypatch.setattr(Extractor, "_forward", flaky)
    ex = _extractor(tiny, max_tokens=64, overlap=overlap)
    got, stats = ex.encode(batch)
    assert ex.max_tokens == 32 and ex.oom_halvings == 1
    assert stats["oom_halvings"] == 1 and stats["max_tokens"] == 32
    assert max(calls[:3]) > 32 and max(calls[3:]) <= 32  # the retry's batches fit the new budget
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], atol=2e-5)


def test_out_of_memory_on_one_row_stops_with_one_line(tiny, monkeypatch):
    _oom_once(monkeypatch, above_tokens=0)
    ex = _extractor(tiny, max_tokens=MAX_LENGTH)  # already one full-length row per batch
    with pytest.raises(ProbekitError, match=r"out of memory on cpu with one text of up to 16 tokens") as err:
        ex.encode(["happy day"] * 3)
    assert "\n" not in str(err.value)


def test_other_runtime_errors_are_not_taken_for_out_of_memory(tiny, monkeypatch):
    def broken(self, *a, **kw):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(Extractor, "_forward", broken)
    ex = _extractor(tiny)
    with pytest.raises(RuntimeError, match="shapes"):
        ex.encode(["x"])
    assert ex.max_tokens == 3 * MAX_LENGTH and ex.oom_halvings == 0


# --- trust_remote_code -------------------------------------------------------------------------

CONFIG_CODE = """
import os
from pathlib import Path

from transformers import BertConfig

Path(os.environ["PROBEKIT_TEST_MARKER"]).write_text("the model's own code ran")


class ShippedConfig(BertConfig):
    model_type = "shipped-bert"
"""
MODEL_CODE = """
from transformers import BertModel

from .configuration_shipped import ShippedConfig


class ShippedModel(BertModel):
    config_class = ShippedConfig
"""


@pytest.fixture
def model_with_code(tiny_encoder, tmp_path, monkeypatch):
    """The tiny encoder as an architecture transformers does not know: loading it needs the Python
    code shipped beside it (config.json auto_map), which leaves a marker file when it runs."""
    config = json.loads((tiny_encoder / "config.json").read_text())
    config["model_type"] = "shipped-bert"
    config["auto_map"] = {"AutoConfig": "configuration_shipped.ShippedConfig",
                          "AutoModel": "modeling_shipped.ShippedModel"}
    (tiny_encoder / "config.json").write_text(json.dumps(config))
    (tiny_encoder / "configuration_shipped.py").write_text(CONFIG_CODE)
    (tiny_encoder / "modeling_shipped.py").write_text(MODEL_CODE)
    marker = tmp_path / "marker.txt"
    monkeypatch.setenv("PROBEKIT_TEST_MARKER", str(marker))
    return tiny_encoder, marker


def _cli(toy_data, encoder, tmp_path, *more) -> list[str]:
    from conftest import toy_overrides

    sets = [*toy_overrides(toy_data, encoder), "report.wandb=False", "encoder.dtype='float32'"]
    return ["extract", "--artifacts", str(tmp_path / "artifacts"), *[a for s in sets for a in ("--set", s)], *more]


def test_model_code_does_not_run_without_the_flag(toy_data, model_with_code, tmp_path, capsys):
    encoder, marker = model_with_code
    assert main(_cli(toy_data, encoder, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("probekit extract: error: [encoder] model=") and "--trust-remote-code" in err
    assert not marker.exists()


def test_model_code_runs_with_the_flag(toy_data, model_with_code, tmp_path):
    encoder, marker = model_with_code
    assert main(_cli(toy_data, encoder, tmp_path, "--trust-remote-code")) == 0
    assert marker.read_text() == "the model's own code ran"
    assert read_cache(tmp_path / "artifacts" / "demo" / "features").manifest["config"]["trust_remote_code"] is True


@pytest.mark.parametrize("where", ["[encoder]\ntrust_remote_code = true\n", "trust_remote_code = true\n",
                                   "[data]\ntrust_remote_code = true\n"])
def test_a_config_file_cannot_turn_on_remote_code(tmp_path, where, capsys):
    preset = tmp_path / "evil.toml"
    preset.write_text(where)
    with pytest.raises(ConfigError, match="pass --trust-remote-code on the command line"):
        load_config(preset)
    assert main(["extract", "--config", str(preset), "--trust-remote-code"]) == 2  # the flag does not bless it
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trust_remote_code cannot be set in a config file" in err


def test_set_cannot_turn_on_remote_code_and_the_default_is_off():
    with pytest.raises(ConfigError, match="trust_remote_code cannot be set"):
        load_config(None, ["encoder.trust_remote_code=True"])
    assert load_config(None).trust_remote_code is False
    assert load_config(None, trust_remote_code=True).trust_remote_code is True


def test_only_model_loading_commands_take_the_flag():
    from probekit.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["extract", "--trust-remote-code"]).trust_remote_code is True
    assert parser.parse_args(["extract"]).trust_remote_code is False
    with pytest.raises(SystemExit):
        parser.parse_args(["classify", "--trust-remote-code"])
