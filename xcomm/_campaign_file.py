"""Read and check a campaign file (`campaign.toml`) and its recipients CSV before anything is sent.

```toml
[campaign]
id = "digest-2026-11"            # optional; default: the file's name and a hash of its path
recipients = "subscribers.csv"   # relative to this file
rate_limit = 6000                # messages per minute

[template]
subject = "{{ first_name }}, your November digest"
text_file = "digest.txt"

[provider]
kind = "smtp"
host = "smtp.example.com"
username = "news@example.com"
password_env = "SMTP_PASSWORD"   # the NAME of an environment variable, never the password
sender = "News <news@example.com>"
```

`load_campaign(path)` returns a `CampaignSpec` or raises `CampaignFileError` listing every
problem found (up to `MAX_PROBLEMS`), each as `file:line: what is wrong`: TOML syntax, unknown
sections and keys (with a suggestion), wrong types, missing keys, template files that are
missing or do not compile, environment variables that are not set, and the recipients CSV (no
email column, a bad address on line N, a column the template needs: `xcomm._campaign_csv`
streams it, never holding it). `CampaignSpec.rows` says how many rows were checked. The full
schema is in docs/cli.md; `[provider]` is any sending kind of `xcomm._provider_settings`, and
the TOML reading is `xcomm._toml_file`'s.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from xcomm._campaign_csv import check_csv
from xcomm._console import shown
from xcomm._errors import ConfigurationError
from xcomm._provider_settings import read_provider
from xcomm._templates import Template, TemplateError, UnsubscribeSigner
from xcomm._toml_file import (
    BOOL,
    INT,
    MAX_PROBLEMS,
    NUMBER,
    STR,
    Field,
    Lines,
    Problem,
    Reader,
    Report,
    SettingsFileError,
    read_toml,
)

__all__ = [
    "MAX_PROBLEMS",
    "CampaignFileError",
    "CampaignSpec",
    "Problem",
    "load_campaign",
]

_POSITIVE_INT = replace(INT, positive=True)
_WHEN = Field((datetime, str), "a date and time with a UTC offset")

_CAMPAIGN: dict[str, Field] = {
    "id": STR,
    "recipients": STR,
    "email_column": STR,
    "max_concurrent": _POSITIVE_INT,
    "rate_limit": replace(NUMBER, positive=True),
    "per_domain_concurrency": _POSITIVE_INT,
    "policy": replace(STR, choices=("at-least-once", "at-most-once")),
    "retry_failed": BOOL,
    "processes": _POSITIVE_INT,
    "schedule_time": _WHEN,
    "unsubscribe_url": STR,
    "unsubscribe_secret_env": STR,
}
_TEMPLATE: dict[str, Field] = {
    "dir": STR,
    "subject": STR,
    "subject_file": STR,
    "text": STR,
    "text_file": STR,
    "html": STR,
    "html_file": STR,
    "name": STR,
}
_OUTBOX: dict[str, Field] = {"url": STR}
_SCHEMA: dict[str, Mapping[str, Field]] = {
    "campaign": _CAMPAIGN,
    "template": _TEMPLATE,
    "outbox": _OUTBOX,
}
#: `[provider]` is read by `xcomm._provider_settings` (its keys depend on its kind).
_SECTIONS = ("campaign", "template", "provider", "outbox")
#: `[campaign]` keys passed on to `comm.create_bulk_sender()`.
_SENDER_OPTIONS = ("max_concurrent", "rate_limit", "per_domain_concurrency", "policy",
                   "retry_failed", "processes")  # fmt: skip
#: The files `[template] dir = "..."` looks for (the layout of docs/examples/newsletter/).
_DIR_FILES = {"subject": "subject.txt", "text": "body.txt", "html": "body.html"}


class CampaignFileError(SettingsFileError):
    """The campaign file or its recipients are wrong; `problems` lists each with file and line.

    Nothing has been sent when this is raised.
    """


@dataclass(frozen=True)
class CampaignSpec:
    """A checked campaign file: everything `xcomm campaign run` needs to send it.

    Attributes:
        path: the campaign file.
        campaign_id: `[campaign] id`, or one derived from the file's path (stable across runs).
        recipients: the recipients CSV.
        email_column: the CSV column holding the addresses (lowercase).
        rows: data rows in the CSV (every one checked).
        template: the message template.
        unsubscribe: signs one-click unsubscribe links, when configured.
        provider: the provider kind for `comm.email(kind, **settings)`.
        settings: the provider's settings (`password_env` names a variable, never a secret).
        sender_options: keyword arguments for `comm.create_bulk_sender()`.
        schedule_time: when to send (None: now).
        outbox: `[outbox] url`, with a relative path resolved against the file's folder.
    """

    path: Path
    campaign_id: str
    recipients: Path
    email_column: str
    rows: int
    template: Template
    unsubscribe: UnsubscribeSigner | None
    provider: str
    settings: dict[str, Any]
    sender_options: dict[str, Any] = field(default_factory=dict)
    schedule_time: datetime | None = None
    outbox: str | None = None


def _default_id(path: Path) -> str:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{path.stem}-{digest}"


# -- loading ---------------------------------------------------------------------------------


def load_campaign(
    path: str | os.PathLike[str],
    *,
    campaign_id: str | None = None,
) -> CampaignSpec:
    """Read and check the campaign file at `path`, its templates and its recipients CSV.

    Args:
        path: the campaign file.
        campaign_id: overrides `[campaign] id`.

    Raises:
        CampaignFileError: with every problem found, each with its file and line.
    """
    path = Path(path)
    report = Report()
    text, data = read_toml(path, "the campaign file", CampaignFileError)
    base = path.parent
    toml = Reader(str(path), data, Lines(text), report, dict(_SCHEMA), base=base)
    toml.check_sections(_SECTIONS)
    for section in _SCHEMA:
        toml.check_keys(section)

    given_id = toml.get("campaign", "id")
    recipients = toml.get("campaign", "recipients", required=True)
    email_column = (toml.get("campaign", "email_column") or "email").strip().lower()
    sender_options = {
        key: value for key in _SENDER_OPTIONS if (value := toml.get("campaign", key)) is not None
    }
    schedule_time = _schedule_time(toml)
    unsubscribe = _unsubscribe(toml)
    template = _template(toml, base)
    provider, settings = _provider(toml)
    outbox = toml.get("outbox", "url")
    if outbox is not None and "://" not in outbox:
        outbox = str(base / outbox)
    processes = sender_options.get("processes")
    if isinstance(processes, int) and processes > 1 and (outbox or "").startswith("memory:"):
        toml.problem(
            "outbox",
            "url",
            f"[outbox] url {outbox!r}: processes = {processes} needs an outbox the other "
            'processes can open; give a SQLite file (url = "campaigns.sqlite3")',
        )

    csv_path = None
    if recipients is not None:
        csv_path = base / recipients
        if not csv_path.is_file():
            toml.problem(
                "campaign", "recipients", f"[campaign] recipients: no such file: {shown(csv_path)}"
            )
            csv_path = None
    rows = 0
    if csv_path is not None:
        rows = check_csv(csv_path, email_column, template, unsubscribe, report)
    report.raise_if_any(CampaignFileError)
    assert template is not None and csv_path is not None and provider is not None
    return CampaignSpec(
        path=path,
        campaign_id=campaign_id or given_id or _default_id(path),
        recipients=csv_path,
        email_column=email_column,
        rows=rows,
        template=template,
        unsubscribe=unsubscribe,
        provider=provider,
        settings=settings,
        sender_options=sender_options,
        schedule_time=schedule_time,
        outbox=outbox,
    )


def _schedule_time(toml: Reader) -> datetime | None:
    value: object = toml.get("campaign", "schedule_time")
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            toml.problem(
                "campaign",
                "schedule_time",
                f"[campaign] schedule_time {value!r} is not an ISO 8601 date and time "
                "(write e.g. 2026-11-02T09:00:00+01:00)",
            )
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        toml.problem(
            "campaign",
            "schedule_time",
            "[campaign] schedule_time needs a UTC offset, e.g. 2026-11-02T09:00:00+01:00 or "
            "2026-11-02T08:00:00Z (without one it would depend on the machine's time zone)",
        )
        return None
    return value


def _unsubscribe(toml: Reader) -> UnsubscribeSigner | None:
    url = toml.get("campaign", "unsubscribe_url")
    has_env = "unsubscribe_secret_env" in toml.table("campaign")
    if (url is None) != (not has_env):
        present, missing = (
            ("unsubscribe_url", "unsubscribe_secret_env")
            if url is not None
            else ("unsubscribe_secret_env", "unsubscribe_url")
        )
        toml.problem(
            "campaign", present, f"[campaign] {present} needs {missing} as well (or neither)"
        )
        return None
    if url is None:
        return None
    name = toml.get("campaign", "unsubscribe_secret_env")
    if name is None:
        return None
    if toml.env("campaign", "unsubscribe_secret_env") is None:  # reported
        return None
    try:
        # from_env: the campaign's definition keeps the variable's name, so workers can sign
        return UnsubscribeSigner.from_env(name, url)
    except ConfigurationError as exc:
        key = "unsubscribe_secret_env" if "secret" in str(exc) else "unsubscribe_url"
        toml.problem("campaign", key, f"[campaign] {key}: {exc}")
        return None


def _provider(toml: Reader) -> tuple[str | None, dict[str, Any]]:
    if "provider" not in toml.data:
        toml.problem("provider", None, "a [provider] section is needed (kind, host, sender)")
        return None, {}
    return read_provider(toml, "provider", sending=True, required=("sender",))


def _template(toml: Reader, base: Path) -> Template | None:
    if "template" not in toml.data:
        toml.problem("template", None, "a [template] section is needed (subject, text or html)")
        return None
    folder = toml.get("template", "dir")
    folder_path = None if folder is None else base / folder
    if folder_path is not None and not folder_path.is_dir():
        toml.problem("template", "dir", f"[template] dir: no such folder: {shown(folder_path)}")
        folder_path = None
    sources: dict[str, str] = {}
    given: set[str] = set()  # parts the file gives (even when they could not be read)
    origins: dict[str, tuple[str, int]] = {}  # part -> (file, first line of the source)
    for part in ("subject", "text", "html"):
        inline, file_key = toml.get("template", part), f"{part}_file"
        file_name = toml.get("template", file_key)
        if inline is not None or file_name is not None:
            given.add(part)
        if inline is not None and file_name is not None:
            toml.problem("template", file_key, f"[template] give {part} or {file_key}, not both")
            continue
        if inline is not None:
            offset = 1 if ("template", part) in toml.lines.multiline else 0
            sources[part] = inline
            origins[part] = (toml.file, toml.lines.of("template", part) + offset)
            continue
        if file_name is not None:
            file_path, key = base / file_name, file_key
        elif folder_path is not None and (folder_path / _DIR_FILES[part]).is_file():
            file_path, key = folder_path / _DIR_FILES[part], "dir"
            given.add(part)
        else:
            continue
        try:
            sources[part] = file_path.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            toml.problem("template", key, f"[template] {key}: {shown(file_path)}: {reason}")
            continue
        origins[part] = (shown(file_path), 1)
    if not given & {"subject"}:
        hint = f" (or a {_DIR_FILES['subject']} in dir)" if folder_path is not None else ""
        toml.problem("template", None, f"[template] needs subject or subject_file{hint}")
    if not given & {"text", "html"}:
        hint = f" (or {_DIR_FILES['text']} / {_DIR_FILES['html']} in dir)" if folder_path else ""
        toml.problem("template", None, f"[template] needs text or html, or both{hint}")
    if "subject" not in sources or not sources.keys() & {"text", "html"}:
        return None
    template = Template(
        subject=sources["subject"].strip(),
        text=sources.get("text"),
        html=sources.get("html"),
        name=toml.get("template", "name"),
    )
    try:
        template.compile()
    except TemplateError as exc:
        file, first = origins[exc.part]
        line = None if exc.line is None else first + exc.line - 1
        toml.report(file, line, str(exc))
        return None
    return template
