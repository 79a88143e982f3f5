"""Tests for trainer/config.py: the experiment config schema, its YAML loader and its error messages.

Protects: that a YAML file plus ``key.sub=value`` overrides becomes a typed config with the documented defaults;
that save -> load round-trips to an equal object; that every kind of mistake (unknown key, wrong type,
impossible value, missing required key, bad choice, bad override, YAML syntax) is reported with what was
received, what is allowed and a "did you mean" suggestion, and that several mistakes are all reported at once;
that the schema stays documented and in step with the metric/preset names it lists; and that every config
shipped in trainer/configs/ loads.
"""
import dataclasses
import typing
from pathlib import Path

import pytest

from trainer import config as config_module
from trainer.config import (
    BEST_METRICS,
    DECODING_PRESETS,
    EVALUATION_METRICS,
    ConfigError,
    ExperimentConfig,
    config_from_dict,
    config_to_dict,
    describe_config,
    load_config,
    save_config,
    validate_config,
)

MINIMAL = {"experiment": {"name": "tiny-run"}, "data": {"path": "data/captions.json"}}

FULL_YAML = """\
# A made-up experiment touching every section.
experiment:
  name: clipcap_tiny.v1
  seed: 7
model:
  encoder: tests/tiny-clip
  prefix_length: 4
  mapper: {type: transformer, num_layers: 2, num_heads: 2}
  freeze_decoder: 3
  from_scratch: true
  encoder_config: {hidden_size: 32, num_hidden_layers: 2}
  decoder_config: {n_embd: 32, n_layer: 2, n_head: 2}
data:
  format: coco
  path: data/annotations.json
  test_split: null
  subset_ratio: 0.25
training:
  epochs: 2
  learning_rate: 1e-4     # plain YAML would read this as a string
  weight_decay: 0         # an int where a float is expected is fine
  warmup_ratio: 0.1
  scheduler: cosine
  max_grad_norm: null
evaluation:
  metrics: [loss, bleu, cider]
  best_metric: cider
  preset: greedy
"""


def write(tmp_path: Path, text: str, name: str = "experiment.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    return info.value.errors


def with_values(**sections: dict) -> dict:
    """MINIMAL plus the given section values, e.g. with_values(model={"prefix_length": 0})."""
    data = {name: dict(values) for name, values in MINIMAL.items()}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


# ------------------------------------------------------------------------------------------------
# Valid configs
# ------------------------------------------------------------------------------------------------

def test_minimal_config_gets_documented_defaults():
    cfg = config_from_dict(MINIMAL)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.experiment.name == "tiny-run"
    assert cfg.experiment.output_dir == "runs" and cfg.experiment.zoo_dir == "model_zoo"
    assert cfg.model.encoder == "openai/clip-vit-base-patch32" and cfg.model.decoder == "gpt2"
    assert cfg.model.prefix_length == 10 and cfg.model.mapper.type == "mlp" and cfg.model.freeze_decoder == "none"
    assert cfg.model.mapper.hidden_size is None
    assert cfg.data.format == "auto" and cfg.data.test_split == "test" and cfg.data.max_caption_tokens == 40
    assert cfg.training.learning_rate == 2e-5 and cfg.training.scheduler == "linear"
    assert cfg.evaluation.metrics == ["loss", "bleu", "cider", "bertscore"]
    assert cfg.evaluation.best_metric == "val_loss" and cfg.evaluation.preset == "consistent"
    # Default lists are not shared between configs.
    other = config_from_dict(MINIMAL)
    other.evaluation.metrics.append("meteor")
    assert cfg.evaluation.metrics == ["loss", "bleu", "cider", "bertscore"]


def test_full_yaml_loads_with_types(tmp_path):
    cfg = load_config(write(tmp_path, FULL_YAML))
    assert cfg.experiment.name == "clipcap_tiny.v1" and cfg.experiment.seed == 7
    assert cfg.model.mapper.type == "transformer" and cfg.model.freeze_decoder == 3
    assert cfg.model.decoder_config == {"n_embd": 32, "n_layer": 2, "n_head": 2}
    assert cfg.data.test_split is None and cfg.data.subset_ratio == 0.25
    assert cfg.training.learning_rate == pytest.approx(1e-4) and isinstance(cfg.training.learning_rate, float)
    assert cfg.training.weight_decay == 0.0 and isinstance(cfg.training.weight_decay, float)
    assert cfg.training.max_grad_norm is None
    assert cfg.evaluation.best_metric == "cider" and cfg.evaluation.preset == "greedy"


def test_save_then_load_round_trips_to_an_equal_config(tmp_path):
    cfg = load_config(write(tmp_path, FULL_YAML))
    saved = tmp_path / "out" / "config.yaml"
    save_config(cfg, saved)
    assert load_config(saved) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_round_trip_keeps_strings_that_look_like_floats(tmp_path):
    # Our loader reads 1e-4 as a float, so the writer must quote a *string* '1e-4' to read it back as a string.
    cfg = config_from_dict(with_values(experiment={"name": "1e-4"}, data={"path": "2e5"}))
    save_config(cfg, tmp_path / "c.yaml")
    loaded = load_config(tmp_path / "c.yaml")
    assert loaded.experiment.name == "1e-4" and loaded.data.path == "2e5"


def test_config_to_dict_is_plain_nested_dicts():
    data = config_to_dict(config_from_dict(MINIMAL))
    assert list(data) == ["experiment", "model", "data", "training", "evaluation", "scst"]
    assert data["experiment"]["name"] == "tiny-run" and data["model"]["prefix_length"] == 10


def test_config_does_not_share_mutable_values_with_its_input():
    source = with_values(model={"from_scratch": True, "decoder_config": {"n_layer": 2}})
    cfg = config_from_dict(source)
    source["model"]["decoder_config"]["n_layer"] = 99
    assert cfg.model.decoder_config == {"n_layer": 2}


def test_empty_sections_mean_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "experiment:\n  name: a\ndata:\n  path: b\nmodel:\ntraining:\n"))
    assert cfg.model.prefix_length == 10 and cfg.training.epochs == 10


