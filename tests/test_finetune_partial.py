"""Partial fine-tuning ([finetune] train_layers) and the cheaper training forward, on a tiny random BERT."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import make_config, toy_overrides

pytest.importorskip("torch")

FT = ["finetune.lr=0.003", "finetune.batch_size=8", "finetune.eval_batch_size=8", "finetune.warmup_ratio=0.0",
      "finetune.patience=0", "finetune.num_threads=1"]


def _run(tmp_path, data, encoder, *more):
    """run_finetune on the toy data; (result.json, the fine-tuned weights)."""
    from safetensors.torch import load_file

    from probekit.stages.extract.finetune import run_finetune

    cfg = make_config(tmp_path, *toy_overrides(data, encoder), *FT, *more)
    out = run_finetune(cfg)
    return json.loads((out / "result.json").read_text()), load_file(out / "model.safetensors")


def test_train_layers_freezes_the_bottom_and_trains_the_top(tmp_path, toy_data, tiny_encoder):
    from safetensors.torch import load_file

    result, tuned = _run(tmp_path, toy_data, tiny_encoder, "finetune.train_layers=1", "finetune.max_steps=2",
                         "finetune.dtype=float32")  # the dtype asserted below, whatever auto picks on this CPU
    base = load_file(tiny_encoder / "model.safetensors")
    frozen = [k for k in base if k.startswith(("embeddings.", "encoder.layer.0."))]
    top = [k for k in base if k.startswith("encoder.layer.1.")]
    assert frozen and top
    for k in frozen:
        np.testing.assert_array_equal(tuned[f"bert.{k}"].numpy(), base[k].numpy(), err_msg=k)
    changed = [k for k in top if not np.allclose(tuned[f"bert.{k}"].numpy(), base[k].numpy())]
    # every trained tensor moves; the key bias's gradient is zero in exact arithmetic (softmax ignores a shift shared
    # by all keys), so whether Adam moves it on rounding noise depends on the CPU's kernels: not asserted
    assert set(changed) >= {k for k in top if not k.endswith("key.bias")}
    assert result["train_layers"] == 1 and result["params"]["train_layers"] == 1
    assert result["examples_per_s"] > 0 and result["device"] == "cpu" and result["dtype"] == "float32"
    assert result["wall_minutes"] > 0 and result["history"][-1]["step"] == 2


@pytest.mark.parametrize("layers", [1, 2])
def test_training_from_kept_frozen_states_equals_computing_them(tmp_path, toy_data, tiny_encoder, layers):
    runs = [_run(tmp_path / str(cache), toy_data, tiny_encoder, f"finetune.train_layers={layers}", "finetune.epochs=2",
                 f"finetune.cache_frozen={cache}") for cache in (True, False)]
    (r_cached, w_cached), (r_computed, w_computed) = runs
    assert r_cached["frozen_states_seconds"] > 0 and r_computed["frozen_states_seconds"] == 0
    for a, b in zip(r_cached["history"], r_computed["history"]):  # dropout on: the same masks both ways
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["validation_loss"] == pytest.approx(b["validation_loss"], abs=1e-5)
    for k in w_cached:
        np.testing.assert_allclose(w_cached[k].numpy(), w_computed[k].numpy(), atol=1e-5, err_msg=k)


def test_the_cls_only_last_layer_gives_the_same_training(tmp_path, toy_data, tiny_encoder):
    runs = [_run(tmp_path / str(fast), toy_data, tiny_encoder, "finetune.max_steps=3", "finetune.dropout=0.0",
                 f"finetune.fast_last_layer={fast}") for fast in (True, False)]
    (r_fast, w_fast), (r_full, w_full) = runs
    assert r_fast["history"][-1]["train_loss"] == pytest.approx(r_full["history"][-1]["train_loss"], abs=1e-5)
    for k in w_fast:
        np.testing.assert_allclose(w_fast[k].numpy(), w_full[k].numpy(), atol=1e-5, err_msg=k)


def test_train_layers_out_of_range_is_one_line(tmp_path, toy_data, tiny_encoder, capsys):
    from probekit.cli import main

    base = ["finetune", "--artifacts", str(tmp_path / "a"), "--set", f"data.path={str(toy_data)!r}",
            "--set", f"encoder.model={str(tiny_encoder)!r}", "--set", "data.label_names_file='labels.txt'",
            "--set", "encoder.max_length=16"]
    assert main([*base, "--set", "finetune.train_layers=3"]) == 2
    err = capsys.readouterr().err
    assert "[finetune] train_layers=3: the model has 2 encoder layers; use 0 (all layers) to 2." in err
    assert "Traceback" not in err and len([x for x in err.splitlines() if "error" in x]) == 1
    assert main([*base, "--set", "finetune.train_layers=-1"]) == 2
    assert "[finetune] train_layers=-1 must be >= 0" in capsys.readouterr().err


def test_a_model_without_a_known_layer_list_is_one_line():
    import torch

    from probekit.core.errors import ProbekitError
    from probekit.stages.extract.finetune.layers import check_train_layers

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.base_model = torch.nn.Linear(2, 2)

    with pytest.raises(ProbekitError, match=r"train_layers: cannot find the encoder's layer list in Linear"):
        check_train_layers(Odd(), 1)
    assert check_train_layers(Odd(), 0) == 0
