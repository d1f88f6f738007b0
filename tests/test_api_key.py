"""BNN_API_KEY: unset, no key is needed; set, it must be at least 16 characters (an empty or short
one stops the start, naming the variable), and the header is compared in constant time, never
matching when empty (service/settings.py, service/deps.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from harness.inputs import ROOT, SHIPPED, mnist_fixtures
from harness.server import free_port
from service.app import create_app
from service.deps import same_secret
from service.settings import MIN_API_KEY_CHARS, Settings

KEY = "client-key-0123456789abcdef"
PNG = mnist_fixtures()[0][0].read_bytes()


@pytest.mark.parametrize("key", ["", "s3cret", "x" * (MIN_API_KEY_CHARS - 1)])
def test_an_empty_or_short_key_is_refused_naming_the_variable(key, monkeypatch):
    monkeypatch.setenv("BNN_API_KEY", key)
    with pytest.raises(ValidationError) as refused:
        Settings()
    message = str(refused.value)
    assert f"BNN_API_KEY is set but {len(key)} characters long: give it at least 16" in message
    assert "input_value" not in message and (key == "" or key not in message)  # the key itself is not echoed


def test_unset_means_no_key_and_sixteen_characters_are_enough(monkeypatch):
    monkeypatch.delenv("BNN_API_KEY", raising=False)
    assert Settings().api_key is None
    monkeypatch.setenv("BNN_API_KEY", "k" * MIN_API_KEY_CHARS)
    key = Settings().api_key
    assert key is not None and key.get_secret_value() == "k" * 16


def test_the_service_does_not_start_with_an_empty_key():
    """``BNN_API_KEY= python -m service``: exit 2 with the message, before a model is loaded."""
    env = {**os.environ, "BNN_API_KEY": "", "BNN_PORT": str(free_port())}  # it stops at the settings, before binding
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "BNN_API_KEY is set but 0 characters long: give it at least 16" in result.stderr


def test_same_secret_compares_whole_values_and_never_matches_empty():
    assert same_secret(KEY, KEY)
    assert not same_secret(KEY[:-1], KEY) and not same_secret(KEY + "x", KEY) and not same_secret(KEY.upper(), KEY)
    assert not same_secret("", KEY) and not same_secret("", "")


def test_prediction_needs_the_exact_header():
    settings = Settings(model_path=SHIPPED, api_key=SecretStr(KEY), review=False, audit_fraction=0.0, workers=1)
    with TestClient(create_app(settings)) as client:
        def status(headers: dict[str, str]) -> int:
            return client.post("/predict", content=PNG, headers={"Content-Type": "image/png", **headers}).status_code

        assert [status({}), status({"X-API-Key": ""}), status({"X-API-Key": KEY[:-1]}), status({"X-API-Key": KEY})] == [
            401, 401, 401, 200]