# ------------------------------------------------------------------------------------------------
# Overrides
# ------------------------------------------------------------------------------------------------

def test_overrides_are_typed_and_nested(tmp_path):
    path = write(tmp_path, FULL_YAML)
    cfg = load_config(path, [
        "training.learning_rate=3e-4",
        "training.epochs=5",
        "model.freeze_encoder=false",
        "model.freeze_decoder=all",
        "data.image_root=null",
        "evaluation.metrics=[loss, bertscore]",
        "evaluation.best_metric=bertscore_f1",
        "model.decoder_config.n_layer=4",
        "experiment.name=renamed_run",
    ])
    assert cfg.training.learning_rate == pytest.approx(3e-4)
    assert cfg.training.epochs == 5
    assert cfg.model.freeze_encoder is False and cfg.model.freeze_decoder == "all"
    assert cfg.data.image_root is None
    assert cfg.evaluation.metrics == ["loss", "bertscore"]
    assert cfg.model.decoder_config == {"n_embd": 32, "n_layer": 4, "n_head": 2}
    assert cfg.experiment.name == "renamed_run"
    # The file itself is untouched.
    assert load_config(path).training.epochs == 2


def test_override_creates_missing_sections(tmp_path):
    path = write(tmp_path, "experiment:\n  name: a\n")
    cfg = load_config(path, ["data.path=/data/coco.json", "model.prefix_length=3"])
    assert cfg.data.path == "/data/coco.json" and cfg.model.prefix_length == 3


def test_override_of_unknown_key_gets_a_suggestion(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, FULL_YAML), ["model.prefx_length=5"])
    assert info.value.errors == [
        "Unknown config key 'model.prefx_length' (did you mean 'model.prefix_length'?) "
        "in override 'model.prefx_length=5'"
    ]


def test_override_without_equals_is_explained(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, FULL_YAML), ["training.epochs", "training.batch_size=8"])
    (message,) = info.value.errors
    assert "Override 'training.epochs' has no '='" in message and "key.sub=value" in message


def test_override_value_is_type_checked(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, FULL_YAML), ["model.prefix_length=ten"])
    assert info.value.errors == ["model.prefix_length: expected int, got str 'ten'"]


def test_overrides_must_be_a_list_not_one_string(tmp_path):
    with pytest.raises(TypeError, match="list of 'key.sub=value' strings"):
        load_config(write(tmp_path, FULL_YAML), "training.epochs=3")


# ------------------------------------------------------------------------------------------------
# Each kind of error
# ------------------------------------------------------------------------------------------------

def test_unknown_key_suggests_the_closest_key():
    assert errors_of(with_values(model={"prefx_length": 5})) == [
        "Unknown config key 'model.prefx_length' (did you mean 'model.prefix_length'?)"
    ]


