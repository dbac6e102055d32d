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
schema is in docs/cli.md.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from xcomm._campaign_csv import check_csv
from xcomm._console import shown
from xcomm._errors import ConfigurationError, ValidationError
from xcomm._templates import Template, TemplateError, UnsubscribeSigner
from xcomm._validation import parse_address

__all__ = [
    "MAX_PROBLEMS",
    "CampaignFileError",
    "CampaignSpec",
    "Problem",
    "load_campaign",
]

#: Problems reported at most; the rest are counted.
MAX_PROBLEMS = 20

_ONE_OF = {"policy": ("at-least-once", "at-most-once")}
#: key -> (accepted types, what to write)
_Kind = tuple[tuple[type, ...], str]
_STR: _Kind = ((str,), "a string")
_INT: _Kind = ((int,), "a whole number")
_NUMBER: _Kind = ((int, float), "a number")
_BOOL: _Kind = ((bool,), "true or false")
_WHEN: _Kind = ((datetime, str), "a date and time with a UTC offset")

_CAMPAIGN: dict[str, _Kind] = {
    "id": _STR,
    "recipients": _STR,
    "email_column": _STR,
    "max_concurrent": _INT,
    "rate_limit": _NUMBER,
    "per_domain_concurrency": _INT,
    "policy": _STR,
    "retry_failed": _BOOL,
    "schedule_time": _WHEN,
    "unsubscribe_url": _STR,
    "unsubscribe_secret_env": _STR,
}
_TEMPLATE: dict[str, _Kind] = {
    "dir": _STR,
    "subject": _STR,
    "subject_file": _STR,
    "text": _STR,
    "text_file": _STR,
    "html": _STR,
    "html_file": _STR,
    "name": _STR,
}
#: What `[provider] kind = "smtp"` accepts: the TOML-writable settings of `CommManager.smtp`
#: (tests/unit/test_campaign_file.py keeps the two in step). Secrets come from environment
#: variables: `password_env` names one.
_SMTP: dict[str, _Kind] = {
    "kind": _STR,
    "host": _STR,
    "port": _INT,
    "username": _STR,
    "password_env": _STR,
    "use_tls": _BOOL,
    "start_tls": _BOOL,
    "validate_certs": _BOOL,
    "sender": _STR,
    "pool_size": _INT,
    "max_messages_per_connection": _INT,
    "idle_timeout": _NUMBER,
    "timeout": _NUMBER,
    "local_hostname": _STR,
    "allow_plaintext_auth": _BOOL,
    "max_message_size": _INT,
    "rate_limit": _NUMBER,
}
_OUTBOX: dict[str, _Kind] = {"url": _STR}
_SECTIONS: dict[str, dict[str, _Kind]] = {
    "campaign": _CAMPAIGN,
    "template": _TEMPLATE,
    "provider": _SMTP,
    "outbox": _OUTBOX,
}
#: `[campaign]` keys passed on to `comm.create_bulk_sender()`.
_SENDER_OPTIONS = ("max_concurrent", "rate_limit", "per_domain_concurrency", "policy",
                   "retry_failed")  # fmt: skip
_POSITIVE = frozenset({"max_concurrent", "rate_limit", "per_domain_concurrency", "port",
                       "pool_size", "max_messages_per_connection", "idle_timeout", "timeout",
                       "max_message_size"})  # fmt: skip
#: The files `[template] dir = "..."` looks for (the layout of docs/examples/newsletter/).
_DIR_FILES = {"subject": "subject.txt", "text": "body.txt", "html": "body.html"}

_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_HEADER = re.compile(r"\s*\[(?!\[)\s*([^\]]+?)\s*\]")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*=")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, and where: `str()` is `file:line: message`."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class CampaignFileError(ConfigurationError):
    """The campaign file or its recipients are wrong; `problems` lists each with file and line.

    Nothing has been sent when this is raised.
    """

    def __init__(self, problems: list[Problem], *, more: int = 0) -> None:
        self.problems = tuple(problems)
        self.more = more
        lines = [str(p) for p in problems]
        if more:
            lines.append(f"... and {more:,} more problems not shown")
        super().__init__("\n".join(lines))


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


