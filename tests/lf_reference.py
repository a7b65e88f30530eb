"""LLaMA-Factory, as the tests judge tunedeck's exports against it: its argument names, the values it
accepts, and its dataset converters (reimplemented, since LLaMA-Factory itself is not installed here).

Argument names: the fields of LLaMA-Factory's ``src/llamafactory/hparams/`` dataclasses (model_args.py:
BaseModelArguments, QuantizationArguments, ProcessorArguments, ExportArguments, VllmArguments,
SGLangArguments; data_args.py: DataArguments; finetuning_args.py: FinetuningArguments with its Freeze,
LoRA, OFT, RLHF, GaLore, APOLLO, BAdam and SwanLab mixins; generating_args.py: GeneratingArguments;
training_args.py: RayArguments and Fp8Arguments) as of its releases for transformers 4.49 to 5.x, plus
the fields of the installed transformers' Seq2SeqTrainingArguments. Its parser refuses any other key.

Converters: data/converter.py's AlpacaDatasetConverter and SharegptDatasetConverter with parser.py's
DatasetAttr (columns not listed in an entry's ``columns`` are None; a named column that the dataset
lacks is a KeyError, as `datasets` builds the columns of a JSON file from all of its rows).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

MODEL_ARGS = {
    # BaseModelArguments
    "model_name_or_path", "adapter_name_or_path", "adapter_folder", "cache_dir", "use_fast_tokenizer",
    "resize_vocab", "split_special_tokens", "add_tokens", "add_special_tokens", "new_special_tokens_config",
    "init_special_tokens", "model_revision", "low_cpu_mem_usage", "rope_scaling", "flash_attn", "shift_attn",
    "mixture_of_depths", "use_unsloth", "use_unsloth_gc", "enable_liger_kernel", "moe_aux_loss_coef",
    "disable_gradient_checkpointing", "use_reentrant_gc", "upcast_layernorm", "upcast_lmhead_output",
    "train_from_scratch", "infer_backend", "offload_folder", "use_kv_cache", "use_v1_kernels", "infer_dtype",
    "hf_hub_token", "ms_hub_token", "om_hub_token", "print_param_status", "trust_remote_code",
    # QuantizationArguments
    "quantization_method", "quantization_bit", "quantization_type", "double_quantization",
    "quantization_device_map",
    # ProcessorArguments
    "image_max_pixels", "image_min_pixels", "image_do_pan_and_scan", "crop_to_patches", "video_max_pixels",
    "video_min_pixels", "video_fps", "video_maxlen", "use_audio_in_video", "audio_sampling_rate",
    # ExportArguments
    "export_dir", "export_size", "export_device", "export_quantization_bit", "export_quantization_dataset",
    "export_quantization_nsamples", "export_quantization_maxlen", "export_legacy_format", "export_hub_model_id",
    # VllmArguments, SGLangArguments
    "vllm_maxlen", "vllm_gpu_util", "vllm_enforce_eager", "vllm_max_lora_rank", "vllm_config",
    "sglang_maxlen", "sglang_mem_fraction", "sglang_tp_size", "sglang_config", "sglang_lora_backend",
}
DATA_ARGS = {
    "template", "dataset", "eval_dataset", "dataset_dir", "media_dir", "cutoff_len", "train_on_prompt",
    "mask_history", "streaming", "buffer_size", "mix_strategy", "interleave_probs", "overwrite_cache",
    "preprocessing_batch_size", "preprocessing_num_workers", "max_samples", "eval_num_beams",
    "ignore_pad_token_for_loss", "val_size", "eval_on_each_dataset", "packing", "neat_packing", "tool_format",
    "default_system", "enable_thinking", "tokenized_path", "data_shared_file_system",
}
FINETUNING_ARGS = {
    # FreezeArguments
    "freeze_trainable_layers", "freeze_trainable_modules", "freeze_extra_modules",
    # LoraArguments
    "additional_target", "lora_alpha", "lora_dropout", "lora_rank", "lora_target", "loraplus_lr_ratio",
    "loraplus_lr_embedding", "use_rslora", "use_dora", "pissa_init", "pissa_iter", "pissa_convert",
    "create_new_adapter",
    # OFTArguments
    "oft_rank", "oft_block_size", "oft_target", "module_dropout",
    # RLHFArguments
    "pref_beta", "pref_ftx", "pref_bco_weight", "pref_loss", "dpo_label_smoothing", "kto_chosen_weight",
    "kto_rejected_weight", "simpo_gamma", "ppo_buffer_size", "ppo_epochs", "ppo_score_norm", "ppo_target",
    "ppo_whiten_rewards", "ref_model", "ref_model_adapters", "ref_model_quantization_bit", "reward_model",
    "reward_model_adapters", "reward_model_quantization_bit", "reward_model_type", "ld_alpha",
    # GaloreArguments, ApolloArguments, BAdamArgument
    "use_galore", "galore_target", "galore_rank", "galore_update_interval", "galore_scale", "galore_proj_type",
    "galore_layerwise", "use_apollo", "apollo_target", "apollo_rank", "apollo_update_interval", "apollo_scale",
    "apollo_proj", "apollo_proj_type", "apollo_scale_type", "apollo_layerwise", "apollo_scale_front",
    "use_badam", "badam_mode", "badam_start_block", "badam_switch_mode", "badam_switch_interval",
    "badam_update_ratio", "badam_mask_mode", "badam_verbose",
    # SwanLabArguments
    "use_swanlab", "swanlab_project", "swanlab_workspace", "swanlab_run_name", "swanlab_mode", "swanlab_api_key",
    "swanlab_logdir", "swanlab_lark_webhook_url", "swanlab_lark_secret",
    # FinetuningArguments itself
    "pure_bf16", "stage", "finetuning_type", "use_llama_pro", "use_adam_mini", "use_mca", "use_muon",
    "use_dft_loss", "freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model",
    "compute_accuracy", "disable_shuffling", "early_stopping_steps", "plot_loss",
    "include_effective_tokens_per_second",
}
GENERATING_ARGS = {"do_sample", "temperature", "top_p", "top_k", "num_beams", "max_length", "max_new_tokens",
                   "repetition_penalty", "length_penalty", "skip_special_tokens"}
LF_TRAINING_ARGS = {"ray_run_name", "ray_storage_path", "ray_storage_filesystem", "ray_num_workers",
                    "resources_per_worker", "placement_strategy", "ray_init_kwargs", "fp8", "fp8_backend",
                    "fp8_enable_fsdp_float8_all_gather"}
# Added on LLaMA-Factory's main branch since those releases (read from its hparams/ at commit ff6d4d1, fields
# its train parser takes: none with init=False, none of the Megatron bridge's nested config). Not here:
# overwrite_output_dir, which main declares again but the releases on transformers 5 refuse.
LF_MAIN_ARGS = {
    # DataArguments
    "preserve_thinking",
    # FinetuningArguments
    "use_megatron_bridge", "use_hyper_parallel", "hyper_parallel_args", "hyper_parallel_cp_size", "use_asft_loss",
    "asft_alpha", "use_eaft_loss", "eaft_alpha",
    # KTransformersArguments (of ModelArguments)
    "use_kt", "kt_cpu_activation", "kt_weight_path", "kt_non_expert_weight_path", "kt_expert_checkpoint_path",
    "kt_use_lora_experts", "kt_lora_expert_num", "kt_lora_expert_intermediate_size",
    # RayArguments, ProfilerArguments (of TrainingArguments)
    "master_addr", "master_port", "enable_torch_profiler", "profiler_output_dir", "profiler_wait_steps",
    "profiler_warmup_steps", "profiler_active_steps", "profiler_repeat", "profiler_record_shapes",
    "profiler_profile_memory", "profiler_with_stack", "profile_modules",
}
# TrainingArguments keys that transformers 5 removed: LLaMA-Factory's parser refuses them there.
REMOVED_IN_TRANSFORMERS_5 = {"group_by_length", "evaluation_strategy", "no_cuda", "use_mps_device",
                             "overwrite_output_dir", "logging_dir"}

# Values LLaMA-Factory accepts (its enums and choices).
CHOICES = {
    "quantization_method": {"bnb", "gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"},
    "stage": {"pt", "sft", "rm", "ppo", "dpo", "kto"},
    "finetuning_type": {"lora", "oft", "freeze", "full"},
    "flash_attn": {"auto", "disabled", "sdpa", "fa2", "fa3"},
    "quantization_type": {"fp4", "nf4"},
    "quantization_bit": {2, 3, 4, 5, 6, 8},
    "template": {"default", "empty", "alpaca", "chatml", "qwen", "qwen3", "qwen3_nothink", "llama2", "llama3",
                 "mistral", "gemma", "gemma2", "vicuna", "yi", "glm4", "chatglm3", "deepseek", "phi"},
}


def training_argument_names() -> set[str]:
    import transformers

    return {f.name for f in dataclasses.fields(transformers.Seq2SeqTrainingArguments)}


def llamafactory_argument_names() -> set[str]:
    """Every key `llamafactory-cli train` takes with the installed transformers."""
    return (MODEL_ARGS | DATA_ARGS | FINETUNING_ARGS | GENERATING_ARGS | LF_TRAINING_ARGS | LF_MAIN_ARGS
            | training_argument_names())


def check_values(data: dict[str, Any]) -> list[str]:
    """What LLaMA-Factory (or transformers behind it) would refuse or silently misread in a training YAML."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    problems = [f"{key}: not an argument of LLaMA-Factory" for key in sorted(set(data) - llamafactory_argument_names())]
    for key, allowed in CHOICES.items():
        if key in data and data[key] not in allowed:
            problems.append(f"{key}: {data[key]!r} is not one of {sorted(allowed, key=str)}")
    if "lr_scheduler_type" in data and data["lr_scheduler_type"] not in {e.value for e in SchedulerType}:
        problems.append(f"lr_scheduler_type: {data['lr_scheduler_type']!r}")
    if "optim" in data and data["optim"] not in {e.value for e in OptimizerNames}:
        problems.append(f"optim: {data['optim']!r}")
    if data.get("bf16") and data.get("fp16"):
        problems.append("bf16 and fp16 both set")
    return problems


