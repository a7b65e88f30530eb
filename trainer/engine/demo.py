"""The embedded demo model: a tiny Llama-architecture model built offline on first use, and cached.

`model_name_or_path: demo` resolves here. The tokenizer is a byte-level BPE trained locally (with the
`tokenizers` library) on the shipped demo texts, so the demo needs no download at all. The model is
then pre-trained for a few seconds on its own corpus, data/demo_pretrain.jsonl: plain documents over
the same words, numbers and facts, but never the demo dataset's instructions or answers. So, like a real
base model, it knows the words but not the tasks, and fine-tuning it on the demo dataset starts from a
high loss that falls visibly within a minute on a laptop CPU. (Pre-trained on the answers themselves,
it predicted them before any fine-tuning; a random base would plateau, since LoRA trains neither the
embeddings nor the output layer.)

The cache lives in ``$TUNEDECK_CACHE`` (default ``~/.cache/tunedeck``) under a name that carries the
builder's version and a hash of the texts it was built from, so a change to either rebuilds it. It is
written to a temporary directory and renamed into place, so concurrent callers are safe: the first
rename wins and the others discard their copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

DEMO_NAME = "demo"
# Bump when the architecture, the tokenizer recipe or the template below changes: the cache rebuilds.
BUILDER_VERSION = 6

VOCAB_SIZE = 1024
HIDDEN_SIZE = 128
INTERMEDIATE_SIZE = 256
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 4
MAX_POSITIONS = 2048
PRETRAIN_STEPS = 250
PRETRAIN_BATCH = 8
PRETRAIN_BLOCK = 64  # tokens per pre-training sequence (documents are concatenated, then cut)
PRETRAIN_LR = 3e-3

BOS, EOS_TEXT, PAD = "<|endoftext|>", "<|endoftext|>", "<|pad|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, IM_START, IM_END]

# ChatML. The {% generation %} markers let transformers return an assistant-token mask
# (apply_chat_template(..., return_assistant_tokens_mask=True)), so answers-only loss works.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ROOT = Path(__file__).resolve().parents[2]
DEMO_DATASET = ROOT / "data" / "demo.jsonl"
PRETRAIN_CORPUS = ROOT / "data" / "demo_pretrain.jsonl"

# Used only when the shipped pre-training corpus is missing (a broken checkout): the model still builds.
_FALLBACK_TEXT = [
    "Below is an instruction that describes a task. Write a response that appropriately completes it.",
    "What is the capital of France? The capital of France is Paris.",
    "Reverse the word 'model'. The reversed word is 'ledom'.",
    "Count from one to five. One, two, three, four, five.",
    "Translate 'good morning' to Spanish. Buenos dias.",
    "Add 12 and 30. The sum of 12 and 30 is 42.",
]


def cache_root() -> Path:
    return Path(os.environ.get("TUNEDECK_CACHE") or Path.home() / ".cache" / "tunedeck").expanduser()


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _read_strings(path: Path) -> list[str]:
    """Every string in a JSONL file (a missing file or a broken line gives nothing, not an error)."""
    texts: list[str] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    texts.extend(_strings(json.loads(line)))
                except ValueError:
                    continue
    except OSError:
        pass
    return texts


def _training_text() -> tuple[list[str], list[str], str]:
    """(the texts the tokenizer learns from, the documents the base is pre-trained on, a short hash of
    both: part of the cache name)."""
    documents = _read_strings(PRETRAIN_CORPUS) or list(_FALLBACK_TEXT)
    # The tokenizer also sees the fine-tuning text, so the demo's words are single tokens there too, and
    # the chat template's role names, so each becomes one token rather than a few letters.
    vocabulary = _read_strings(DEMO_DATASET) + documents + ["system\n", "user\n", "assistant\n"] * 4
    digest = hashlib.sha256("\n\x00".join(vocabulary).encode("utf-8")).hexdigest()[:12]
    return vocabulary, documents, digest


def demo_model_dir() -> Path:
    """Where the demo model for the current dataset text lives (built or not)."""
    digest = _training_text()[2]
    return cache_root() / f"demo-model-v{BUILDER_VERSION}-{digest}"


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "tokenizer.json").is_file() and any(
        path.glob("model*.safetensors"))


def ensure_demo_model() -> Path:
    """The demo model's directory, built (offline, a few seconds) on first use."""
    vocabulary, documents, digest = _training_text()
    target = cache_root() / f"demo-model-v{BUILDER_VERSION}-{digest}"
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _build(tmp, vocabulary, documents)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared by the dashboard and its runs
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process renamed its copy first (the target is a non-empty directory now).
            if not _is_complete(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def needs_build(name: str) -> bool:
    """True when `name` is the demo model and the next use will build it first (about half a minute)."""
    return name.strip().lower() == DEMO_NAME and not _is_complete(demo_model_dir())


def resolve_model_path(name: str) -> str:
    """`demo` -> the built demo model's directory; anything else unchanged."""
    if name.strip().lower() == DEMO_NAME:
        return str(ensure_demo_model())
    return name


def _build_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=IM_END,  # a chat turn ends with <|im_end|>: generation stops there
        pad_token=PAD,
        unk_token=None,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def _pretrain(model, tokenizer, texts: list[str]) -> None:
    """A few seconds of plain next-token training on the documents (call under a fixed seed)."""
    import torch

    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids(BOS)]
    blocks = [stream[i:i + PRETRAIN_BLOCK] for i in range(0, len(stream) - PRETRAIN_BLOCK + 1, PRETRAIN_BLOCK)]
    if not blocks:
        return
    data = torch.tensor(blocks)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: extra threads only wait for each other (see trainer.train._cpu_threads)
    try:
        _pretrain_loop(model, data)
    finally:
        torch.set_num_threads(threads)
    model.eval()


def _pretrain_loop(model, data) -> None:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 20) * max(0.1, 1 - step / PRETRAIN_STEPS))
    model.train()
    for _ in range(PRETRAIN_STEPS):
        batch = data[torch.randint(len(data), (PRETRAIN_BATCH,))]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)


def _build(out_dir: Path, vocabulary: list[str], documents: list[str]) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _build_tokenizer(vocabulary)
    config = LlamaConfig(
        # Padded to VOCAB_SIZE, as real models pad theirs: the shape, and so the plan's parameter counts, are
        # known before the model is built and do not depend on how many merges the tokenizer found.
        vocab_size=VOCAB_SIZE,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    # Seeded without touching the global RNG of a caller that is about to train.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        _pretrain(model, tokenizer, documents)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, max_new_tokens=64)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "README.md").write_text(
        "tunedeck demo model: a tiny Llama-architecture model pre-trained for a few seconds on "
        "data/demo_pretrain.jsonl, with a byte-level BPE tokenizer trained on tunedeck's demo texts. Built "
        "offline by trainer/engine/demo.py.\n", encoding="utf-8")
