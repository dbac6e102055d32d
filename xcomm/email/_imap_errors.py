"""Where IMAP failures become xcomm errors: `translate()` is the one place the wire's
exceptions (`_imap_wire.py`, the socket, aioimaplib) are mapped.

| What happened                                    | xcomm error                         |
|--------------------------------------------------|-------------------------------------|
| connection refused / unreachable, TLS failure    | ConnectError (retried)              |
| connect, TLS or login took too long              | ConnectTimeout (retried)            |
| certificate verification failed                  | ConfigurationError                  |
| STARTTLS required but not offered                | ConfigurationError                  |
| credentials would cross an unencrypted link      | ConfigurationError (nothing sent)   |
| LOGIN/AUTHENTICATE refused (XOAUTH2 included)    | AuthenticationError + SASL error    |
| greeting BYE, `[UNAVAILABLE]`, `[SERVERBUG]`     | ServiceUnavailable (retried)        |
| `[LIMIT]`                                        | RateLimitError (retried)            |
| other NO/BAD (unknown folder, bad criteria)      | ProviderError with the server text  |
| connection dropped during a command              | ConnectionLost                      |
| no answer within the read timeout                | ResponseTimeout                     |

Reads are idempotent, so a `ConnectionLost` or `ResponseTimeout` from `search()` or `get()`
may simply be retried by the caller.
"""

from __future__ import annotations

import ssl
from typing import Any

from xcomm._errors import (
    AuthenticationError,
    CommunicationError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    ProviderError,
    RateLimitError,
    ResponseTimeout,
    ServiceUnavailable,
    TransportError,
)

__all__ = ["translate"]

_SETUP = frozenset({"connect", "starttls", "auth"})
_AUTH_CODES = {"AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED", "PRIVACYREQUIRED"}
_UNAVAILABLE_CODES = {"UNAVAILABLE", "SERVERBUG", "INUSE"}


def translate(exc: BaseException, *, phase: str, server: str = "the server") -> CommunicationError:
    """The xcomm error for an exception raised in `phase` ("connect", "starttls", "auth",
    or the command's name: "search", "fetch", "select", ...); see the module table."""
    if isinstance(exc, CommunicationError):
        return exc
    cert = exc if isinstance(exc, ssl.SSLCertVerificationError) else exc.__cause__
    if isinstance(cert, ssl.SSLCertVerificationError):
        return ConfigurationError(
            f"TLS certificate verification failed for {server}: {cert.verify_message}; trust "
            "its CA with tls_context=ssl.create_default_context(cafile=...) or fix the host name"
        )
    from xcomm.email._imap_wire import IMAPReplyError

    if isinstance(exc, IMAPReplyError):
        return _reply_error(exc, phase)
    detail = str(exc) or type(exc).__name__
    timeout = isinstance(exc, TimeoutError)
    if phase in _SETUP:
        cls: type[TransportError] = ConnectTimeout if timeout else ConnectError
        what = "timed out connecting" if timeout else "could not connect"
        return cls(f"{what} to {server} ({phase})", provider="imap", detail=detail)
    if timeout:
        return ResponseTimeout(f"no answer to {phase.upper()} in time", provider="imap")
    return ConnectionLost(
        f"the connection dropped during {phase.upper()}", provider="imap", detail=detail
    )


def _reply_error(exc: Any, phase: str) -> ProviderError:
    code: str | None = exc.code
    detail = exc.text if exc.challenge is None else f"{exc.text} (SASL: {exc.challenge})"
    cls: type[ProviderError] = ProviderError
    if phase == "auth" or code in _AUTH_CODES:
        cls, what = AuthenticationError, "the server refused to log in"
    elif exc.command == "greeting" or code in _UNAVAILABLE_CODES:
        cls, what = ServiceUnavailable, "the server is unavailable"
    elif code == "LIMIT":
        cls, what = RateLimitError, "throttled"
    else:
        what = f"the server refused {exc.command}"
    return cls(what, provider="imap", error_code=code or exc.result, detail=detail)