def test_key_in_the_wrong_section_points_to_the_right_one():
    assert errors_of(with_values(model={"max_caption_tokens": 20})) == [
        "Unknown config key 'model.max_caption_tokens' (did you mean 'data.max_caption_tokens'?)"
    ]


def test_unknown_section_suggests_a_section():
    (message,) = errors_of({**MINIMAL, "modle": {"prefix_length": 5}})
    assert message.startswith("Unknown config key 'modle' (did you mean 'model'?)")


def test_unknown_key_without_close_match_lists_the_section_keys():
    (message,) = errors_of(with_values(data={"zzzzzz": 1}))
    assert message.startswith("Unknown config key 'data.zzzzzz'; keys in 'data':")
    assert "max_caption_tokens" in message


def test_wrong_type_says_expected_and_received():
    assert errors_of(with_values(model={"prefix_length": "ten"})) == [
        "model.prefix_length: expected int, got str 'ten'"
    ]


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("model", "prefix_length", True, "model.prefix_length: expected int, got bool True"),
        ("model", "prefix_length", 2.0, "model.prefix_length: expected int, got float 2.0"),
        ("training", "learning_rate", "fast", "training.learning_rate: expected float, got str 'fast'"),
        ("training", "learning_rate", False, "training.learning_rate: expected float, got bool False"),
        ("model", "freeze_encoder", "yes please", "model.freeze_encoder: expected bool, got str 'yes please'"),
        ("model", "freeze_encoder", 1, "model.freeze_encoder: expected bool, got int 1"),
        ("evaluation", "metrics", "bleu", "evaluation.metrics: expected list of str, got str 'bleu'"),
        ("model", "encoder_config", [1, 2], "model.encoder_config: expected mapping or null, got list [1, 2]"),
        ("data", "path", None, "data.path: expected str, got null"),
        ("experiment", "seed", "42", "experiment.seed: expected int, got str '42'"),
    ],
)
def test_type_errors(section, key, value, message):
    assert errors_of(with_values(**{section: {key: value}})) == [message]


def test_python_none_spelling_gets_a_hint():
    (message,) = errors_of(with_values(model={"mapper": {"hidden_size": "None"}}))
    assert message == (
        "model.mapper.hidden_size: expected int or null, got str 'None' (write null, unquoted, for no value)"
    )


def test_bad_choice_lists_choices_and_suggests():
    assert errors_of(with_values(model={"mapper": {"type": "mpl"}})) == [
        "model.mapper.type: must be one of 'mlp', 'transformer', 'grid', got 'mpl' (did you mean 'mlp'?)"
    ]
    (message,) = errors_of(with_values(evaluation={"preset": "creative"}))
    assert "got 'creative'" in message and "(did you mean 'creative_diverse'?)" in message


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("training", {"learning_rate": -1}, "training.learning_rate: must be > 0, got -1"),
        ("training", {"learning_rate": 0}, "training.learning_rate: must be > 0, got 0"),
        ("model", {"prefix_length": 0}, "model.prefix_length: must be >= 1, got 0"),
        ("data", {"subset_ratio": 1.5}, "data.subset_ratio: must be in (0, 1] (a fraction of the split), got 1.5"),
        ("data", {"subset_ratio": 0}, "data.subset_ratio: must be in (0, 1] (a fraction of the split), got 0"),
        ("data", {"num_workers": -2}, "data.num_workers: must be >= 0, got -2"),
        ("model", {"mapper": {"type": "grid"}, "prefix_length": 10},
         "model.prefix_length: the grid mapper pools patches into a g x g grid, so prefix_length must be a square; "
         "got 10 (try 9 or 16)"),
        ("data", {"captions_per_image": 0}, "data.captions_per_image: must be 'all' or a number of captions >= 1, got 0"),
        ("training", {"max_steps": 0}, "training.max_steps: must be >= 1, got 0"),
        ("model", {"freeze_decoder": -1},
         "model.freeze_decoder: must be 'none', 'all' or a number of blocks >= 0, got -1"),
        ("experiment", {"name": "my run/1"},
         "experiment.name: must use only letters, digits, '.', '_' and '-' (it names the model zoo folder), "
         "got 'my run/1'"),
        ("experiment", {"name": ".."},
         "experiment.name: must use only letters, digits, '.', '_' and '-' (it names the model zoo folder), "
         "got '..'"),
        ("data", {"path": "  "}, "data.path: must not be empty, got '  '"),
    ],
)
def test_impossible_values(section, values, message):
    assert errors_of(with_values(**{section: values})) == [message]


