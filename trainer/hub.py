"""Which hub Hub ids of models and datasets come from, and whether it can be reached: one answer for the trainer.

Hugging Face (the default, or the mirror the HF_ENDPOINT environment variable names), or ModelScope (the
config's ``model_hub``, or USE_MODELSCOPE_HUB=1 when it is ``auto``). Offline mode (HF_HUB_OFFLINE,
HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE) means nothing is downloaded and the local caches answer. Pure
Python, no torch: `check`, the trainer and the page's plan all ask here.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Optional
from urllib.parse import urlparse

from trainer.plan.catalog import modelscope_id

HUGGINGFACE = "huggingface"
MODELSCOPE = "modelscope"
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
# How long `check` and the loaders wait to learn that the hub cannot be reached, instead of the libraries'
# own retries (datasets spends about 25 s on an unreachable Hub before it gives up).
REACH_TIMEOUT_S = 2.0


TRUE_VALUES, FALSE_VALUES = ("1", "true", "yes", "y", "on"), ("", "0", "false", "no", "n", "off")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUE_VALUES


def setting_notes(hub: str) -> list[str]:
    """What is wrong with the environment that chose ``hub``, for the messages that say it cannot be reached:
    an HF_ENDPOINT that is not an http(s) URL, a USE_MODELSCOPE_HUB that is neither on nor off."""
    notes = []
    flag = os.environ.get("USE_MODELSCOPE_HUB", "").strip()
    if flag.lower() not in TRUE_VALUES + FALSE_VALUES:
        notes.append(f"USE_MODELSCOPE_HUB={flag!r} is neither 1/true nor 0/false, so it was read as off")
    problem = endpoint_problem(hub)
    if problem:
        notes.append(problem)
    return notes


def endpoint_problem(hub: str) -> Optional[str]:
    """Why the hub's endpoint (HF_ENDPOINT or MODELSCOPE_DOMAIN) is not a usable URL, or None."""
    url = endpoint(hub)
    variable = "MODELSCOPE_DOMAIN" if hub == MODELSCOPE else "HF_ENDPOINT"
    try:
        parsed = urlparse(url)
        host, _port = parsed.hostname, parsed.port
    except ValueError as exc:  # a bad port or IPv6 address
        return f"{variable}={url!r} is not a valid URL ({exc})"
    if parsed.scheme not in ("http", "https") or not host or " " in url:
        return (f"{variable}={url!r} is not an http(s) URL: give it as https://host (for example "
                "https://hf-mirror.com)")
    return None


def hub_offline() -> bool:
    """Offline mode: set by any of the Hugging Face libraries' offline variables."""
    return any(env_flag(name) for name in OFFLINE_VARIABLES)


def chosen_hub(model_hub: str = "auto") -> str:
    """`huggingface` or `modelscope`: the config's choice, or for `auto` the USE_MODELSCOPE_HUB variable."""
    if model_hub in (HUGGINGFACE, MODELSCOPE):
        return model_hub
    return MODELSCOPE if env_flag("USE_MODELSCOPE_HUB") else HUGGINGFACE


def endpoint(hub: str) -> str:
    """The base URL downloads go to."""
    if hub == MODELSCOPE:
        return os.environ.get("MODELSCOPE_DOMAIN", "").strip() or MODELSCOPE_ENDPOINT
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or HF_DEFAULT_ENDPOINT


def hub_label(hub: str) -> str:
    """The hub in words, for messages: the mirror's address when one is set."""
    if hub == MODELSCOPE:
        return "ModelScope"
    url = endpoint(hub)
    return "the Hugging Face Hub" if url == HF_DEFAULT_ENDPOINT else f"the Hugging Face mirror {url}"


def hub_model_id(name: str, hub: str) -> str:
    """The id to download ``name`` by on ``hub``: the catalog knows the ModelScope ids of its Hugging Face
    models (meta-llama/Llama-3.1-8B is LLM-Research/Meta-Llama-3.1-8B there); other ids pass unchanged."""
    if hub == MODELSCOPE:
        return modelscope_id(name) or name
    return name


def model_page(name: str, hub: str) -> str:
    """The web page of a model on the hub (shown beside messages and in the plan)."""
    if hub == MODELSCOPE:
        return f"{endpoint(hub)}/models/{hub_model_id(name, hub)}"
    return f"{endpoint(hub)}/{name}"


def reachable(hub: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` seconds (False offline, without trying).

    Name resolution has no timeout of its own, so the attempt runs in a thread that is abandoned when slow.
    """
    if hub_offline() or endpoint_problem(hub):
        return False
    parsed = urlparse(endpoint(hub))
    host, port = parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def unreachable_message(kind: str, name: str, hub: str) -> str:
    """Why a Hub id cannot be loaded now, and what to do: one wording for models and datasets."""
    where = hub_label(hub)
    notes = setting_notes(hub)
    if hub_offline():
        reason = (f"offline mode is on ({', '.join(v for v in OFFLINE_VARIABLES if env_flag(v))}) and it is not "
                  "in the local cache")
    elif endpoint_problem(hub):
        reason = notes.pop()
    else:
        cache = "" if hub == MODELSCOPE else "; a copy in the local cache is used with HF_HUB_OFFLINE=1"
        reason = f"{endpoint(hub)} cannot be reached (no network, or a firewall{cache})"
    mirror = "" if hub == MODELSCOPE else "; or set HF_ENDPOINT to a mirror you can reach, or USE_MODELSCOPE_HUB=1"
    also = "".join(f" ({note})" for note in notes)
    return (f"{kind} '{name}' cannot be loaded from {where}: {reason}{also}. Download it on a connected machine "
            f"and give the local path{mirror}")


def modelscope_missing(kind: str, name: str) -> Optional[str]:
    """A message when ModelScope is chosen but its package is not installed, else None."""
    import importlib.util

    if importlib.util.find_spec("modelscope") is not None:
        return None
    return (f"{kind} '{name}': model_hub is modelscope (or USE_MODELSCOPE_HUB=1) but the modelscope package is not "
            "installed: pip install 'tunedeck[modelscope]', or set model_hub to huggingface")
