"""Shared fixtures: offline environment, tiny datasets written in code, a tiny random BERT.

Nothing here touches the network or ../shared: Hugging Face libraries are switched
offline, their caches point into a temporary folder, and W&B is disabled unless a test
turns it on.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

_HF_HOME = tempfile.mkdtemp(prefix="probekit-hf-")
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    HF_HOME=_HF_HOME,
    HF_DATASETS_CACHE=os.path.join(_HF_HOME, "datasets"),
    WANDB_MODE="disabled",
    WANDB_SILENT="true",
    TOKENIZERS_PARALLELISM="false",
)

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("happy glad joy smile sad cry tears gloomy angry mad rage furious scared afraid fear "
         "the a it is was very so day movie news today my friend this").split()


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def toy_rows(n: int, seed: int, multi: bool) -> list[dict]:
    """Learnable rows: each label has its own words; multi-label rows mix two."""
    rng = np.random.default_rng(seed)
    lexicon = {"joy": WORDS[0:4], "sadness": WORDS[4:8], "anger": WORDS[8:12], "fear": WORDS[12:15]}
    filler = WORDS[15:]
    names = list(lexicon)
    rows = []
    for i in range(n):
        k = [names[i % 4]]
        if multi and i % 5 == 0:
            k.append(names[(i + 1) % 4])
        words = [str(w) for lab in k for w in rng.choice(lexicon[lab], 2)] + [str(w) for w in rng.choice(filler, 3)]
        rng.shuffle(words)
        rows.append({"id": f"r{seed}-{i}", "text": " ".join(words), "labels": k if multi else k[0]})
    return rows


@pytest.fixture
def toy_data(tmp_path) -> Path:
    """A multi-label jsonl dataset (label names as lists) with labels.txt."""
    d = tmp_path / "toy"
    d.mkdir()
    for split, n, seed in (("train", 48, 0), ("validation", 16, 1), ("test", 16, 2)):
        write_jsonl(d / f"{split}.jsonl", toy_rows(n, seed, multi=True))
    (d / "labels.txt").write_text("joy\nsadness\nanger\nfear\n")
    return d


@pytest.fixture
def toy_single(tmp_path) -> Path:
    """A single-label jsonl dataset (one label name per row), no labels.txt."""
    d = tmp_path / "toy1"
    d.mkdir()
    for split, n, seed in (("train", 48, 0), ("validation", 16, 1), ("test", 16, 2)):
        write_jsonl(d / f"{split}.jsonl", toy_rows(n, seed, multi=False))
    return d


@pytest.fixture(scope="session")
def _tiny_encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 BERT with random weights and a word-level vocab, saved to disk
    (transformers' BertModelTester recipe). Built once per session."""
    pytest.importorskip("torch")
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # Built with the tokenizers library itself: transformers 5 ignores BertTokenizerFast(vocab_file=...)
    # and would map every word to [UNK].
    ids = {w: i for i, w in enumerate(vocab)}
    backend = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = BertTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", sep_token="[SEP]",
                                  pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    assert tokenizer("happy sad")["input_ids"] == [2, ids["happy"], ids["sad"], 3]
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64)
    model = BertModel(config).eval()
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture
def tiny_encoder(_tiny_encoder_dir, tmp_path) -> Path:
    """A private copy of the tiny encoder folder, so a test may change it."""
    import shutil

    d = tmp_path / "tiny-bert"
    shutil.copytree(_tiny_encoder_dir, d)
    return d


@pytest.fixture(scope="session")
def tiny_distilbert(_tiny_encoder_dir, tmp_path_factory) -> Path:
    """A 2-layer, dim-32 DistilBERT with random weights and the tiny BERT's tokenizer (no
    token_type_ids, as DistilBERT's own). Built once per session; tests only read it."""
    pytest.importorskip("torch")
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    d = tmp_path_factory.mktemp("tiny-distilbert")
    tokenizer = AutoTokenizer.from_pretrained(_tiny_encoder_dir, model_input_names=["input_ids", "attention_mask"])
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                              max_position_embeddings=64)
    DistilBertModel(config).eval().save_pretrained(d)
    tokenizer.save_pretrained(d)
    assert "token_type_ids" not in AutoTokenizer.from_pretrained(d)("happy sad")
    return d


def make_config(tmp_path: Path, *overrides: str, preset: str | None = None):
    """A Config whose outputs land in tmp_path/artifacts."""
    from probekit.core.config import load_config

    return load_config(preset, [f"run.artifacts={str(tmp_path / 'artifacts')!r}", *overrides])


def toy_overrides(data_dir: Path, encoder: Path | str, multi: bool = True) -> list[str]:
    out = [f"data.path={str(data_dir)!r}", "data.id_field='id'", f"encoder.model={str(encoder)!r}",
           "encoder.max_length=16", "encoder.batch_size=8", "classify.random_forest.n_estimators=10",
           "classify.n_jobs=1"]
    if multi:
        out += ["data.label_names_file='labels.txt'", "data.problem_type='multi_label'"]
    return out


@pytest.fixture
def seeded_features():
    """A function making seeded random features with signal for given labels."""

    def make(Y: np.ndarray, dim: int = 12, seed: int = 0, signal: float = 2.0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        W = rng.normal(size=(Y.shape[1], dim))
        return (rng.normal(size=(len(Y), dim)) + signal * Y @ W).astype(np.float32)

    return make



def write_fake_cache(run_dir: Path, problem_type: str = "multi_label", n_labels: int = 3,
                     sizes=(80, 30, 30), dim: int = 12, seed: int = 0) -> Path:
    """A feature cache of seeded random features that carry the labels' signal."""
    from probekit.core.cache import CacheWriter
    from probekit.core.runfolder import features_dir

    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n_labels, dim))
    names = [f"label{k}" for k in range(n_labels)]
    with CacheWriter(features_dir(run_dir)) as w:
        for split, n in zip(("train", "validation", "test"), sizes):
            if problem_type == "multi_label":
                Y = (rng.random((n, n_labels)) < 0.4).astype(np.uint8)
                y = Y
            else:
                y = np.arange(n) % n_labels
                Y = np.eye(n_labels, dtype=np.uint8)[y]
            X = (rng.normal(size=(n, dim)) + 2.0 * Y @ W).astype(np.float32)
            w.add_split(split, X, y.astype(np.uint8 if problem_type == "multi_label" else np.int64),
                        [f"{split} text {i}" for i in range(n)], [f"{split}-{i}" for i in range(n)])
        w.commit({"label_names": names, "problem_type": problem_type, "hidden_size": dim, "dtype": "float32",
                  "cache_key": "fake", "model_id": "fake", "pooling": "cls", "max_length": 16})
    return features_dir(run_dir)
