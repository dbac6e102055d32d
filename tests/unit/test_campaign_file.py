"""Campaign files: every problem in the TOML, its templates or its CSV is found, with file:line."""

from __future__ import annotations

import inspect
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from xcomm import CommManager
from xcomm._campaign_csv import read_recipients
from xcomm._campaign_file import MAX_PROBLEMS, CampaignFileError, load_campaign
from xcomm._provider_settings import settings_of

CSV = "email,first_name,city\nada@example.com,Ada,London\nbob@example.org,Bob,Berlin\n"
GOOD = """\
[campaign]
recipients = "people.csv"

[template]
subject = "Hi {{ first_name }}"
text = '''
Hello {{ first_name }} from {{ city }}!
'''

[provider]
kind = "smtp"
host = "127.0.0.1"
sender = "News <news@example.com>"
"""


def write(folder: Path, toml: str, csv: str = CSV, name: str = "campaign.toml") -> Path:
    (folder / "people.csv").write_text(csv, encoding="utf-8")
    path = folder / name
    path.write_text(textwrap.dedent(toml), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(path)
    return [str(p) for p in caught.value.problems]


def test_a_good_file_loads(tmp_path: Path) -> None:
    spec = load_campaign(write(tmp_path, GOOD))
    assert spec.rows == 2 and spec.recipients == tmp_path / "people.csv"
    assert spec.provider == "smtp"
    assert spec.settings == {"host": "127.0.0.1", "sender": "News <news@example.com>"}
    assert spec.template.text == "Hello {{ first_name }} from {{ city }}!\n"
    assert spec.sender_options == {} and spec.schedule_time is None and spec.unsubscribe is None


def test_the_default_campaign_id_is_stable_per_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    first, again = load_campaign(path), load_campaign(path)
    assert first.campaign_id == again.campaign_id and first.campaign_id.startswith("campaign-")
    other = tmp_path / "other"
    other.mkdir()
    assert load_campaign(write(other, GOOD)).campaign_id != first.campaign_id
    assert load_campaign(path, campaign_id="given").campaign_id == "given"


def test_toml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('kind = "smtp"', "kind = smtp"))
    (problem,) = problems(path)
    assert problem == f"{path}:11: TOML syntax: Invalid value (column 8)"


def test_unknown_keys_and_sections_get_a_suggestion(tmp_path: Path) -> None:
    toml = GOOD.replace('host = "127.0.0.1"', 'hots = "127.0.0.1"') + "[campain]\nid = 'x'\n"
    path = write(tmp_path, toml)
    assert problems(path) == [
        f"{path}:10: [provider] needs host = ...",
        f"{path}:12: [provider] unknown key 'hots' (did you mean 'host'?)",
        f"{path}:14: unknown section [campain] (did you mean 'campaign'?)",
    ]


def test_a_literal_password_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + 'password = "hunter2"\n')
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:14: [provider] password is not allowed")
    assert "password_env" in problem and "hunter2" not in problem


def test_wrong_types_and_values(tmp_path: Path) -> None:
    toml = GOOD.replace(
        'recipients = "people.csv"',
        'recipients = "people.csv"\nmax_concurrent = "lots"\nrate_limit = 0\n'
        'policy = "exactly-once"\nretry_failed = 1',
    )
    path = write(tmp_path, toml)
    assert problems(path) == [
        f"{path}:3: [campaign] max_concurrent must be a whole number, not string 'lots'",
        f"{path}:4: [campaign] rate_limit must be more than 0, got 0",
        f"{path}:5: [campaign] policy must be one of 'at-least-once', 'at-most-once'; "
        "got 'exactly-once'",
        f"{path}:6: [campaign] retry_failed must be true or false, not integer 1",
    ]


def test_missing_sections_point_at_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[campaign]\nrecipients = "people.csv"\n')
    assert problems(path) == [
        f"{path}:1: a [template] section is needed (subject, text or html)",
        f"{path}:1: a [provider] section is needed (kind, host, sender)",
    ]