def test_freeze_decoder_accepts_none_all_and_block_counts():
    for value in ("none", "all", 0, 4):
        assert config_from_dict(with_values(model={"freeze_decoder": value})).model.freeze_decoder == value
    (message,) = errors_of(with_values(model={"freeze_decoder": "some"}))
    assert message == "model.freeze_decoder: must be one of 'none', 'all' or int, got 'some'"
    (message,) = errors_of(with_values(model={"freeze_decoder": True}))
    assert "got bool True" in message


def test_unknown_metric_in_list_is_named_with_suggestion():
    (message,) = errors_of(with_values(evaluation={"metrics": ["loss", "blue"]}))
    assert message.startswith("evaluation.metrics: must list only loss, bleu,")
    assert "'blue' (did you mean 'bleu'?)" in message
    (message,) = errors_of(with_values(evaluation={"metrics": ["loss", "loss"]}))
    assert "repeated: 'loss'" in message


def test_missing_required_keys():
    assert errors_of({}) == ["experiment.name is required", "data.path is required"]


def test_section_that_is_not_a_mapping():
    assert errors_of({**MINIMAL, "training": 5}) == ["training: expected a mapping of keys, got int 5"]


@pytest.mark.parametrize(
    ("sections", "fragment"),
    [
        ({"evaluation": {"best_metric": "cider", "metrics": ["loss", "bleu"]}},
         "evaluation.best_metric: 'cider' needs 'cider' in evaluation.metrics"),
        ({"model": {"decoder_config": {"n_layer": 2}}},
         "model.decoder_config is only used when model.from_scratch is true"),
        ({"training": {"warmup_steps": 100, "warmup_ratio": 0.1}},
         "training.warmup_steps (100) and training.warmup_ratio (0.1) are both set"),
        ({"training": {"mixed_precision": "fp16", "device": "cpu"}},
         "training.mixed_precision: 'fp16' needs CUDA"),
    ],
)
def test_cross_field_problems(sections, fragment):
    (message,) = errors_of(with_values(**sections))
    assert fragment in message


def test_cross_field_check_is_skipped_when_a_field_is_already_wrong():
    # best_metric is itself invalid, so "needs X in metrics" would be noise.
    (message,) = errors_of(with_values(evaluation={"best_metric": "cidr", "metrics": ["loss"]}))
    assert message.startswith("evaluation.best_metric: must be one of")


