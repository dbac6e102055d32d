"""Named loggers, one-call configuration, and redaction of secrets.

xcomm logs through `logging.getLogger("xcomm....")` and never configures logging on import.
`configure_logging()` is for applications that want xcomm's output formatted for them.
Anything that may carry a secret passes through `redact()` / `redact_url()` first, and a
filter on the handlers that `configure_logging()` installs scrubs bearer tokens, basic-auth
credentials and `password=`/`token=` pairs that reach a message by accident.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from xcomm._errors import ConfigurationError

__all__ = ["XcommLogger", "configure_logging", "get_logger", "redact", "redact_url"]

_SECRET_KEYS = re.compile(
    r"(authorization|password|passwd|secret|token|api[-_]?key|signature|cookie|credential|"
    r"auth[-_]?token|private[-_]?key|sid)",
    re.IGNORECASE,
)
_SCRUB = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (
        re.compile(r"(?i)\b(password|passwd|secret|token|api[_-]?key)=([^\s&,;]+)"),
        r"\1=***",
    ),
    (re.compile(r"(?i)(://[^/\s:@]+):[^@/\s]+@"), r"\1:***@"),
]
MASK = "***"


def redact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `mapping` (headers, params, config) with secret-looking values masked."""
    return {k: (MASK if _SECRET_KEYS.search(str(k)) else v) for k, v in mapping.items()}


def redact_url(url: str) -> str:
    """Scheme, host and port only: webhook URLs carry their secret in the path or query."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return (
        f"{parts.scheme}://{host}{port}/…"
        if parts.path not in ("", "/")
        else f"{parts.scheme}://{host}{port}"
    )


def scrub(text: str) -> str:
    """Mask bearer tokens, basic-auth and `password=`-style secrets inside free text."""
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(redact(fields))
        if record.exc_info:
            payload["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={v}" for k, v in redact(fields).items())
        return text


class XcommLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that takes structured fields as keywords: `log.info("sent", to_count=3)`.

    Fields go to `record.fields` (redacted when formatted); a `platform` is attached when the
    logger was made for one.
    """

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        std = {k: kwargs.pop(k) for k in ("exc_info", "stack_info", "stacklevel") if k in kwargs}
        extra = dict(kwargs.pop("extra", None) or {})
        fields = dict(self.extra or {})
        fields.update(kwargs)
        kwargs.clear()
        kwargs.update(std)
        extra["fields"] = fields
        kwargs["extra"] = extra
        return msg, kwargs


def get_logger(name: str, platform: str | None = None) -> XcommLogger:
    """A structured logger named `xcomm.<name>` (or `name` if it already starts with xcomm)."""
    full = name if name == "xcomm" or name.startswith("xcomm.") else f"xcomm.{name}"
    return XcommLogger(logging.getLogger(full), {"platform": platform} if platform else {})


def configure_logging(
    level: int | str = "INFO",
    *,
    log_file: str | None = None,
    json: bool = False,
    logger: str = "xcomm",
) -> logging.Logger:
    """Send xcomm's logs to stderr (and `log_file`), as text or one JSON object per line.

    Calling it again replaces the handlers it installed before. Secrets are scrubbed.
    """
    resolved = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if isinstance(resolved, bool) or not isinstance(resolved, int):
        raise ConfigurationError(
            f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL (or an int)"
        )
    target = logging.getLogger(logger)
    target.setLevel(resolved)
    for handler in list(target.handlers):
        if getattr(handler, "_xcomm", False):
            target.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    formatter: logging.Formatter = (
        _JsonFormatter()
        if json
        else _TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_ScrubFilter())
        handler._xcomm = True  # type: ignore[attr-defined]
        target.addHandler(handler)
    return target
