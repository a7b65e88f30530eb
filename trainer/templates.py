"""Named chat templates for models whose tokenizer has none (base models, the demo model).

Each renders what LLaMA-Factory's template of the same name renders (its ``template.py`` slots: user,
assistant, system, default system, prefix); tests/test_templates_lf.py holds them to strings taken from
those definitions, and ``LLAMAFACTORY_DIFFERENCES`` says where tunedeck's deliberately differs.

A template turns a conversation into text. Each renderer returns the text as segments
``(text, is_answer)`` so that the tokens of the assistant's answers (which carry the loss) are known
exactly, without guessing where an answer starts. The end-of-turn marker that follows an answer is
part of the answer: the model must learn to stop.

Pure Python, no jinja, no tokenizer: only the tokenizer's BOS/EOS strings are passed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Optional

Segment = tuple[str, bool]  # (text, is an assistant answer)
Messages = list[dict[str, Any]]

ALPACA_SYSTEM = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.")
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
EMPTY_THOUGHT = "<think>\n\n</think>\n\n"
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def _split_system(messages: Messages) -> tuple[Optional[str], Messages]:
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return None, messages


def _chatml(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    out: list[Segment] = []
    for m in messages:
        if m["role"] == "assistant":
            out.append(("<|im_start|>assistant\n", False))
            out.append((m["content"] + "<|im_end|>\n", True))
        else:
            out.append((f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n", False))
    if add_generation_prompt:
        out.append(("<|im_start|>assistant\n", False))
    return out


def _qwen(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    """ChatML with Qwen's default system prompt on rows that have none (LLaMA-Factory's `qwen`)."""
    if not messages or messages[0]["role"] != "system":
        messages = [{"role": "system", "content": QWEN_SYSTEM}, *messages]
    return _chatml(messages, bos, eos, add_generation_prompt)


def _qwen3(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    """ChatML where every answer without reasoning gets an empty one, trained with it (LLaMA-Factory's
    `qwen3`: the model keeps its thinking format)."""
    out = _chatml(messages, bos, eos, add_generation_prompt)
    return [(text if not answer or "<think>" in text else EMPTY_THOUGHT + text, answer) for text, answer in out]


def _llama3(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    out: list[Segment] = [("<|begin_of_text|>", False)]
    for m in messages:
        header = f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n"
        if m["role"] == "assistant":
            out.append((header, False))
            out.append((m["content"] + "<|eot_id|>", True))
        else:
            out.append((header + m["content"] + "<|eot_id|>", False))
    if add_generation_prompt:
        out.append(("<|start_header_id|>assistant<|end_header_id|>\n\n", False))
    return out


def _llama2(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    """`<s>[INST] <<SYS>>...<</SYS>> question [/INST]answer</s>`, BOS before every turn."""
    system, turns = _split_system(messages)
    out: list[Segment] = []
    first_user = True
    for m in turns:
        if m["role"] == "user":
            content = f"<<SYS>>\n{system}\n<</SYS>>\n\n{m['content']}" if system and first_user else m["content"]
            first_user = False
            out.append((f"{bos}[INST] {content} [/INST]", False))
        else:
            out.append((m["content"] + eos, True))
    return out


def _mistral(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    """`<s>[INST] system\n\nquestion[/INST] answer</s>`: the space before an answer is part of it."""
    system, turns = _split_system(messages)
    out: list[Segment] = [(bos, False)] if bos else []
    first_user = True
    for m in turns:
        if m["role"] == "user":
            content = f"{system}\n\n{m['content']}" if system and first_user else m["content"]
            first_user = False
            out.append((f"[INST] {content}[/INST]", False))
        else:
            out.append((" " + m["content"] + eos, True))
    return out


def _gemma(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    system, turns = _split_system(messages)
    out: list[Segment] = [(bos, False)] if bos else []
    first_user = True
    for m in turns:
        if m["role"] == "user":
            content = f"{system}\n\n{m['content']}" if system and first_user else m["content"]
            first_user = False
            out.append((f"<start_of_turn>user\n{content}<end_of_turn>\n", False))
        else:
            out.append(("<start_of_turn>model\n", False))
            out.append((m["content"] + "<end_of_turn>\n", True))
    if add_generation_prompt:
        out.append(("<start_of_turn>model\n", False))
    return out


def _alpaca(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    """No BOS; every answer ends with EOS and a blank line, both trained (as LLaMA-Factory's `alpaca`)."""
    system, turns = _split_system(messages)
    out: list[Segment] = [((system or ALPACA_SYSTEM) + "\n\n", False)]
    for m in turns:
        if m["role"] == "user":
            out.append((f"### Instruction:\n{m['content']}\n\n### Response:\n", False))
        else:
            out.append((m["content"] + eos + "\n\n", True))
    return out


def _vicuna(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    """LLaMA-Factory's `vicuna`: no BOS, the system prompt right before `USER:`, the answer right after
    `ASSISTANT:`."""
    system, turns = _split_system(messages)
    out: list[Segment] = [(system or VICUNA_SYSTEM, False)]
    for m in turns:
        if m["role"] == "user":
            out.append((f"USER: {m['content']} ASSISTANT:", False))
        else:
            out.append((m["content"] + eos, True))
    return out


def _plain(messages: Messages, bos: str, eos: str, add_generation_prompt: bool) -> list[Segment]:
    """The smallest readable template: `User: ...` / `Assistant: ...`. The fallback of `auto`.

    The prompt ends with "Assistant:" and the answer starts with its space, so the generation prompt
    tokenizes exactly as in training.
    """
    system, turns = _split_system(messages)
    out: list[Segment] = [(bos, False)] if bos else []
    if system:
        out.append((system + "\n\n", False))
    for m in turns:
        if m["role"] == "user":
            separator = "\n" if any(answer for _, answer in out) else ""
            out.append((f"{separator}User: {m['content']}\nAssistant:", False))
        else:
            out.append((" " + m["content"] + eos, True))
    return out


# The same templates in jinja, for tokenizer.chat_template: a model trained with a named template is
# saved with it, so that generation (chat tab, export) renders prompts exactly as training did.
# tests/test_data.py checks that each renders the same text as its Python twin.
_JINJA = {
    "chatml": (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    "llama3": (
        "{{ '<|begin_of_text|>' }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
        "'<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"),
    "qwen": (
        "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n" + QWEN_SYSTEM + "<|im_end|>\\n' }}"
        "{% endif %}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    "qwen3": (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
        "{% if '<think>' not in m['content'] %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
        "{{ m['content'] + '<|im_end|>\\n' }}"
        "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    "llama2": (
        "{% set ns = namespace(system='', first=true) %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
        "{% elif m['role'] == 'user' %}{% if ns.first and ns.system %}"
        "{{ bos_token + '[INST] <<SYS>>\\n' + ns.system + '\\n<</SYS>>\\n\\n' + m['content'] + ' [/INST]' }}"
        "{% else %}{{ bos_token + '[INST] ' + m['content'] + ' [/INST]' }}{% endif %}{% set ns.first = false %}"
        "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"),
    "mistral": (
        "{{ bos_token }}{% set ns = namespace(system='', first=true) %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
        "{% elif m['role'] == 'user' %}{% if ns.first and ns.system %}"
        "{{ '[INST] ' + ns.system + '\\n\\n' + m['content'] + '[/INST]' }}"
        "{% else %}{{ '[INST] ' + m['content'] + '[/INST]' }}{% endif %}{% set ns.first = false %}"
        "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}"),
    "gemma": (
        "{{ bos_token }}{% set ns = namespace(system='', first=true) %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
        "{% elif m['role'] == 'user' %}{% if ns.first and ns.system %}"
        "{{ '<start_of_turn>user\\n' + ns.system + '\\n\\n' + m['content'] + '<end_of_turn>\\n' }}"
        "{% else %}{{ '<start_of_turn>user\\n' + m['content'] + '<end_of_turn>\\n' }}{% endif %}"
        "{% set ns.first = false %}"
        "{% else %}{{ '<start_of_turn>model\\n' + m['content'] + '<end_of_turn>\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"),
    "alpaca": (
        "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}"
        "{% else %}{{ \"" + ALPACA_SYSTEM + "\" }}{% endif %}{{ '\\n\\n' }}{% for m in messages %}"
        "{% if m['role'] == 'user' %}{{ '### Instruction:\\n' + m['content'] + '\\n\\n### Response:\\n' }}"
        "{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token + '\\n\\n' }}{% endif %}{% endfor %}"),
    "vicuna": (
        "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}"
        "{% else %}{{ \"" + VICUNA_SYSTEM + "\" }}{% endif %}{% for m in messages %}"
        "{% if m['role'] == 'user' %}{{ 'USER: ' + m['content'] + ' ASSISTANT:' }}"
        "{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"),
    "plain": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\\n\\n' }}"
        "{% elif m['role'] == 'user' %}{% if loop.index0 > 0 and messages[loop.index0 - 1]['role'] == 'assistant' %}"
        "{{ '\\n' }}{% endif %}{{ 'User: ' + m['content'] + '\\nAssistant:' }}"
        "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}"),
}


@dataclass(frozen=True)
class NamedTemplate:
    name: str
    description: str
    render: Callable[[Messages, str, str, bool], list[Segment]]

    @property
    def jinja(self) -> str:
        """The template as a jinja chat_template string (for tokenizer.chat_template)."""
        return _JINJA[self.name]


NAMED_TEMPLATES: dict[str, NamedTemplate] = {t.name: t for t in [
    NamedTemplate("chatml", "<|im_start|>role ... <|im_end|> (many fine-tunes)", _chatml),
    NamedTemplate("qwen", "ChatML with Qwen's default system prompt (Qwen 2 / 2.5)", _qwen),
    NamedTemplate("qwen3", "ChatML with an empty <think> block trained before answers without one (Qwen 3)",
                  _qwen3),
    NamedTemplate("llama3", "Llama 3 headers and <|eot_id|>", _llama3),
    NamedTemplate("llama2", "<s>[INST] <<SYS>> ... <</SYS>> ... [/INST] (Llama 2 chat)", _llama2),
    NamedTemplate("mistral", "[INST] ...[/INST] answer (Mistral)", _mistral),
    NamedTemplate("gemma", "<start_of_turn>user / model (Gemma)", _gemma),
    NamedTemplate("alpaca", "### Instruction: / ### Response:", _alpaca),
    NamedTemplate("vicuna", "USER: ... ASSISTANT: ...", _vicuna),
    NamedTemplate("plain", "User: ... / Assistant: ... (the fallback when a tokenizer has no template)", _plain),
]}
AUTO = "auto"
FALLBACK_TEMPLATE = "plain"

# Where a named template deliberately renders otherwise than LLaMA-Factory's of the same name: reported
# when a LLaMA-Factory config is imported or exported. Tool rows: see flatten_tools.
_TOOLS_DIFFER = ("rows with tool calls are written in Qwen's <tool_call>/<tool_response> format; LLaMA-Factory's "
                 "'{name}' writes them in its own tool format")
LLAMAFACTORY_DIFFERENCES: dict[str, str] = {
    "alpaca": "a row's own system prompt is followed by a blank line (LLaMA-Factory writes it directly before "
              "'### Instruction:'); " + _TOOLS_DIFFER.format(name="alpaca"),
    "qwen3": "with tools and no system prompt, the tool list opens the system turn (LLaMA-Factory writes two "
             "blank lines before it)",
    **{name: _TOOLS_DIFFER.format(name=name) for name in ("chatml", "llama3", "llama2", "mistral", "gemma", "vicuna")},
}

# Qwen's tool prompt, as LLaMA-Factory's `qwen` tool format and Qwen's own chat template write it.
QWEN_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, "
    "\"arguments\": <args-json-object>}}\n</tool_call>"
)


def tool_prompt(tools: list[dict]) -> str:
    """The text that tells the model which tools it has (appended to the system prompt)."""
    tool_text = "".join("\n" + json.dumps(t if "function" in t else {"type": "function", "function": t},
                                          ensure_ascii=False) for t in tools)
    return QWEN_TOOL_PROMPT.format(tool_text=tool_text)


def tool_call_text(calls: list[dict]) -> str:
    """An assistant's tool calls as the text the model learns to write."""
    blocks = []
    for call in calls:
        function = call.get("function", call)
        blocks.append("<tool_call>\n" + json.dumps({"name": function["name"], "arguments": function["arguments"]},
                                                   ensure_ascii=False) + "\n</tool_call>")
    return "\n".join(blocks)


def flatten_tools(messages: list[dict], tools: Optional[list[dict]], default_system: str = "") -> Messages:
    """A conversation with tools, tool calls and tool results as plain system/user/assistant turns, for a
    template that has no words for them: the tool list joins the system prompt, an assistant's calls are
    written into its answer (so they carry the loss), and consecutive tool results become one user turn
    of <tool_response> blocks (as Qwen and LLaMA-Factory's `qwen` do)."""
    out: Messages = []
    system, rest = (messages[0]["content"], messages[1:]) if messages and messages[0]["role"] == "system" else \
        (default_system, messages)
    if tools:
        system = system + tool_prompt(tools) if system else tool_prompt(tools).lstrip("\n")
    if system:
        out.append({"role": "system", "content": system})
    for m in rest:
        if m["role"] == "tool":
            block = f"<tool_response>\n{m['content']}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1]["content"].startswith("<tool_response>"):
                out[-1] = {"role": "user", "content": out[-1]["content"] + "\n" + block}
            else:
                out.append({"role": "user", "content": block})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            content = m.get("content") or ""
            calls = tool_call_text(m["tool_calls"])
            out.append({"role": "assistant", "content": f"{content}\n{calls}" if content else calls})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def has_tools(example: dict) -> bool:
    """A conversation with a tool list, tool calls or tool results."""
    return bool(example.get("tools")) or any(m.get("tool_calls") or m["role"] == "tool"
                                             for m in example.get("messages", ()))


def template_names() -> list[str]:
    """Every accepted value of `template`: auto first, then the named ones."""
    return [AUTO, *NAMED_TEMPLATES]


def unknown_template_message(name: str) -> str:
    return f"unknown chat template '{name}': use one of {', '.join(template_names())}"


def render_named(name: str, messages: Messages, bos: str = "", eos: str = "",
                 add_generation_prompt: bool = False) -> list[Segment]:
    """Render a conversation with a named template as (text, is_answer) segments."""
    template = NAMED_TEMPLATES.get(name)
    if template is None:
        raise KeyError(unknown_template_message(name))
    return [(text, answer) for text, answer in template.render(messages, bos or "", eos or "",
                                                                  add_generation_prompt) if text]


def chat_template_jinja(name: str) -> str:
    """The jinja chat_template of a named template, to save with a tokenizer trained on it."""
    template = NAMED_TEMPLATES.get(name)
    if template is None:
        raise KeyError(unknown_template_message(name))
    return template.jinja
