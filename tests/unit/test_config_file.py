"""The provider config file (`xcomm.toml`) and provider sections: every problem has file:line."""

from __future__ import annotations

import inspect
import os
import textwrap
from pathlib import Path

import pytest

from xcomm import CommManager
from xcomm._config_file import (
    ConfigFileError,
    ProviderSettings,
    UnknownProvider,
    config_path,
    load_provider,
)
from xcomm._provider_settings import KINDS, settings_of

GOOD = """\
[providers.work]
kind = "smtp"
host = "smtp.example.com"
port = 587
username = "me@example.com"
password_env = "XCOMM_TEST_SMTP"
sender = "Me <me@example.com>"

[providers.inbox]
kind = "imap"
host = "imap.example.com"
username = "me@example.com"
password_env = "XCOMM_TEST_IMAP"

[providers.gmail]
kind = "gmail"
credentials_path = "~/.config/xcomm/gmail-token.json"
scopes = ["https://www.googleapis.com/auth/gmail.readonly"]

[providers.aws]
kind = "ses"
region = "eu-west-1"
profile = "mail"
tags = { team = "growth" }
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "xcomm.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path, name: str = "work") -> list[str]:
    with pytest.raises(ConfigFileError) as caught:
        load_provider(path, name)
    return [str(p) for p in caught.value.problems]


@pytest.fixture(autouse=True)
def passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XCOMM_TEST_SMTP", "smtp-secret")
    monkeypatch.setenv("XCOMM_TEST_IMAP", "imap-secret")


def test_each_kind_loads_with_its_settings(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    work = load_provider(path, "work")
    assert work == ProviderSettings(
        name="work",
        kind="smtp",
        settings={"host": "smtp.example.com", "port": 587, "username": "me@example.com",
                  "password_env": "XCOMM_TEST_SMTP", "sender": "Me <me@example.com>"},
        kinds={"work": "smtp", "inbox": "imap", "gmail": "gmail", "aws": "ses"},
    )  # fmt: skip
    assert load_provider(path, "inbox").settings["username"] == "me@example.com"
    gmail = load_provider(path, "gmail").settings
    assert gmail["credentials_path"] == str(Path.home() / ".config/xcomm/gmail-token.json")
    assert gmail["scopes"] == ["https://www.googleapis.com/auth/gmail.readonly"]
    assert load_provider(path, "aws").settings == {
        "region": "eu-west-1", "profile": "mail", "tags": {"team": "growth"},
    }  # fmt: skip


def test_a_relative_path_is_taken_from_the_files_folder(tmp_path: Path) -> None:
    path = write(tmp_path, '[providers.g]\nkind = "gmail"\ncredentials_path = "token.json"\n')
    assert load_provider(path, "g").settings["credentials_path"] == str(tmp_path / "token.json")


def test_an_unknown_name_lists_the_names_there_are(tmp_path: Path) -> None:
    with pytest.raises(UnknownProvider) as caught:
        load_provider(write(tmp_path, GOOD), "wrok")
    assert str(caught.value) == (
        f"no provider 'wrok' in {tmp_path / 'xcomm.toml'}; it has: work (smtp), inbox (imap), "
        "gmail (gmail), aws (ses)"
    )
    assert caught.value.names == ("work", "inbox", "gmail", "aws")


def test_secrets_are_refused_with_what_to_do_instead(tmp_path: Path) -> None:
    text = GOOD.replace('port = 587', 'password = "hunter2"').replace(
        'profile = "mail"', 'secret_access_key = "abc"'
    ).replace('user', 'oauth_token = "t"\nuser', 1)  # fmt: skip
    path = write(tmp_path, text)
    found = problems(path)
    assert found[0] == (
        f"{path}:4: [providers.work] password is not allowed: a settings file must not hold "
        "secrets; set password_env to the NAME of an environment variable that holds it "
        '(password_env = "SMTP_PASSWORD")'
    )
    assert found[1].startswith(f"{path}:5: [providers.work] oauth_token is not allowed")
    assert found[2] == (
        f"{path}:24: [providers.aws] secret_access_key is not allowed: a settings file must not "
        "hold secrets; SES reads AWS credentials from the AWS chain (AWS_* variables, profile)"
    )
    assert not any("hunter2" in p for p in found)


def test_types_required_keys_and_unknown_keys(tmp_path: Path) -> None:
    text = """\
    [providers.work]
    kind = "smtp"
    port = "587"
    pool_size = 0
    use_tls = 1
    hots = "x"

    [providers.inbox]
    kind = "imap"
    host = "imap.example.com"

    [providers.gmail]
    kind = "gmail"
    scopes = "one"
    """
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}:1: [providers.work] needs host = ...",
        f"{path}:3: [providers.work] port must be a whole number, not string '587'",
        f"{path}:4: [providers.work] pool_size must be more than 0, got 0",
        f"{path}:5: [providers.work] use_tls must be true or false, not integer 1",
        f"{path}:6: [providers.work] unknown key 'hots' (did you mean 'host'?)",
        f"{path}:8: [providers.inbox] needs username = ...",
        f"{path}:12: [providers.gmail] needs credentials_path = ...",
        f"{path}:14: [providers.gmail] scopes must be an array of strings, not string 'one'",
    ]


def test_bad_kinds_sections_and_names(tmp_path: Path) -> None:
    text = """\
    top = 1
    [providers.work]
    kind = "smpt"
    password = "x"

    [providers."two words"]
    kind = "imap"
    host = "h"
    username = "u"

    [provider]
    kind = "smtp"
    """
    path = write(tmp_path, text)
    found = problems(path)
    assert found[0] == f"{path}:1: 'top' is outside any section; put it under one of [providers]"
    assert found[1] == (
        f"{path}:3: [providers.work] kind must be one of 'smtp', 'ses', 'gmail', 'imap', "
        "'outlook'; got 'smpt'"
    )
    assert found[2].startswith(f"{path}:4: [providers.work] password is not allowed")
    assert found[3] == (
        f"{path}:6: [providers.two words]: use letters, digits, '-' and '_' in provider names"
    )
    assert found[4] == f"{path}:11: unknown section [provider] (did you mean 'providers'?)"


def test_a_sender_must_be_an_address(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('sender = "Me <me@example.com>"', 'sender = "me"'))
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:7: [providers.work] sender: ")


def test_environment_variables_are_checked_for_the_chosen_provider_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XCOMM_TEST_IMAP")
    path = write(tmp_path, GOOD)
    assert load_provider(path, "work").kind == "smtp"
    assert problems(path, "inbox") == [
        f"{path}:13: [providers.inbox] password_env: the environment variable XCOMM_TEST_IMAP "
        "is not set"
    ]


def test_syntax_errors_missing_files_and_empty_files(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("port = 587", "port = = 587"))
    assert problems(path) == [f"{path}:4: TOML syntax: Invalid value (column 8)"]
    missing = tmp_path / "none.toml"
    (problem,) = problems(missing)
    assert problem.startswith(f"{missing}: cannot read the config file: no such file; write one")
    empty = write(tmp_path, "")
    assert problems(empty) == [
        f'{empty}:1: no providers: add a [providers.NAME] section with kind = "..."'
    ]


def test_the_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XCOMM_CONFIG", raising=False)
    assert config_path() == Path("xcomm.toml")
    monkeypatch.setenv("XCOMM_CONFIG", "/etc/xcomm.toml")
    assert config_path() == Path("/etc/xcomm.toml")
    assert config_path("given.toml") == Path("given.toml")


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_is_a_factory_and_its_keys_are_its_settings(kind: str) -> None:
    parameters = inspect.signature(getattr(CommManager, kind)).parameters
    schema, required = settings_of(kind)
    assert set(schema) - set(parameters) == {"kind"}
    assert set(required) <= set(schema)
    assert not {"password", "secret_access_key", "oauth_token"} & set(schema)


def test_an_outlook_section_names_its_secret_by_variable(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        [providers.o365]
        kind = "outlook"
        tenant_id = "contoso.onmicrosoft.com"
        client_id = "11111111-2222-3333-4444-555555555555"
        client_secret_env = "XCOMM_TEST_GRAPH"
        mailbox = "news@contoso.com"
        """)  # fmt: skip
    with pytest.raises(ConfigFileError, match="XCOMM_TEST_GRAPH"):
        load_provider(path, "o365")  # the variable is not set
    os.environ["XCOMM_TEST_GRAPH"] = "graph-secret"
    try:
        loaded = load_provider(path, "o365")
    finally:
        del os.environ["XCOMM_TEST_GRAPH"]
    assert loaded.kind == "outlook" and loaded.settings["mailbox"] == "news@contoso.com"
    assert "graph-secret" not in repr(loaded)
    secret = write(tmp_path, '[providers.o]\nkind = "outlook"\nclient_secret = "s"\n')
    assert "client_secret_env" in problems(secret, "o")[0]
