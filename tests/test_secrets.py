"""Credentials are refused in params and redacted by every writer of params."""

import json

from kit.run import artifacts, secrets
from kit.run.records import write_manifest

TOKEN = "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"


def test_credential_names():
    assert all(map(secrets.is_secret, ["hub_token", "api_key", "token", "HF_TOKEN", "password", "client_secret"]))
    # counts of tokens, special tokens and other keys are settings
    assert not any(map(secrets.is_secret, ["max_new_tokens", "turn_tokens", "pad_token", "eos_token", "keys", "key_name"]))


def test_redact_and_find():
    given = {"trl": {"hub_token": TOKEN, "learning_rate": 1e-4}, "runs": [{"api_key": TOKEN}], "empty": {"token": None}}
    assert secrets.redact(given) == {"trl": {"hub_token": "<redacted>", "learning_rate": 1e-4},
                                     "runs": [{"api_key": "<redacted>"}], "empty": {"token": None}}
    assert secrets.find(given) == "trl.hub_token"
    assert secrets.find({"runs": [{"x": 1}, {"api_key": TOKEN}]}) == "runs[1].api_key"
    assert secrets.find(secrets.redact(given)) == "trl.hub_token"  # redacted is still a value: refused as input
    assert secrets.find({"trl": {"hub_token": None}}) is None


def test_writers_redact(tmp_path):
    parts = {"recipe": {"trl": {"hub_token": TOKEN, "learning_rate": 1e-4}}}
    manifest = write_manifest(tmp_path / "run", parts)
    artifacts.stamp(tmp_path / "fingerprint.json", parts, finished=True)
    for path in (manifest, tmp_path / "fingerprint.json"):
        text = path.read_text()
        assert TOKEN not in text and "<redacted>" in text
    assert artifacts.stale(tmp_path / "fingerprint.json", parts) is None  # the fingerprint is of the real parts
    other = {"recipe": {"trl": {"hub_token": TOKEN, "learning_rate": 2e-4}}}
    assert "learning_rate" in artifacts.stale(tmp_path / "fingerprint.json", other)
    assert json.loads(manifest.read_text())["params"]["recipe"]["trl"]["learning_rate"] == 1e-4
