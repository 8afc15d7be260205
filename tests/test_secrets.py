"""Credentials are refused in params and redacted by every writer of params."""

import json

from kit.run import artifacts, secrets
from kit.run.records import write_manifest

TOKEN = "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"


def test_credential_names():
    assert all(
        map(secrets.is_secret, ["hub_token", "api_key", "token", "HF_TOKEN", "password", "client_secret"])
    )
    # counts of tokens, special tokens and other keys are settings
    assert not any(
        map(
            secrets.is_secret, ["max_new_tokens", "turn_tokens", "pad_token", "eos_token", "keys", "key_name"]
        )
    )


def test_redact_and_find():
    given = {
        "trl": {"hub_token": TOKEN, "learning_rate": 1e-4},
        "runs": [{"api_key": TOKEN}],
        "empty": {"token": None},
    }
    assert secrets.redact(given) == {
        "trl": {"hub_token": "<redacted>", "learning_rate": 1e-4},
        "runs": [{"api_key": "<redacted>"}],
        "empty": {"token": None},
    }
    assert secrets.find(given) == "trl.hub_token"
    assert secrets.find({"runs": [{"x": 1}, {"api_key": TOKEN}]}) == "runs[1].api_key"
    assert (
        secrets.find(secrets.redact(given)) == "trl.hub_token"
    )  # redacted is still a value: refused as input
    assert secrets.find({"trl": {"hub_token": None}}) is None


def test_writers_redact(tmp_path):
    parts = {"recipe": {"trl": {"hub_token": TOKEN, "learning_rate": 1e-4}}}
    manifest = write_manifest(tmp_path / "run", parts)
    artifacts.stamp(tmp_path / "fingerprint.json", parts, finished=True)
    for path in (manifest, tmp_path / "fingerprint.json"):
        text = path.read_text()
        assert TOKEN not in text and "<redacted>" in text
    assert (
        artifacts.stale(tmp_path / "fingerprint.json", parts) is None
    )  # the fingerprint is of the real parts
    other = {"recipe": {"trl": {"hub_token": TOKEN, "learning_rate": 2e-4}}}
    assert "learning_rate" in artifacts.stale(tmp_path / "fingerprint.json", other)
    assert json.loads(manifest.read_text())["params"]["recipe"]["trl"]["learning_rate"] == 1e-4


def test_credentials_in_urls_are_found_and_left_out_of_identities():
    from kit.llm.openai_backend import identity_string

    assert secrets.credential_in_url("http://user:sk-1@127.0.0.1:9/v1") == "userinfo (user:password@)"
    assert secrets.credential_in_url("https://h/v1?api_key=x") == "query parameter 'api_key'"
    assert secrets.credential_in_url("https://h/v1?X-Amz-Signature=x") == "query parameter 'X-Amz-Signature'"
    assert secrets.credential_in_url("https://h/v1?sig=x") == "query parameter 'sig'"
    assert secrets.credential_in_url("https://h/v1?model=x&keys=2") is None  # "keys" is not a credential
    assert secrets.credential_in_url("http://node7:8000/v1") is None
    assert secrets.public_url("http://u:sk-1@h:9/v1/?api_key=x#f") == "http://h:9/v1"
    assert (
        identity_string("m", ["http://u:sk-1@h:9/v1?api_key=x", "http://g/v1/"])
        == "m@http://h:9/v1,http://g/v1"
    )


def test_scrub_removes_known_keys_bearer_tokens_and_url_credentials():
    key = "sk-live-9a8b7c6d5e"
    secrets.register_value(key)
    line = (
        f"HTTP 401: invalid credentials: Bearer {key} for http://u:{key}@h/v1?token=abc; "
        f'{{"api_key": "other-secret-value"}} raw {key}'
    )
    clean = secrets.scrub(line)
    assert key not in clean and "other-secret-value" not in clean and "token=abc" not in clean
    assert clean.startswith(
        "HTTP 401: invalid credentials: Bearer <redacted> for http://<redacted>@h/v1?<redacted>"
    )
    assert secrets.scrub_values(f"the model said {key}") == "the model said <redacted>"
    assert (
        secrets.scrub_values("Bearer of good news, see http://a/b?c=d")
        == "Bearer of good news, see http://a/b?c=d"
    )


def test_endpoint_errors_are_one_scrubbed_line():
    from kit.llm.errors import EndpointError

    key = "sk-another-1f2e3d4c"
    secrets.register_value(key)
    err = EndpointError(f"http://h/v1/chat: HTTP 500: traceback\n  header Authorization: Bearer {key}\n{key}")
    assert (
        "\n" not in str(err)
        and key not in str(err)
        and str(err).startswith("http://h/v1/chat: HTTP 500: traceback")
    )


def test_stored_text_drops_a_key_this_process_read(tmp_path):
    from kit.run.cache import Cache
    from kit.run.files import atomic_write_text
    from kit.run.records import RecordStore

    key = "sk-stored-0a1b2c3d4e"
    secrets.register_value(key)
    store = RecordStore(tmp_path / "r.jsonl")
    store.append({"id": "1", "text": f"the server echoed {key}"})
    cache = Cache(tmp_path / "c.sqlite")
    cache.put_many({"k": f'"echo {key}"'.encode()})
    atomic_write_text(tmp_path / "page.txt", f"key {key}")
    assert store.get("1")["text"] == "the server echoed <redacted>"
    assert cache.get_many(["k"]) == {"k": b'"echo <redacted>"'}
    cache.close()
    assert all(key.encode() not in p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
