"""The fine-tuning path: a tiny random BERT on a learnable toy dataset, a few steps, no network.

finetune writes only <run>/finetuned/; classify gathers it and scores it like its own models.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import make_config, toy_overrides

pytest.importorskip("torch")

FT = ["finetune.lr=0.003", "finetune.batch_size=8", "finetune.eval_batch_size=8", "finetune.warmup_ratio=0.0",
      "finetune.patience=0", "classify.n_bootstrap=200", "classify.models=['dummy', 'logreg']",
      "classify.logreg.C=[1.0]", "classify.logreg.class_weight=['none']"]


def _cfg(tmp_path, data, encoder, *more, multi=True):
    return make_config(tmp_path, *toy_overrides(data, encoder, multi=multi), *FT, *more)


def _classify(cfg) -> dict:
    """extract then classify on the run (what `make extract classify` does); the metrics dict."""
    from probekit.stages.classify.train import run_classify
    from probekit.stages.extract.encode import run_extract

    run_extract(cfg)
    return json.loads(run_classify(cfg).read_text())


@pytest.fixture
def finetuned_run(tmp_path, toy_data, tiny_encoder):
    """A multi-label run whose encoder was fine-tuned for 6 epochs (the toy words are learnable)."""
    from probekit.stages.extract.finetune import run_finetune

    cfg = _cfg(tmp_path, toy_data, tiny_encoder, "finetune.epochs=6")
    return cfg, run_finetune(cfg)


def test_fine_tuning_learns_writes_only_its_folder_and_classify_scores_it(finetuned_run):
    from probekit.core.metrics import score
    from probekit.core.thresholds import tune_thresholds
    from probekit.stages.extract.data import load

    cfg, out = finetuned_run
    run_dir = cfg.run_dir
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (run_dir / "finetuned.partial").exists()
    # the stage writes its own folder only: no metrics.json, nothing in <run>/scores/
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) == ["finetuned"]
    result = json.loads((out / "result.json").read_text())
    assert "test" not in result and "validation" not in result and "thresholds" not in result
    assert result["label_names"] == ["joy", "sadness", "anger", "fear"] and result["problem_type"] == "multi_label"
    assert result["n_rows"] == {"train": 48, "validation": 16, "test": 16}
    hist = result["history"]
    assert len(hist) == 6 and hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.05  # the loss falls
    assert hist[-1]["validation_loss"] < hist[0]["validation_loss"] - 0.02  # and it generalises
    P_val = np.load(out / "scores" / "validation.npy")
    P_test = np.load(out / "scores" / "test.npy")
    assert P_val.shape == (16, 4) and P_test.dtype == np.float32

    metrics = _classify(cfg)
    ft = metrics["models"]["finetuned"]
    assert ft["test"]["tuned"]["macro_auc"] > 0.75  # the dummy scores 0.5
    assert ft["selection"]["chosen"]["epoch"] == max(hist, key=lambda h: h["validation_metric"])["epoch"]
    # scored by classify's own code: thresholds tuned on validation, applied to test
    np.testing.assert_array_equal(np.load(run_dir / "scores" / "finetuned.test.npy"), P_test)
    ds = load(cfg.data)
    thr = tune_thresholds(ds.splits["validation"].y, P_val)
    assert list(ft["thresholds"].values()) == pytest.approx(thr.tolist())
    again = score(ds.splits["test"].y, P_test, "multi_label", ds.label_names, thr)
    assert ft["test"]["tuned"]["macro_f1"] == pytest.approx(again["macro_f1"])
    lo, hi = ft["test"]["ci"]["macro_f1"]
    assert lo <= ft["test"]["tuned"]["macro_f1"] <= hi
    assert {"finetuned", "logreg", "dummy"} == set(metrics["models"])
    assert set(metrics["comparisons"]["p_better"]) | {metrics["comparisons"]["best"]} == set(metrics["models"])


def test_finetune_then_classify_only_scores_the_fine_tuned_model(finetuned_run, caplog, monkeypatch):
    from probekit.stages.classify import train

    cfg, out = finetuned_run
    aside = cfg.run_dir.parent / "aside"
    out.rename(aside)
    before = _classify(cfg)  # a finished run without fine-tuning
    assert "finetuned" not in before["models"]
    aside.rename(out)  # what `make finetune` adds

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished sklearn model was fitted again")

    monkeypatch.setattr(train, "select", no_fit)
    with caplog.at_level("INFO"):
        metrics = json.loads(train.run_classify(cfg).read_text())
    assert caplog.text.count("kept from an earlier run") == 2
    assert set(metrics["models"]) == {"dummy", "logreg", "finetuned"}
    assert metrics["models"]["logreg"]["test"]["tuned"] == before["models"]["logreg"]["test"]["tuned"]


def test_a_fine_tuned_model_from_other_rows_is_left_out(finetuned_run, caplog):
    cfg, out = finetuned_run
    result = json.loads((out / "result.json").read_text())
    result["n_rows"]["test"] = 15
    (out / "result.json").write_text(json.dumps(result))
    with caplog.at_level("WARNING"):
        metrics = _classify(cfg)
    assert "finetuned" not in metrics["models"] and "leaving out the fine-tuned model" in caplog.text
    assert "rows per split" in caplog.text


def test_a_rerun_reuses_the_checkpoint_and_predict_uses_it(finetuned_run, caplog):
    from probekit.run import load_run
    from probekit.stages.extract.data import load
    from probekit.stages.extract.finetune import run_finetune

    cfg, out = finetuned_run
    before = (out / "model.safetensors").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        run_finetune(cfg)
    assert "reusing" in caplog.text and (out / "model.safetensors").stat().st_mtime_ns == before
    _classify(cfg)
    texts = load(cfg.data).splits["test"].texts[:5]
    run = load_run(cfg.run_dir)
    got = run.predict(texts, model="finetuned")
    want = np.load(out / "scores" / "test.npy")[:5]
    np.testing.assert_allclose(got["probabilities"], want, atol=1e-5)
    assert got["predicted"].shape == (5, 4) and set(got["thresholds"]) == set(got["labels"])
    loaded = run._finetuned["finetuned"]
    np.testing.assert_allclose(run.predict(texts[:2], model="finetuned")["probabilities"], want[:2], atol=1e-5)
    assert run._finetuned["finetuned"] is loaded  # kept across calls


def test_same_seed_same_model_and_a_left_over_partial_folder_is_not_trusted(tmp_path, toy_data, tiny_encoder):
    from probekit.stages.extract.finetune import run_finetune

    scores = []
    for k in range(2):
        cfg = _cfg(tmp_path / str(k), toy_data, tiny_encoder, "finetune.max_steps=4")
        partial = cfg.run_dir / "finetuned.partial"
        partial.mkdir(parents=True)
        (partial / "model.safetensors").write_bytes(b"half a file")  # what a killed run leaves
        run_finetune(cfg)
        assert not partial.exists()
        scores.append(np.load(cfg.run_dir / "finetuned" / "scores" / "test.npy"))
        assert json.loads((cfg.run_dir / "finetuned" / "result.json").read_text())["history"][-1]["step"] == 4
    np.testing.assert_array_equal(scores[0], scores[1])


@pytest.mark.parametrize("family", ["tiny_encoder", "tiny_distilbert"])
def test_single_label_head_only_phase_leaves_the_encoder_frozen(tmp_path, toy_single, family, request):
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    from probekit.stages.extract.finetune import run_finetune

    model_dir = request.getfixturevalue(family)  # DistilBERT: another head (pre_classifier), no pooler
    cfg = _cfg(tmp_path, toy_single, model_dir, "finetune.epochs=2", "finetune.head_epochs=2",
               "finetune.imbalance='pos_weight'", "finetune.head_lr=0.05", "finetune.dropout=0.0", multi=False)
    out = run_finetune(cfg)
    tuned = AutoModelForSequenceClassification.from_pretrained(out)
    base = AutoModel.from_pretrained(model_dir)
    for name, p in base.state_dict().items():
        if "pooler" not in name:  # the pooler feeds the new head and is trained with it
            torch.testing.assert_close(tuned.base_model.state_dict()[name], p, msg=name)
    dropout = "dropout" if family == "tiny_distilbert" else "hidden_dropout_prob"
    assert tuned.config.problem_type == "single_label_classification" and getattr(tuned.config, dropout) == 0.0
    ft = _classify(cfg)["models"]["finetuned"]
    assert ft["thresholds"] is None and "accuracy" in ft["test"] and len(ft["test"]["confusion_matrix"]) == 4
    assert [h["phase"] for h in ft["history"]] == ["head", "head"]
    assert ft["history"][-1]["train_loss"] < ft["history"][0]["train_loss"]


def test_the_losses_weight_rare_labels_and_confident_cells():
    import torch

    from probekit.stages.extract.finetune import make_loss

    Y = np.array([[1, 0], [0, 0], [0, 0], [0, 1]] * 5, dtype=np.uint8)  # 5 positives of 20 per label
    logits = torch.tensor([[3.0, -3.0], [-3.0, 3.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    plain = make_loss("none", "multi_label", Y, 30.0, 2.0, "cpu")(logits, labels)
    weighted = make_loss("pos_weight", "multi_label", Y, 30.0, 2.0, "cpu")(logits, labels)
    capped = make_loss("pos_weight", "multi_label", Y, 2.0, 2.0, "cpu")(logits, labels)
    focal = make_loss("focal", "multi_label", Y, 30.0, 2.0, "cpu")(logits, labels)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    # pos_weight 15/5 = 3 multiplies the positive cells' terms; capped at 2
    assert float(weighted) == pytest.approx(float((bce * torch.tensor([[3.0, 1.0], [3.0, 1.0]])).mean()), rel=1e-5)
    assert float(capped) == pytest.approx(float((bce * torch.tensor([[2.0, 1.0], [2.0, 1.0]])).mean()), rel=1e-5)
    assert float(focal) < float(plain)  # the two confident, right cells count for almost nothing
    y = np.array([0, 0, 0, 1])
    ce = make_loss("pos_weight", "single_label", np.eye(2, dtype=np.uint8)[y], 30.0, 2.0, "cpu")
    two = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    # balanced weights 4/(2*3) and 4/(2*1): a row of the rare class costs three times as much
    assert float(ce(two, torch.tensor([1, 1]))) == pytest.approx(float(ce(two, torch.tensor([0, 0]))), rel=1e-5)
    w = torch.tensor([4 / 6, 2.0])
    direct = torch.nn.functional.cross_entropy(two, torch.tensor([0, 1]), weight=w)
    assert float(ce(two, torch.tensor([0, 1]))) == pytest.approx(float(direct), rel=1e-5)


def test_bad_settings_are_one_line_errors(tmp_path, toy_data, tiny_encoder, capsys):
    from probekit.cli import main

    base = ["finetune", "--artifacts", str(tmp_path / "a"), "--set", f"data.path={str(toy_data)!r}",
            "--set", f"encoder.model={str(tiny_encoder)!r}", "--set", "data.label_names_file='labels.txt'"]
    assert main([*base, "--set", "finetune.imbalance='oversample'"]) == 2
    assert "[finetune] imbalance='oversample' is not one of" in capsys.readouterr().err
    assert main([*base, "--set", "finetune.head_epochs=4", "--set", "finetune.epochs=2"]) == 2
    assert "head_epochs=4 must be <= epochs=2" in capsys.readouterr().err
    assert main([*base, "--set", "finetune.epoch=2"]) == 2
    assert "[finetune] has no key 'epoch'" in capsys.readouterr().err


def test_predict_without_a_fine_tuned_model_says_what_to_run(finetuned_run):
    from probekit.core.errors import ProbekitError
    from probekit.run import predict

    cfg, out = finetuned_run
    _classify(cfg)
    shutil.rmtree(out)
    with pytest.raises(ProbekitError, match="run 'make finetune'"):
        predict(cfg.run_dir, ["happy"], model="finetuned")


def test_training_curves_go_to_an_offline_wandb_run(finetuned_run, tmp_path, monkeypatch):
    import wandb

    from probekit.stages.analysis.wandb_log import log_finetune

    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg, out = finetuned_run
    run_dir = log_finetune(cfg, out)
    wandb.teardown()
    record = next(p for p in (cfg.run_dir / "wandb").glob("offline-run-*/*.wandb")).read_bytes()
    assert run_dir and b"validation/macro_auc" in record and b"train/loss" in record and b"finetune" in record


def test_named_variants_live_side_by_side_and_classify_scores_each(finetuned_run, caplog):
    """[finetune] name keeps a second variant (the top layer only) in finetuned-<name>/ beside finetuned/;
    classify scores both, each from its own folder; predict reads each; a bad name is one line."""
    import dataclasses

    from probekit.core.errors import ConfigError
    from probekit.run import load_run
    from probekit.stages.extract.data import load
    from probekit.stages.extract.finetune import run_finetune

    cfg, out = finetuned_run
    top1 = dataclasses.replace(cfg, finetune=dataclasses.replace(cfg.finetune, name="top1", train_layers=1, epochs=2))
    out1 = run_finetune(top1)
    assert out1 == cfg.run_dir / "finetuned-top1" and (out1 / "result.json").is_file()
    assert json.loads((out / "result.json").read_text())["train_layers"] == 0  # finetuned/ untouched
    assert json.loads((out1 / "result.json").read_text())["train_layers"] == 1
    metrics = _classify(cfg)
    assert {"finetuned", "finetuned-top1", "logreg", "dummy"} == set(metrics["models"])
    ft1 = metrics["models"]["finetuned-top1"]
    assert ft1["checkpoint"] == "finetuned-top1" and ft1["train_layers"] == 1
    P1 = np.load(out1 / "scores" / "test.npy")
    np.testing.assert_array_equal(np.load(cfg.run_dir / "scores" / "finetuned-top1.test.npy"), P1)
    assert not np.array_equal(P1, np.load(out / "scores" / "test.npy"))
    texts = load(cfg.data).splits["test"].texts[:3]
    got = load_run(cfg.run_dir).predict(texts, model="finetuned-top1")
    np.testing.assert_allclose(got["probabilities"], P1[:3], atol=1e-5)
    with pytest.raises(ConfigError, match=r"^\[finetune\] name='Top 1': use 1-40 lowercase letters"):
        dataclasses.replace(cfg.finetune, name="Top 1")