def test_all_errors_are_reported_at_once(tmp_path):
    text = """\
experiment:
  seed: many
model:
  prefx_length: 5
  mapper: {type: mpl}
data:
  path: x.json
  subset_ratio: 2
training:
  learning_rate: -1
  warmup_steps: 10
  warmup_ratio: 0.5
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), ["evaluation.presett=greedy", "oops"])
    errors = info.value.errors
    expected_fragments = [
        "Unknown config key 'evaluation.presett' (did you mean 'evaluation.preset'?)",
        "Override 'oops' has no '='",
        "experiment.name is required",
        "experiment.seed: expected int, got str 'many'",
        "Unknown config key 'model.prefx_length' (did you mean 'model.prefix_length'?)",
        "model.mapper.type: must be one of 'mlp', 'transformer', 'grid', got 'mpl'",
        "data.subset_ratio: must be in (0, 1]",
        "training.learning_rate: must be > 0, got -1",
        "training.warmup_steps (10) and training.warmup_ratio (0.5) are both set",
    ]
    assert len(errors) == len(expected_fragments)
    for fragment in expected_fragments:
        assert any(fragment in error for error in errors), fragment
    # str() lists every problem, one per line, so the CLI can print it as is.
    assert str(info.value).splitlines() == errors
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------

def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "experiment:\n  name: demo\n  seed: [1, 2\ndata:\n  path: x\n", name="broken.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (message,) = info.value.errors
    assert message.startswith(f"{path}, line 4, column 5: invalid YAML:")
    assert "started on line 3" in message


def test_yaml_tab_indentation_error_names_the_line(tmp_path):
    path = write(tmp_path, "experiment:\n  name: demo\ndata:\n\tpath: x\n", name="tabs.yaml")
    with pytest.raises(ConfigError, match=r"tabs\.yaml, line 4, column 1: invalid YAML"):
        load_config(path)


def test_duplicate_yaml_key_is_an_error_not_silently_last(tmp_path):
    path = write(tmp_path, "experiment:\n  name: a\n  name: b\ndata:\n  path: x\n")
    with pytest.raises(ConfigError, match=r"line 3, column 3: invalid YAML: duplicate key 'name'"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"Config file '.*nope\.yaml' not found"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match=r"expected a mapping with sections experiment, model, .*got list"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_empty_file_reports_required_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "# nothing yet\n"))
    assert info.value.errors == ["experiment.name is required", "data.path is required"]


def test_validate_config_checks_configs_built_in_code():
    cfg = config_from_dict(MINIMAL)
    validate_config(cfg)  # fine
    bad = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, prefix_length=0))
    with pytest.raises(ConfigError, match=r"model.prefix_length: must be >= 1, got 0"):
        validate_config(bad)


# ------------------------------------------------------------------------------------------------
# The schema itself
# ------------------------------------------------------------------------------------------------

def test_every_field_is_documented_and_described():
    description = describe_config()
    for section in dataclasses.fields(ExperimentConfig):
        section_cls = typing.get_type_hints(ExperimentConfig)[section.name]
        for f in dataclasses.fields(section_cls):
            assert f.metadata.get("doc"), f"{section.name}.{f.name} has no doc"
            assert f"  {section.name}.{f.name} (" in description
    assert "experiment.name (str; required)" in description
    assert "training.warmup_ratio (float or null; default null)" in description


def test_choice_lists_match_the_exported_constants():
    hints = typing.get_type_hints(config_module.EvaluationConfig)
    assert typing.get_args(hints["preset"]) == DECODING_PRESETS
    assert set(typing.get_args(hints["best_metric"])) == set(BEST_METRICS)
    assert set(BEST_METRICS.values()) <= set(EVALUATION_METRICS)


def test_preset_names_match_the_generation_presets():
    # The config lists preset names itself (so loading a config does not import torch); this keeps the two
    # lists from drifting apart.
    from captioning.generation import PRESETS

    assert set(DECODING_PRESETS) == set(PRESETS)


ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "trainer" / "configs"
# Every experiment config in the repository: the shipped recipes and the committed zoo entries' experiment.yaml.
SHIPPED_CONFIGS = sorted(CONFIG_DIR.glob("*.yaml")) + sorted((ROOT / "model_zoo").glob("*/experiment.yaml"))


@pytest.mark.skipif(not SHIPPED_CONFIGS, reason="no trainer/configs/*.yaml yet")
@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.experiment.name


def test_bare_no_is_read_as_the_string_no(tmp_path):
    """YAML turns `no` into false; `training.mixed_precision: no` must still mean 'no'."""
    from trainer.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("experiment:\n  name: x\ndata:\n  path: d\ntraining:\n  mixed_precision: no\n")
    assert load_config(path).training.mixed_precision == "no"
    assert load_config(path, ["training.mixed_precision=no"]).training.mixed_precision == "no"


# ------------------------------------------------------------------------------------------------
# The nested model.mapper section (captioning.config.MapperConfig) and the model rules from the library
# ------------------------------------------------------------------------------------------------

def test_mapper_is_a_nested_section_with_the_zoo_configs_keys(tmp_path):
    from captioning.config import MapperConfig

    cfg = load_config(write(tmp_path, FULL_YAML), ["model.mapper.type=grid", "model.mapper.hidden_size=0"])
    assert cfg.model.mapper == MapperConfig(type="grid", hidden_size=0, num_layers=2, num_heads=2)
    assert config_to_dict(cfg)["model"]["mapper"] == {"type": "grid", "hidden_size": 0, "num_layers": 2,
                                                       "num_heads": 2, "clip_length": 10}
    # the whole section can be given at once, and left out it is all defaults
    cfg = load_config(write(tmp_path, FULL_YAML), ["model.mapper={type: mlp}"])
    assert cfg.model.mapper == MapperConfig(type="mlp")
    assert config_from_dict(MINIMAL).model.mapper == MapperConfig()
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg


def test_single_linear_mapper_is_reachable_and_negative_widths_are_not():
    assert config_from_dict(with_values(model={"mapper": {"hidden_size": 0}})).model.mapper.hidden_size == 0
    (message,) = errors_of(with_values(model={"mapper": {"hidden_size": -1}}))
    assert message.startswith("model.mapper.hidden_size: must be >= 0 or null") and message.endswith("got -1")


@pytest.mark.parametrize(("mapper", "message"), [
    ({"hiden_size": 5}, "Unknown config key 'model.mapper.hiden_size' (did you mean 'model.mapper.hidden_size'?)"),
    ({"num_heads": 0}, "model.mapper.num_heads: must be >= 1, got 0"),
    ({"num_layers": 0}, "model.mapper.num_layers: must be >= 1, got 0"),
    ({"clip_length": "ten"}, "model.mapper.clip_length: expected int, got str 'ten'"),
    ({"type": "transformer", "num_heads": "x"}, "model.mapper.num_heads: expected int, got str 'x'"),
])
def test_mapper_section_errors_name_the_nested_key(mapper, message):
    assert errors_of(with_values(model={"mapper": mapper})) == [message]


def test_model_rules_are_all_reported_at_once():
    errors = errors_of(with_values(model={"prefix_length": 10, "freeze_decoder": -2,
                                          "mapper": {"type": "grid", "num_layers": 0, "hidden_size": -3}}))
    assert len(errors) == 4
    assert errors[0].startswith("model.mapper.hidden_size: must be >= 0 or null")
    assert "model.mapper.num_layers: must be >= 1, got 0" in errors
    assert any(e.startswith("model.prefix_length: the grid mapper") and "(try 9 or 16)" in e for e in errors)
    assert any(e.startswith("model.freeze_decoder: must be 'none', 'all'") for e in errors)


@pytest.mark.parametrize(("old", "message"), [
    ({"mapper": "grid"}, "model.mapper is now a section: use model.mapper.type: grid"),
    ({"mapper_hidden_size": 0}, "model.mapper_hidden_size was renamed: use model.mapper.hidden_size"),
    ({"mapper_num_layers": 2}, "model.mapper_num_layers was renamed: use model.mapper.num_layers"),
    ({"mapper_num_heads": 2}, "model.mapper_num_heads was renamed: use model.mapper.num_heads"),
    ({"clip_length": 4}, "model.clip_length was renamed: use model.mapper.clip_length"),
])
def test_old_flat_mapper_keys_are_refused_with_the_new_key(old, message):
    assert errors_of(with_values(model=old)) == [message]


def test_old_keys_in_overrides_name_the_new_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, FULL_YAML), ["model.mapper_num_heads=4"])
    assert info.value.errors == [
        "model.mapper_num_heads was renamed: use model.mapper.num_heads in override 'model.mapper_num_heads=4'"]
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, FULL_YAML), ["model.mapper=grid"])
    assert info.value.errors == ["model.mapper is now a section: use model.mapper.type: grid"]


def test_image_size_has_one_key():
    (message,) = errors_of(with_values(model={"from_scratch": True, "encoder_config": {"image_size": 48}}))
    assert message.startswith("model.encoder_config.image_size:") and "model.image_size" in message
    assert config_from_dict(with_values(model={"image_size": 48})).model.image_size == 48


def test_model_rules_come_from_the_library():
    """The trainer reports captioning.config's own messages (prefixed model.), so the rules live once."""
    from captioning.config import MAPPER_TYPES, config_problems

    for values in ({"prefix_length": 0}, {"freeze_decoder": -1}, {"mapper": {"num_heads": 0}},
                   {"mapper": {"type": "grid"}, "prefix_length": 8}):
        assert errors_of(with_values(model=values)) == [f"model.{p}" for p in config_problems(values)]
    hints = typing.get_type_hints(config_module.ModelConfig)
    assert typing.get_type_hints(hints["mapper"])["type"] == typing.Literal[MAPPER_TYPES]
    source = Path(config_module.__file__).read_text()
    assert "grid_side" not in source and '"mlp", "transformer"' not in source and "must be a square" not in source


def test_describe_lists_the_nested_mapper_keys_with_docs():
    description = describe_config()
    for key in ("type", "hidden_size", "num_layers", "num_heads", "clip_length"):
        (line,) = [x for x in description.splitlines() if x.strip().startswith(f"model.mapper.{key} (")]
        assert line.split("): ", 1)[1], key
    assert "model.mapper.type (one of 'mlp', 'transformer', 'grid'; default 'mlp')" in description
    assert "model.mapper.hidden_size (int or null; default null)" in description


def test_config_cli_describes_and_checks(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "trainer.config", "describe"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == describe_config()
    good = subprocess.run([sys.executable, "-m", "trainer.config", "check", str(CONFIG_DIR / "coco_clip_gpt2.yaml"),
                           "model.mapper.type=grid", "model.prefix_length=9"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run([sys.executable, "-m", "trainer.config", "check", str(CONFIG_DIR / "coco_clip_gpt2.yaml"),
                          "model.mapper.type=grid"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "model.prefix_length: the grid mapper pools patches into a g x g grid" in bad.stderr
