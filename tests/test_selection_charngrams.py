"""Character n-grams beside word n-grams in tfidf_logreg: a grid key, kept only when it wins on validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_config

from probekit.core.errors import ProbekitError
from probekit.stages.classify.train import run_classify

# each split has its own words for a label, sharing a stem: only character n-grams carry over
STEMS = {0: "sunn", 1: "rainf"}
ENDINGS = {"train": ["y", "ish", "er"], "validation": ["iest", "ily"], "test": ["ness", "est"]}


def stem_cache(run_dir, seed: int = 0) -> None:
    from probekit.core.cache import CacheWriter
    from probekit.core.runfolder import features_dir

    rng = np.random.default_rng(seed)
    with CacheWriter(features_dir(run_dir)) as w:
        for split, n in (("train", 120), ("validation", 60), ("test", 60)):
            Y = (rng.random((n, 2)) < 0.4).astype(np.uint8)
            texts = [" ".join([STEMS[k] + str(rng.choice(ENDINGS[split])) for k in (0, 1) if Y[i, k]]
                              + [str(rng.choice(["day", "morning", "week"]))]) for i in range(n)]
            w.add_split(split, rng.normal(size=(n, 4)).astype(np.float32), Y, texts, [f"{split}-{i}" for i in range(n)])
        w.commit({"label_names": ["sun", "rain"], "problem_type": "multi_label", "hidden_size": 4, "dtype": "float32",
                  "cache_key": "stems", "model_id": "fake", "pooling": "cls", "max_length": 16})


def test_char_ngrams_win_on_validation_when_words_do_not_carry_over(tmp_path):
    from probekit.stages.classify.persist import load_model

    cfg = make_config(tmp_path, "classify.n_jobs=1", "classify.n_bootstrap=20", "classify.models=['tfidf_logreg']",
                      "classify.tfidf_logreg.analyzer=['word', 'char_wb', 'word+char_wb']",
                      "classify.tfidf_logreg.C=[4.0]", "classify.tfidf_logreg.class_weight=['none']",
                      "classify.tfidf_logreg.min_df=1", "classify.tfidf_logreg.char_ngram_max=4")
    stem_cache(cfg.run_dir)
    entry = json.loads(run_classify(cfg).read_text())["models"]["tfidf_logreg"]
    scores = {g["analyzer"]: g["validation_score"] for g in entry["selection"]["grid"]}
    assert set(scores) == {"word", "char_wb", "word+char_wb"}
    assert scores["word"] < 0.7 < min(scores["char_wb"], scores["word+char_wb"])
    assert entry["params"]["analyzer"] != "word" and entry["test"]["tuned"]["macro_f1"] > 0.8
    model, _ = load_model(cfg.run_dir, "tfidf_logreg")  # skops round trip of the vectorizer (or the union)
    assert model.predict_proba(["sunnest day", "rainfness week"]).shape == (2, 2)


def test_word_is_the_default_and_the_simplest():
    from probekit.core.config import load_config
    from probekit.stages.classify import crossfit
    from probekit.stages.classify.registry import Candidate

    cfg = load_config(None, []).classify
    assert cfg.model_tables["tfidf_logreg"]["analyzer"] == ("word",)
    rank = [crossfit.simplicity(Candidate("tfidf_logreg", {"C": 1.0, "class_weight": "none", "analyzer": a}))
            for a in ("word", "char_wb", "word+char_wb")]
    assert rank == sorted(rank)


def test_char_range_is_checked(tmp_path):
    cfg = make_config(tmp_path, "classify.n_jobs=1", "classify.models=['tfidf_logreg']",
                      "classify.tfidf_logreg.analyzer=['char_wb']", "classify.tfidf_logreg.char_ngram_min=6",
                      "classify.tfidf_logreg.char_ngram_max=3")
    stem_cache(cfg.run_dir)
    with pytest.raises(ProbekitError, match=r"char_ngram_min=6 > char_ngram_max=3: set char_ngram_min <= "):
        run_classify(cfg)