def test_missing_template_file_and_recipients(tmp_path: Path) -> None:
    toml = GOOD.replace('recipients = "people.csv"', 'recipients = "nobody.csv"').replace(
        "text = '''\nHello {{ first_name }} from {{ city }}!\n'''", 'html_file = "mail.html"'
    )
    path = write(tmp_path, toml)
    assert problems(path) == [
        f"{path}:2: [campaign] recipients: no such file: {tmp_path / 'nobody.csv'}",
        f"{path}:6: [template] html_file: {tmp_path / 'mail.html'}: No such file or directory",
    ]


def test_template_syntax_error_points_into_the_toml(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("from {{ city }}!", "from {{ city }!"))
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:7: the text template has a syntax error on line 1")


def test_template_syntax_error_points_into_its_file(tmp_path: Path) -> None:
    (tmp_path / "mail.html").write_text("<p>\n{% if plan %}\n<b>{{ plan }}</b>\n", "utf-8")
    toml = GOOD.replace(
        "text = '''\nHello {{ first_name }} from {{ city }}!\n'''", 'html_file = "mail.html"'
    )
    path = write(tmp_path, toml)
    (problem,) = problems(path)
    assert problem.startswith(f"{tmp_path / 'mail.html'}:3: the html template has a syntax error")


def test_template_dir_reads_the_newsletter_layout(tmp_path: Path) -> None:
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "subject.txt").write_text("News for {{ first_name }}\n", "utf-8")
    (folder / "body.html").write_text("<p>{{ city }}</p>", "utf-8")
    toml = GOOD.replace(
        "subject = \"Hi {{ first_name }}\"\ntext = '''\nHello {{ first_name }} from {{ city }}!"
        "\n'''",
        'dir = "news"',
    )
    spec = load_campaign(write(tmp_path, toml))
    assert spec.template.subject == "News for {{ first_name }}"
    assert (spec.template.text, spec.template.html) == (None, "<p>{{ city }}</p>")


def test_csv_without_the_email_column(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, csv="mail,first_name,city\nada@example.com,Ada,London\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{tmp_path / 'people.csv'}:1: no 'email' column in the header")
    assert "email_column" in problem


def test_email_column_names_another_column(tmp_path: Path) -> None:
    csv = "Mail,first_name,city\nada@example.com,Ada,London\n"
    toml = GOOD.replace(
        'recipients = "people.csv"', 'recipients = "people.csv"\nemail_column="Mail"'
    )
    assert load_campaign(write(tmp_path, toml, csv=csv)).email_column == "mail"


async def test_recipients_stream_with_email_from_the_column(tmp_path: Path) -> None:
    csv = "Mail,first_name,city\nada@example.com,Ada,London\n\n bob@example.org ,Bob,Berlin\n"
    toml = GOOD.replace(
        'recipients = "people.csv"', 'recipients = "people.csv"\nemail_column="Mail"'
    )
    spec = load_campaign(write(tmp_path, toml, csv=csv))
    rows = [row async for row in read_recipients(spec.recipients, spec.email_column)]
    assert rows == [
        {"first_name": "Ada", "city": "London", "email": "ada@example.com"},
        {"first_name": "Bob", "city": "Berlin", "email": "bob@example.org"},
    ]


def test_bad_addresses_are_reported_with_their_line(tmp_path: Path) -> None:
    csv = CSV + "ann@@example.com,Ann,Paris\n\n,Nobody,Nowhere\n"
    path = write(tmp_path, GOOD, csv=csv)
    people = tmp_path / "people.csv"
    found = problems(path)
    assert found[0].startswith(f"{people}:4: bad address 'ann@@example.com': the local part")
    assert found[1].startswith(f"{people}:6: bad address '': empty email address")
    assert len(found) == 2


