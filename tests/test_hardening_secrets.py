"""Secrets typed where they would be stored: tunedeck's own API tokens are a secret shape like the Hub's,
refused in a run's fields and in an API token's label (which is stored and listed in plain)."""

from __future__ import annotations

import pytest

from trainer.config import ConfigError, TrainConfig
from trainer.secret_shapes import secret_kind


def test_a_tunedeck_api_token_is_a_secret_shape(tmp_path):
    from webui.api_tokens import TokenStore
    from webui.auth import User

    token = TokenStore(tmp_path).create(User("bob"), "ci")[1]
    assert secret_kind(f"my run {token}") == "a tunedeck API token (tdk_...)"
    assert secret_kind("tdk_notes about tokens") is None and secret_kind("tdk_0123456789ab_short") is None
    with pytest.raises(ConfigError, match="tunedeck API token") as err:
        TrainConfig.from_yaml_text(f"run_name: nightly {token}\n", "request body")
    assert token not in str(err.value)


def test_an_api_token_label_holding_a_token_is_refused_and_not_stored(tmp_path):
    from webui.api_tokens import SecretLabelError, TokenStore
    from webui.auth import User

    store = TokenStore(tmp_path)
    hub = "hf_" + "Zq8WmX2vR4tY6uI8oP0aS2dF4gH6jK8lZx"
    with pytest.raises(SecretLabelError, match="label: looks like a Hugging Face token"):
        store.create(User("bob"), f"push with {hub}")
    assert store.list(User("bob")) == []
    assert not any(hub in p.read_text() for p in tmp_path.rglob("*") if p.is_file())