# --- the dataset converters ----------------------------------------------------------------------

_COLUMN_NAMES = ("prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
                 "audios", "chosen", "rejected", "kto_tag")
_TAG_NAMES = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag",
              "system_tag")


def dataset_attr(entry: dict[str, Any]) -> dict[str, Any]:
    """parser.py's DatasetAttr for one dataset_info.json entry."""
    attr: dict[str, Any] = {"formatting": entry.get("formatting", "alpaca"), "ranking": entry.get("ranking", False),
                            "prompt": "instruction", "query": "input", "response": "output", "history": None,
                            "messages": "conversations", "system": None, "tools": None, "images": None,
                            "videos": None, "audios": None, "chosen": None, "rejected": None, "kto_tag": None,
                            "role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                            "observation_tag": "observation", "function_tag": "function_call",
                            "system_tag": "system"}
    if "columns" in entry:
        for name in _COLUMN_NAMES:
            attr[name] = entry["columns"].get(name)
    if attr["formatting"] == "sharegpt" and "tags" in entry:
        for name in _TAG_NAMES:
            attr[name] = entry["tags"].get(name, attr[name])
    return attr


def read_like_datasets(path: Path) -> list[dict[str, Any]]:
    """A JSON/JSONL file as `datasets` loads it: every row has every column of the file (None where absent)."""
    text = path.read_text(encoding="utf-8")
    rows = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [{c: row.get(c) for c in columns} for row in rows]


