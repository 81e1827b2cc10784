"""Settings: FEDFAAS_ prefix, secret files before the environment, one default per setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedfaas.config import ENV_PREFIX, Settings, env_names, load_settings, secret_names


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FEDFAAS_SECRETS_DIR", str(tmp_path))


def test_every_setting_reads_its_prefixed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv("FEDFAAS_DRIVER_DELTA_S", "0.2")
    monkeypatch.setenv("FEDFAAS_DRIVER", "0")
    monkeypatch.setenv("FEDFAAS_AGG_CAPACITY", "4")
    monkeypatch.setenv("FEDFAAS_CACHE_FUNCTIONS", "a,b")
    monkeypatch.setenv("FEDFAAS_FAAS_GATEWAY_URL", "http://faas:8080/")
    monkeypatch.setenv("DRIVER_DELTA_S", "9")  # no prefix: not ours
    # Execute
    settings = load_settings()
    # Assert
    assert settings.driver_delta_s == 0.2 and settings.driver is False
    assert settings.agg_capacity == 4 and settings.cache_function_names == ["a", "b"]
    assert settings.faas_gateway_url == "http://faas:8080"


def test_an_empty_variable_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDFAAS_S3_SECURE", "")
    monkeypatch.setenv("FEDFAAS_AGG_KEEP_ALIVE_S", "")
    settings = load_settings()
    assert settings.s3_secure is False and settings.agg_keep_alive_s is None


def test_a_malformed_value_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDFAAS_CACHE_BUDGET_BYTES", "lots")
    with pytest.raises(ValueError, match="cache_budget_bytes"):
        load_settings()


def test_secret_file_then_secret_variable_then_plain_variable(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "s3-secret-key").write_text(" from-the-file\n")
    monkeypatch.setenv("FEDFAAS_S3_SECRET_KEY", "plain")
    monkeypatch.setenv("FEDFAAS_SECRET_S3_ACCESS_KEY", "secret-var")
    monkeypatch.setenv("FEDFAAS_S3_ACCESS_KEY", "plain")
    monkeypatch.setenv("FEDFAAS_SECRET_BASIC_AUTH_USER", "admin")
    (tmp_path / "basic-auth-password").write_text("pw")
    (tmp_path / "fedfaas-internal-token").write_text("\n")
    # Execute
    settings = load_settings()
    # Assert
    assert settings.s3_secret_key == "from-the-file"
    assert settings.s3_access_key == "secret-var"
    assert settings.faas_basic_auth == ("admin", "pw")
    assert settings.internal_token is None  # empty counts as absent
    assert "from-the-file" not in repr(settings) and "pw" not in repr(settings)


def test_an_empty_secret_file_falls_back_to_the_default(tmp_path: Path) -> None:
    (tmp_path / "s3-access-key").write_text("")
    assert load_settings().s3_access_key == Settings.s3_access_key == "fedfaas"


def test_a_missing_secrets_folder_is_not_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDFAAS_SECRETS_DIR", str(tmp_path / "absent"))
    assert load_settings().admin_token is None


def test_one_default_per_setting_and_each_documented() -> None:
    # Execute
    built = Settings()
    # Assert: the class-level default (read by the local stack) is the instance's
    for name, field in Settings.model_fields.items():
        assert getattr(Settings, name) == getattr(built, name), name
        assert field.description, f"{name} has no docstring"
    assert {ENV_PREFIX + "CACHE_BUDGET_BYTES", ENV_PREFIX + "RATE_LIMIT_PER_MIN"} <= env_names()
    assert secret_names() == {"s3-access-key", "s3-secret-key", "basic-auth-user", "basic-auth-password",
                              "fedfaas-admin-token", "fedfaas-internal-token"}
