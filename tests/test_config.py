from typing import Any, Self

import pytest
from pydantic import Field, SecretStr, field_validator, model_validator

from chathistory import BackendConfig, ConfigError, Identifier, validate_options
from chathistory.backends.memory import MemoryBackend


class SecretBackend(MemoryBackend):
    name = "secretive"

    class Config(MemoryBackend.Config):
        password: SecretStr
        retries: int = Field(3, ge=0)
        table: Identifier = "chat"


def test_wrong_type_names_backend_and_field() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_options("secretive", SecretBackend.Config, {"password": "pw", "retries": "many"})
    assert str(caught.value).startswith("backend 'secretive': option 'retries'")


def test_missing_and_unknown_options_are_named() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_options("secretive", SecretBackend.Config, {"pasword": "pw"})
    message = str(caught.value)
    assert "option 'password' is required" in message
    assert ("unknown option 'pasword' "
            "(known options: latency, refuse_nul, password, retries, table)") in message


@pytest.mark.parametrize("table", ['chat"; DROP TABLE x', "a b", "1abc", "x" * 64, "", "ünï"])
def test_names_that_would_reach_a_query_are_checked(table: str) -> None:
    with pytest.raises(ConfigError, match="option 'table'"):
        validate_options("secretive", SecretBackend.Config, {"password": "pw", "table": table})


def test_secrets_never_appear_in_errors_or_reprs() -> None:
    secret = "hunter2-very-secret"
    with pytest.raises(ConfigError) as caught:
        validate_options("secretive", SecretBackend.Config, {"password": secret, "retries": -1})
    assert secret not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        validate_options("secretive", SecretBackend.Config, {"password": 123, "table": secret})
    assert secret not in str(caught.value)
    backend = SecretBackend(SecretBackend.Config(password=SecretStr(secret)))
    assert secret not in repr(backend)
    assert secret not in str(backend.config)


def test_config_is_frozen() -> None:
    config = SecretBackend.Config(password=SecretStr("x"))
    with pytest.raises(ValueError, match="frozen"):
        config.retries = 5  # type: ignore[misc]


def test_unknown_option_lists_fields_by_the_names_users_type() -> None:
    class Aliased(BackendConfig):
        db_schema: str = Field("public", alias="schema")

    with pytest.raises(ConfigError, match=r"\(known options: schema\)"):
        validate_options("aliased", Aliased, {"schemaa": "x"})


class EitherOr(BackendConfig):
    conninfo: str | None = None
    pool: Any = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.conninfo is None and self.pool is None:
            raise ValueError("option 'conninfo' is required, unless an open pool is given")
        return self


def test_a_check_across_fields_reads_in_its_own_words() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_options("either", EitherOr, {})
    assert str(caught.value) == (
        "backend 'either': option 'conninfo' is required, unless an open pool is given")


def test_a_validator_on_one_field_is_named_without_pydantics_prefix() -> None:
    class Checked(BackendConfig):
        url: str

        @field_validator("url")
        @classmethod
        def _scheme(cls, url: str) -> str:
            if not url.startswith("x://"):
                raise ValueError("must be an x:// URL")
            return url

    with pytest.raises(ConfigError) as caught:
        validate_options("checked", Checked, {"url": "http://"})
    assert str(caught.value) == "backend 'checked': option 'url': must be an x:// URL"