def test_at_most_max_problems_are_listed_and_the_rest_counted(tmp_path: Path) -> None:
    csv = CSV + "".join(f"bad{i}@,X,Y\n" for i in range(MAX_PROBLEMS + 15))
    path = write(tmp_path, GOOD, csv=csv)
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(path)
    assert len(caught.value.problems) == MAX_PROBLEMS and caught.value.more == 15
    assert str(caught.value).endswith("... and 15 more problems not shown")


def test_a_column_the_template_needs(tmp_path: Path) -> None:
    toml = GOOD.replace(
        "from {{ city }}!", "from {{ city }} in {{ country }}, {{ nick | default('friend') }}!"
    )
    path = write(tmp_path, toml)
    (problem,) = problems(path)
    assert problem.startswith(
        f"{tmp_path / 'people.csv'}:1: no 'country' column, which the text template uses"
    )


def test_unsubscribe_needs_its_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = GOOD.replace(
        'recipients = "people.csv"',
        'recipients = "people.csv"\nunsubscribe_url = "https://example.com/u"\n'
        'unsubscribe_secret_env = "XCOMM_TEST_UNSUB"',
    )
    path = write(tmp_path, toml)
    monkeypatch.delenv("XCOMM_TEST_UNSUB", raising=False)
    assert problems(path) == [
        f"{path}:4: [campaign] unsubscribe_secret_env: the environment variable "
        "XCOMM_TEST_UNSUB is not set"
    ]
    monkeypatch.setenv("XCOMM_TEST_UNSUB", "a-secret-of-at-least-16-bytes")
    signer = load_campaign(path).unsubscribe
    assert signer is not None and signer.secret_env == "XCOMM_TEST_UNSUB"


def test_password_env_must_be_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, GOOD + 'password_env = "XCOMM_TEST_PASSWORD"\n')
    monkeypatch.delenv("XCOMM_TEST_PASSWORD", raising=False)
    assert problems(path) == [
        f"{path}:14: [provider] password_env: the environment variable XCOMM_TEST_PASSWORD "
        "is not set"
    ]
    monkeypatch.setenv("XCOMM_TEST_PASSWORD", "s3cret")
    assert load_campaign(path).settings["password_env"] == "XCOMM_TEST_PASSWORD"


def test_schedule_time_needs_an_offset(tmp_path: Path) -> None:
    naive = GOOD.replace('recipients = "people.csv"', 'recipients = "people.csv"\n'
                         "schedule_time = 2030-01-02T09:00:00")  # fmt: skip
    (problem,) = problems(write(tmp_path, naive))
    assert problem.startswith(f"{tmp_path / 'campaign.toml'}:3: [campaign] schedule_time needs")
    aware = naive.replace("T09:00:00", "T09:00:00Z")
    spec = load_campaign(write(tmp_path, aware))
    assert spec.schedule_time == datetime(2030, 1, 2, 9, tzinfo=UTC)


def test_provider_keys_are_the_toml_writable_settings_of_comm_smtp() -> None:
    schema, required = settings_of("smtp")
    parameters = inspect.signature(CommManager.smtp).parameters
    assert set(schema) - set(parameters) == {"kind"}
    assert set(parameters) - set(schema) == {
        "self", "password", "oauth_token", "tls_context", "retry",
    }  # fmt: skip
    assert required == ("host",)


def test_provider_is_any_kind_that_sends(tmp_path: Path) -> None:
    ses = GOOD.replace('kind = "smtp"\nhost = "127.0.0.1"', 'kind = "ses"\nregion = "eu-west-1"')
    spec = load_campaign(write(tmp_path, ses))
    assert spec.provider == "ses"
    assert spec.settings == {"region": "eu-west-1", "sender": "News <news@example.com>"}
    path = write(tmp_path, GOOD.replace('kind = "smtp"', 'kind = "imap"'))
    assert problems(path) == [
        f"{path}:11: [provider] kind must be one of 'smtp', 'ses', 'gmail', 'outlook'; got 'imap'"
    ]
