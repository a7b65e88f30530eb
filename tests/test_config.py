"""TrainConfig: defaults, YAML round trip, and a clear message for every kind of bad input."""

from __future__ import annotations

import pytest

from trainer.config import GROUP_KEYS, ConfigError, TrainConfig, load_config
from trainer.fieldspecs import field_specs


def errors_of(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    return info.value.by_field()


def test_defaults_are_a_valid_qlora_friendly_recipe():
    cfg = TrainConfig()
    assert cfg.lr_scheduler_type == "cosine"
    assert cfg.finetuning_type == "lora" and cfg.lora_bias == "none"
    assert cfg.lora_target == "all-linear"
    assert cfg.max_steps == -1  # epochs unless max_steps is set


def test_yaml_round_trip_keeps_every_field(tmp_path):
    cfg = TrainConfig(lora_target=["q_proj", "v_proj"], quantization_bit=4, max_samples=100, val_size=0.1,
                      eval_strategy="steps", learning_rate=1e-4, packing=True)
    path = tmp_path / "c.yaml"
    cfg.save(path)
    assert TrainConfig.from_yaml(path) == cfg


def test_unknown_key_names_the_closest_field():
    assert errors_of({"lora_rnak": 8}) == {"lora_rnak": "unknown key 'lora_rnak' — did you mean 'lora_rank'?"}
    assert "did you mean" not in errors_of({"zzz": 1})["zzz"]


@pytest.mark.parametrize("data, field, fragment", [
    ({"lora_rank": "big"}, "lora_rank", "valid integer"),
    ({"lora_rank": 0}, "lora_rank", "greater than or equal to 1"),
    ({"learning_rate": 0}, "learning_rate", "greater than 0"),
    ({"lora_dropout": 1.0}, "lora_dropout", "less than 1"),
    ({"optim": "adam"}, "optim", "'adamw_torch'"),
    ({"quantization_bit": 3}, "quantization_bit", "4 or 8"),
    ({"max_steps": 0}, "max_steps", "use -1 to train by epochs"),
    ({"val_size": 2.5}, "val_size", "whole number"),
    ({"finetuning_type": "full", "quantization_bit": 4}, "quantization_bit", "cannot be fully fine-tuned"),
    ({"eval_strategy": "steps"}, "eval_strategy", "val_size is 0"),
    ({"warmup_steps": 10, "warmup_ratio": 0.1}, "warmup_steps", "not both"),
    ({"load_best_model_at_end": True}, "load_best_model_at_end", "needs an evaluation"),
    ({"val_size": 0.1, "eval_strategy": "steps", "eval_steps": 30, "save_steps": 100,
      "load_best_model_at_end": True}, "save_steps", "multiple of eval_steps"),
    ({"early_stopping_patience": 3}, "early_stopping_patience", "eval loss"),
    ({"packing": True, "group_by_length": True}, "group_by_length", "packed rows"),
    ({"seed": 2**32}, "seed", "less than or equal to 4294967295"),  # numpy refused it when training began
])
def test_bad_values_name_their_field(data, field, fragment):
    errors = errors_of(data)
    assert field in errors, errors
    assert fragment in errors[field]


def test_warmup_in_steps_alone_and_precision_switches_as_written():
    # warmup_steps given alone wins over the default ratio; both given stay a contradiction (above).
    assert (TrainConfig(warmup_steps=10).warmup_ratio, TrainConfig(warmup_steps="10").warmup_steps) == (0.0, 10)
    assert TrainConfig(warmup_steps=0).warmup_ratio == TrainConfig().warmup_ratio > 0
    # bf16: "false" is off, as a person means it (bool("false") is True in Python).
    assert TrainConfig(bf16="false").precision == TrainConfig().precision
    assert TrainConfig(bf16="yes").precision == "bf16" and TrainConfig(fp16=1).precision == "fp16"
    with pytest.raises(Exception, match="bf16: expected true or false"):
        TrainConfig(bf16="maybe")


def test_llamafactory_and_transformers_spellings_are_accepted():
    cfg = TrainConfig.from_dict({"bf16": True, "lora_target": "all", "evaluation_strategy": "no"})
    assert cfg.precision == "bf16" and cfg.lora_target == "all-linear"
    cfg = TrainConfig.from_dict({"lora_target": "q_proj, v_proj", "max_steps": None})
    assert cfg.lora_target == ["q_proj", "v_proj"] and cfg.max_steps == -1
    assert TrainConfig.from_dict({"finetuning_type": "qlora"}).quantization_bit == 4


def test_broken_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("lora_rank: 8\nlora_target: [q_proj,\n")
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(path)
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        TrainConfig.from_yaml(path)


def test_preset_metadata_is_not_a_field():
    cfg = TrainConfig.from_dict({"preset": {"title": "x"}, "lora_rank": 8})
    assert cfg.lora_rank == 8
    assert "preset" in errors_of({"preset": "just a string"})


def test_every_field_has_help_group_and_a_form_kind():
    specs = field_specs()
    assert [s.name for s in specs] == list(TrainConfig.model_fields)
    for spec in specs:
        assert spec.help and spec.group in GROUP_KEYS
        assert spec.kind in {"bool", "int", "float", "str", "choice", "list", "dict"}
    by_name = {s.name: s for s in specs}
    assert by_name["lora_rank"].minimum == 1 and by_name["quantization_bit"].choices == (4, 8)
    assert by_name["packing"].optional and by_name["packing"].kind == "bool"


def test_every_integer_field_refuses_a_fraction_naming_the_field_and_never_rounds():
    integer_fields = [spec.name for spec in field_specs() if spec.kind == "int"]
    assert {"lora_rank", "cutoff_len", "per_device_train_batch_size", "max_steps"} <= set(integer_fields)
    for name in integer_fields:
        for value in (1.5, "2.5"):
            with pytest.raises(ConfigError) as caught:
                TrainConfig.from_dict({name: value})
            assert name in caught.value.by_field(), (name, value)
            assert "whole number" in caught.value.by_field()[name] and "not rounded" in caught.value.by_field()[name]
    # A whole number written as a float or a text is the number itself.
    assert TrainConfig.from_dict({"lora_rank": 8.0}).lora_rank == 8
    assert TrainConfig.from_dict({"lora_rank": " 8 "}).lora_rank == 8
    with pytest.raises(ConfigError, match="lora_rank: expects a whole number"):
        TrainConfig.from_dict({"lora_rank": float("inf")})


def test_an_absurd_max_steps_is_refused_by_name():
    with pytest.raises(ConfigError) as refused:
        load_config({"max_steps": 99999999999999999999999})
    assert "max_steps" in str(refused.value)
    assert load_config({"max_steps": 10**9}).max_steps == 10**9