class _Report:
    """Problems collected so far; counts (without keeping) those past `MAX_PROBLEMS`."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.more = 0

    def __call__(self, file: str, line: int | None, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(file, line, message))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.problems)

    def raise_if_any(self) -> None:
        """Raise them, file by file (in the order the files were met) and by line."""
        if self.problems:
            order = {file: n for n, file in enumerate(dict.fromkeys(p.file for p in self.problems))}
            problems = sorted(self.problems, key=lambda p: (order[p.file], p.line or 0))
            raise CampaignFileError(problems, more=self.more)


class _Lines:
    """Where each `[section]` and `key =` sits in the TOML text (tomllib does not say)."""

    def __init__(self, text: str) -> None:
        self.sections: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.multiline: set[tuple[str, str]] = set()  # values opening with `"""` + newline
        section, closing = "", ""
        for number, line in enumerate(text.splitlines(), 1):
            if closing:
                if closing in line:
                    closing = ""
                continue
            if header := _HEADER.match(line):
                section = header.group(1).strip().strip("\"'")
                self.sections.setdefault(section, number)
                continue
            if key := _KEY.match(line):
                name = key.group(1).strip("\"'")
                self.keys.setdefault((section, name), number)
                rest = line[key.end() :].strip()
                for quotes in ('"""', "'''"):
                    if rest.startswith(quotes) and rest.count(quotes) == 1:
                        closing = quotes
                        if rest == quotes:
                            self.multiline.add((section, name))

    def of(self, section: str, key: str | None = None) -> int:
        """The line of `key` in `section`, else of the section header, else 1."""
        if key is not None and (section, key) in self.keys:
            return self.keys[(section, key)]
        return self.sections.get(section, 1)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind_ok(value: object, kind: _Kind) -> bool:
    types, _ = kind
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


class _Reader:
    """Type-checked access to the parsed TOML, reporting problems with their lines."""

    def __init__(self, file: str, data: dict[str, Any], lines: _Lines, report: _Report) -> None:
        self.file = file
        self.data = data
        self.lines = lines
        self.report = report

    def problem(self, section: str, key: str | None, message: str) -> None:
        self.report(self.file, self.lines.of(section, key), message)

    def check_layout(self) -> None:
        for name, value in self.data.items():
            if not isinstance(value, dict):
                self.report(
                    self.file,
                    self.lines.of("", name),
                    f"{name!r} is outside any section; put it under one of "
                    f"{', '.join(f'[{s}]' for s in _SECTIONS)}",
                )
            elif name not in _SECTIONS:
                self.problem(
                    name, None, f"unknown section [{name}]{_suggest(name, list(_SECTIONS))}"
                )
        for section, known in _SECTIONS.items():
            table = self.data.get(section)
            if not isinstance(table, dict):
                continue
            for key in table:
                if section == "provider" and key == "password":
                    self.problem(
                        section,
                        key,
                        "[provider] password is not allowed: a campaign file must not hold "
                        "secrets; set password_env to the NAME of an environment variable that "
                        'holds it (password_env = "SMTP_PASSWORD")',
                    )
                elif key not in known:
                    self.problem(
                        section,
                        key,
                        f"[{section}] unknown key {key!r}{_suggest(key, list(known))}",
                    )

    def table(self, section: str) -> dict[str, Any]:
        value = self.data.get(section)
        return value if isinstance(value, dict) else {}

    def get(self, section: str, key: str, *, required: bool = False) -> Any:
        """The value of `key` if present and of the right type; None (and a problem) if not."""
        table = self.table(section)
        if key not in table:
            if required:
                self.problem(section, None, f"[{section}] needs {key} = ...")
            return None
        value = table[key]
        kind = _SECTIONS[section][key]
        if not _kind_ok(value, kind):
            self.problem(
                section,
                key,
                f"[{section}] {key} must be {kind[1]}, not {_toml_type(value)} {value!r}",
            )
            return None
        if key in _POSITIVE and value <= 0:
            self.problem(section, key, f"[{section}] {key} must be more than 0, got {value!r}")
            return None
        choices = _ONE_OF.get(key)
        if choices and value not in choices:
            self.problem(
                section,
                key,
                f"[{section}] {key} must be one of {', '.join(map(repr, choices))}; got {value!r}",
            )
            return None
        return value

    def env(self, section: str, key: str) -> str | None:
        """The value of the environment variable whose name is `[section] key`."""
        name = self.get(section, key)
        if name is None:
            return None
        value = os.environ.get(name)
        if not value:
            self.problem(
                section, key, f"[{section}] {key}: the environment variable {name} is not set"
            )
            return None
        return value


def _toml_type(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
             dict: "table", datetime: "date-time"}  # fmt: skip
    return next((n for t, n in names.items() if isinstance(value, t)), type(value).__name__)


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
    file = str(path)
    report = _Report()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = Problem(file, None, f"cannot read the campaign file: {reason}")
        raise CampaignFileError([problem]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = _TOML_AT.search(message)
        line = int(at.group(1)) if at else None
        if at:
            message = f"{message[: at.start()]} (column {at.group(2)})"
        raise CampaignFileError([Problem(file, line, f"TOML syntax: {message}")]) from None
    lines = _Lines(text)
    toml = _Reader(file, data, lines, report)
    toml.check_layout()
    base = path.parent

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
    report.raise_if_any()
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


def _schedule_time(toml: _Reader) -> datetime | None:
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


def _unsubscribe(toml: _Reader) -> UnsubscribeSigner | None:
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


def _provider(toml: _Reader) -> tuple[str | None, dict[str, Any]]:
    if "provider" not in toml.data:
        toml.problem("provider", None, "a [provider] section is needed (kind, host, sender)")
        return None, {}
    kind = toml.get("provider", "kind", required=True)
    if kind is not None and kind != "smtp":
        toml.problem("provider", "kind", f"[provider] kind must be 'smtp', got {kind!r}")
        kind = None
    for key in ("host", "sender"):
        toml.get("provider", key, required=True)
    settings: dict[str, Any] = {}
    for key in _SMTP:
        if key == "kind":
            continue
        value = toml.get("provider", key)
        if value is not None:
            settings[key] = value
    if "password_env" in settings and toml.env("provider", "password_env") is None:
        settings.pop("password_env")
    if "sender" in settings:
        try:
            parse_address(settings["sender"])
        except ValidationError as exc:
            toml.problem("provider", "sender", f"[provider] sender: {exc}")
    return kind, settings


def _template(toml: _Reader, base: Path) -> Template | None:
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
