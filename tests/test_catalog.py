"""The model catalog: exact shapes, parameter counts matching the model cards, config.json reading."""

from __future__ import annotations

import json

import pytest

from trainer.plan.catalog import GPU_CHOICES, catalog_shape, gpu_choice, list_models, model_shape, shape_from_config

# Parameter counts stated by the model cards / safetensors metadata (rounded as published).
PUBLISHED_BILLIONS = {
    "meta-llama/Llama-3.1-8B": 8.03,
    "meta-llama/Llama-3.1-70B": 70.55,
    "meta-llama/Llama-3.2-1B": 1.24,
    "meta-llama/Llama-3.2-3B": 3.21,
    "mistralai/Mistral-7B-v0.3": 7.25,
    "Qwen/Qwen2.5-0.5B": 0.49,
    "Qwen/Qwen2.5-1.5B": 1.54,
    "Qwen/Qwen2.5-7B": 7.62,
    "google/gemma-2-2b": 2.61,
    "google/gemma-2-9b": 9.24,
    "microsoft/Phi-3-mini-4k-instruct": 3.82,
    "THUDM/chatglm3-6b": 6.24,
    "openlm-research/open_llama_7b_v2": 6.74,
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": 1.10,
}


@pytest.mark.parametrize("name,billions", sorted(PUBLISHED_BILLIONS.items()))
def test_parameter_count_from_shape_matches_the_model_card(name, billions):
    shape = model_shape(name)
    assert shape is not None, name
    assert shape.parameter_count() / 1e9 == pytest.approx(billions, abs=0.006)


def test_llama_3_1_8b_has_its_published_config_values():
    shape = model_shape("meta-llama/Llama-3.1-8B")
    assert (shape.num_layers, shape.hidden_size, shape.intermediate_size, shape.num_attention_heads,
            shape.num_key_value_heads, shape.vocab_size, shape.tie_word_embeddings) == \
        (32, 4096, 14336, 32, 8, 128256, False)
    assert shape.parameter_count() == 8_030_261_248
    assert shape.gated
    # LoRA r 16 on all seven projections: sum of r * (in + out) over 32 layers.
    assert sum(16 * (n_in + n_out) for _, n_in, n_out in shape.linear_modules()) * shape.num_layers == 41_943_040


def test_lookup_by_alias_bare_name_and_case():
    base = model_shape("meta-llama/Llama-3.1-8B")
    assert model_shape("meta-llama/Llama-3.1-8B-Instruct") is base
    assert model_shape("llama-3.1-8b") is base
    assert model_shape(" Qwen/Qwen2.5-7B-Instruct/ ").name == "Qwen/Qwen2.5-7B"
    assert model_shape("someone/unknown-model") is None
    assert model_shape("") is None
    assert catalog_shape("other-org/Llama-3.1-8B") is None  # another org's repo may differ


def test_every_catalog_entry_is_consistent():
    names = set()
    for shape in list_models():
        assert shape.name not in names
        names.add(shape.name)
        assert shape.num_attention_heads % shape.num_key_value_heads == 0, shape.name
        assert shape.parameter_count() > 0
        assert shape.to_dict()["num_parameters"] == shape.parameter_count()


def test_local_directory_config_json_is_read_without_weights(tmp_path):
    config = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
              "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    shape = model_shape(str(tmp_path))
    assert shape.source == "config.json"
    assert (shape.num_layers, shape.kv_size, shape.resolved_head_dim) == (2, 32, 16)
    # by hand: per layer q 64*64 + k 64*32 + v 64*32 + o 64*64 + 3 * 64*128 + 2 norms of 64
    per_layer = 4096 + 2048 + 2048 + 4096 + 3 * 8192 + 128
    assert shape.parameter_count() == 2 * per_layer + 1000 * 64 + 64


def test_config_json_of_chatglm_and_multimodal_wrappers():
    glm = shape_from_config({"model_type": "chatglm", "num_layers": 28, "hidden_size": 4096,
                             "ffn_hidden_size": 13696, "num_attention_heads": 32, "multi_query_attention": True,
                             "multi_query_group_num": 2, "kv_channels": 128, "padded_vocab_size": 65024,
                             "add_qkv_bias": True})
    assert glm.parameter_count() == catalog_shape("THUDM/chatglm3-6b").parameter_count()
    wrapped = shape_from_config({"model_type": "llava", "text_config": {
        "model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
        "vocab_size": 100}})
    assert wrapped.intermediate_size == 256 and wrapped.num_key_value_heads == 4
    with pytest.raises(ValueError, match="hidden_size"):
        shape_from_config({"model_type": "bert_like", "num_hidden_layers": 2, "num_attention_heads": 2,
                           "vocab_size": 10})


def test_broken_config_json_is_unknown_not_a_crash(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    assert model_shape(str(tmp_path)) is None


def test_gpu_choices():
    assert [g.memory_gib for g in GPU_CHOICES] == [16, 24, 40, 48, 80, 141]
    assert gpu_choice("24 GB").memory_gib == 24
    assert gpu_choice(80).total_bytes == 80 * 1024 ** 3
    assert gpu_choice("12") is None and gpu_choice("big") is None


def test_demo_model_shape_without_building_it():
    shape = model_shape("demo")
    assert shape is not None and shape.source == "demo"
    assert shape.num_layers >= 1 and shape.vocab_size >= 100 and not shape.gated


@pytest.mark.parametrize("config", [
    {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 0, "vocab_size": 10},
    {"model_type": "llama", "num_hidden_layers": "two", "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10},
    {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": [64], "num_attention_heads": 4, "vocab_size": 10},
    {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10,
     "num_key_value_heads": -1},
    ["not", "a", "mapping"],
])
def test_nonsense_config_json_is_unknown_not_a_crash(tmp_path, config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert model_shape(str(tmp_path)) is None


def test_odd_names_are_unknown_not_a_crash(tmp_path):
    for name in ("a\x00b", "x" * 5000, "/", "   ", str(tmp_path)):  # an empty local directory too
        assert model_shape(name) is None


def test_a_hub_model_in_the_local_hub_cache_is_read_offline(tmp_path, monkeypatch):
    snapshot = tmp_path / "models--someone--tiny-llama" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(
        {"model_type": "llama", "num_hidden_layers": 3, "hidden_size": 32, "num_attention_heads": 2, "vocab_size": 50}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    shape = model_shape("someone/tiny-llama")
    assert shape is not None and shape.source == "hub cache" and shape.num_layers == 3
    assert model_shape("someone/other-model") is None
    # a catalog model keeps its catalog entry (licence gate included)
    assert model_shape("meta-llama/Llama-3.1-8B").gated