def convert(example: dict[str, Any], attr: dict[str, Any]) -> dict[str, Any]:
    """One row -> {_prompt, _response, _system, _tools}; an empty _response is a row LLaMA-Factory drops."""
    if attr["formatting"] == "alpaca":
        return _convert_alpaca(example, attr)
    return _convert_sharegpt(example, attr)


def _convert_alpaca(example: dict[str, Any], attr: dict[str, Any]) -> dict[str, Any]:
    prompt = []
    if attr["history"] and isinstance(example[attr["history"]], list):
        for old_prompt, old_response in example[attr["history"]]:
            prompt += [{"role": "user", "content": old_prompt}, {"role": "assistant", "content": old_response}]
    query = []
    if attr["prompt"] and example[attr["prompt"]]:
        query.append(example[attr["prompt"]])
    if attr["query"] and example[attr["query"]]:
        query.append(example[attr["query"]])
    prompt.append({"role": "user", "content": "\n".join(query)})
    response = []
    if attr["response"] and isinstance(example[attr["response"]], str):
        response = [{"role": "assistant", "content": example[attr["response"]]}]
    return {"_prompt": prompt, "_response": response, "_system": example[attr["system"]] if attr["system"] else "",
            "_tools": example[attr["tools"]] if attr["tools"] else ""}


def _convert_sharegpt(example: dict[str, Any], attr: dict[str, Any]) -> dict[str, Any]:
    tag_mapping = {attr["user_tag"]: "user", attr["assistant_tag"]: "assistant",
                   attr["observation_tag"]: "observation", attr["function_tag"]: "function",
                   attr["system_tag"]: "system"}
    accept_tags = ((attr["user_tag"], attr["observation_tag"]), (attr["assistant_tag"], attr["function_tag"]))
    messages = example[attr["messages"]]
    role, content = attr["role_tag"], attr["content_tag"]
    if attr["system_tag"] and messages and messages[0][role] == attr["system_tag"]:
        system = messages[0][content]
        messages = messages[1:]
    else:
        system = example[attr["system"]] if attr["system"] else ""
    aligned, broken = [], False
    for turn, message in enumerate(messages):
        if message[role] not in accept_tags[turn % 2]:
            broken = True
            break
        aligned.append({"role": tag_mapping[message[role]], "content": message[content]})
    if len(aligned) % 2 != 0:
        broken = True
    prompt, response = ([], []) if broken else (aligned[:-1], aligned[-1:])
    return {"_prompt": prompt, "_response": response, "_system": system,
            "_tools": example[attr["tools"]] if attr["tools"] else ""}
