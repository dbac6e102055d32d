"""The SMTP error mapping and the SMTP provider's settings checks: pure, no server."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import pytest

from xcomm import (
    Address,
    AuthenticationError,
    CommunicationError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    DeliveryUnknown,
    MessageError,
    MetricsCollector,
    ProviderError,
    RateLimitError,
    RecipientRejected,
    RequestNotSent,
    ResponseTimeout,
    RetryPolicy,
    ServiceUnavailable,
    SMTPProvider,
    Timeout,
    ValidationError,
)
from xcomm._clock import MONOTONIC
from xcomm._provider import HttpPool, ProviderContext
from xcomm._retry import is_retryable
from xcomm.email._smtp import plaintext_auth_allowed, reply_error, translate
from xcomm.email._wire import (
    SMTPDisconnected,
    SMTPNotSupported,
    SMTPProtocolError,
    SMTPReplyError,
    UnsafeArgument,
)

POLICY = RetryPolicy()

# code, text, phase -> error class, transient
REPLIES = [
    (421, "4.3.2 Service shutting down", "mail", ServiceUnavailable, True),
    (421, "4.0.0 Server closing connection", "rcpt", ServiceUnavailable, True),
    (421, "4.7.0 Try again later, closing connection", "connect", ServiceUnavailable, True),
    (421, "4.4.2 Timeout", "body", ServiceUnavailable, True),
    (454, "4.7.0 Too many login attempts, please try again later", "auth", RateLimitError, True),
    (454, "4.7.0 Temporary authentication failure", "auth", RateLimitError, True),
    (454, "4.7.0 TLS not available due to temporary reason", "starttls", ServiceUnavailable, True),
    (451, "4.7.1 Rate limit exceeded, try again in 30 seconds", "mail", RateLimitError, True),
    (450, "4.7.0 Throttling failure: Maximum sending rate exceeded", "body", RateLimitError, True),
    (451, "4.3.0 Error: queue file write error", "body", ServiceUnavailable, True),
    (452, "4.3.1 Insufficient system storage", "mail", ServiceUnavailable, True),
    (450, "4.3.0 Error: command failed", "data", ServiceUnavailable, True),
    (535, "5.7.8 Username and Password not accepted", "auth", AuthenticationError, False),
    (534, "5.7.9 Application-specific password required", "auth", AuthenticationError, False),
    (530, "5.7.0 Authentication required", "mail", AuthenticationError, False),
    (504, "5.5.4 Unrecognized authentication type", "auth", AuthenticationError, False),
    (250, "2.0.0 Ok", "auth", AuthenticationError, False),  # smtp-sink's fake AUTH
    (552, "5.3.4 Message size exceeds fixed limit", "mail", MessageError, False),
    (554, "5.7.1 Spam detected", "mail", MessageError, False),
    (550, "5.7.1 Message rejected under policy", "body", MessageError, False),
    (554, "5.5.1 Error: no valid recipients", "data", MessageError, False),
    (500, "5.5.2 Error: bad syntax", "mail", MessageError, False),
    (554, "5.7.1 No SMTP service here", "connect", ServiceUnavailable, False),
    (502, "5.5.2 Error: command not recognized", "ehlo", ServiceUnavailable, False),
    (550, "5.1.1 No such user", "rcpt", RecipientRejected, False),
    (451, "4.3.0 Try again later", "rcpt", RecipientRejected, True),
]


@pytest.mark.parametrize(("code", "text", "phase", "cls", "transient"), REPLIES)
def test_reply_error(code: int, text: str, phase: str, cls: type, transient: bool) -> None:
    error = reply_error(code, text, phase=phase, recipient="bob@example.org")
    assert type(error) is cls
    assert error.transient is transient
    assert is_retryable(error, POLICY) is transient
    assert error.provider == "smtp" and error.status == code
    # RCPT replies often quote the address; it is kept out of str() (and so out of logs).
    assert error.detail == (None if cls is RecipientRejected else text)


def test_reply_error_evidence() -> None:
    error = reply_error(451, "4.7.1 Rate limit exceeded, try again in 2 minutes", phase="mail")
    assert isinstance(error, RateLimitError)
    assert (error.error_code, error.retry_after) == ("4.7.1", 120.0)
    assert reply_error(450, "no enhanced code here", phase="mail").error_code == "450"

    refused = reply_error(550, "5.1.1 No such user", phase="rcpt", recipient="bob@example.org")
    assert isinstance(refused, RecipientRejected)
    assert [(r.address, r.code, r.reason) for r in refused.rejected] == [
        ("bob@example.org", 550, "5.1.1 No such user")
    ]


# exception, phase -> xcomm error class
EXCEPTIONS: list[tuple[BaseException, str, type[CommunicationError]]] = [
    (ConnectionRefusedError(111, "Connection refused"), "connect", ConnectError),
    (TimeoutError("timed out connecting"), "connect", ConnectTimeout),
    (SMTPReplyError(421, "4.0.0 closing"), "connect", ServiceUnavailable),
    (TimeoutError("no reply from the server within 2s"), "ehlo", ConnectTimeout),
    (TimeoutError("no reply from the server within 2s"), "starttls", ConnectTimeout),
    (SMTPDisconnected("the server closed the connection"), "auth", ConnectError),
    (SMTPReplyError(535, "5.7.8 no"), "auth", AuthenticationError),
    (SMTPReplyError(553, "5.1.8 bad sender"), "mail", MessageError),
    (SMTPDisconnected("the server closed the connection"), "mail", RequestNotSent),
    (SMTPDisconnected("the server closed the connection"), "data", RequestNotSent),
    (TimeoutError("no reply from the server within 2s"), "rcpt", RequestNotSent),
    (TimeoutError("no reply from the server within 2s"), "data", RequestNotSent),
    (SMTPProtocolError("malformed SMTP reply line: b'xyz'"), "mail", RequestNotSent),
    (SMTPReplyError(451, "4.3.0 later"), "body", ServiceUnavailable),
    (SMTPReplyError(554, "5.6.0 bad content"), "body", MessageError),
    (SMTPDisconnected("the server closed the connection"), "body", ConnectionLost),
    (ConnectionResetError(104, "reset"), "body", ConnectionLost),
    (SMTPProtocolError("a reply line is longer than 8192 bytes"), "body", ConnectionLost),
    (TimeoutError("no reply from the server within 2s"), "body", ResponseTimeout),
    # a pipelined envelope that got no reply: any of its commands may be the stuck one
    (TimeoutError("no reply from the server within 2s"), "mail/rcpt/data", RequestNotSent),
    (SMTPDisconnected("the server closed the connection"), "rcpt/data", RequestNotSent),
    (
        SMTPNotSupported("the server offers no AUTH mechanism xcomm has (PLAIN, LOGIN)"),
        "auth",
        ConfigurationError,
    ),
    (SMTPNotSupported("SMTPUTF8 is not supported"), "mail", ConfigurationError),
    (UnsafeArgument("an SMTP command argument contains CR, LF or NUL"), "rcpt", ValidationError),
    (ValueError("Address contains characters not permitted"), "rcpt", ValidationError),
]


@pytest.mark.parametrize(("exc", "phase", "cls"), EXCEPTIONS)
def test_translate(exc: BaseException, phase: str, cls: type[CommunicationError]) -> None:
    error = translate(exc, phase=phase, server="smtp.example.com:587")
    assert type(error) is cls
    if isinstance(error, DeliveryUnknown):
        assert not is_retryable(error, POLICY)
    if isinstance(error, RequestNotSent):
        assert is_retryable(error, POLICY)


def test_translate_certificate_failure_is_a_configuration_error() -> None:
    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cert.verify_message = "unable to get local issuer certificate"
    for exc in (cert, _caused(SMTPDisconnected("the TLS handshake failed"), cert)):
        error = translate(exc, phase="connect", server="smtp.example.com:465")
        assert isinstance(error, ConfigurationError)
        assert "unable to get local issuer certificate" in str(error)
        assert "smtp.example.com:465" in str(error)


def test_translate_keeps_xcomm_errors() -> None:
    error = ServiceUnavailable("x", provider="smtp")
    assert translate(error, phase="mail") is error


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("host", "allow", "expected"),
    [
        ("127.0.0.1", False, True),
        ("127.5.6.7", False, True),
        ("::1", False, True),
        ("[::1]", False, True),
        ("localhost", False, True),
        ("LOCALHOST.", False, True),
        ("mail.localhost", False, True),
        ("smtp.example.com", False, False),
        ("192.0.2.10", False, False),
        ("localhost.example.com", False, False),
        ("smtp.example.com", True, True),
    ],
)
def test_plaintext_auth_allowed(host: str, allow: bool, expected: bool) -> None:
    assert plaintext_auth_allowed(host, allow_plaintext_auth=allow) is expected


# -- settings ----------------------------------------------------------------------------------


def _no_http() -> HttpPool:
    raise AssertionError("an SMTP provider never uses the HTTP pool")


@pytest.fixture
def provider() -> Callable[..., SMTPProvider]:
    context = ProviderContext(
        limiters=None,  # type: ignore[arg-type]  # not needed to build a provider
        retry=RetryPolicy(),
        metrics=MetricsCollector(),
        clock=MONOTONIC,
        timeout=Timeout(),
        http_pool=_no_http,
    )

    def make(**options: Any) -> SMTPProvider:
        options.setdefault("host", "smtp.example.com")
        return SMTPProvider(context, limiter=None, **options)

    return make


BAD_SETTINGS = [
    ({"host": ""}, "host"),
    ({"host": "smtp example.com"}, "host"),
    ({"port": 0}, "port"),
    ({"port": 70000}, "port"),
    ({"port": "587"}, "port"),
    ({"pool_size": 0}, "pool_size"),
    ({"max_messages_per_connection": 0}, "max_messages_per_connection"),
    ({"idle_timeout": 0}, "idle_timeout"),
    ({"idle_timeout": "30"}, "idle_timeout"),
    ({"max_message_size": -1}, "max_message_size"),
    ({"password": "pw"}, "username= is required"),
    ({"oauth_token": "tok"}, "username= is required"),
    ({"username": "u@example.com", "password": "pw", "oauth_token": "tok"}, "not both"),
    ({"use_tls": True, "start_tls": True}, "implicit TLS"),
    ({"start_tls": "yes"}, "start_tls must be"),
    ({"tls_context": ssl.create_default_context(), "validate_certs": False}, "validate_certs"),
    ({"username": "u@example.com", "password": "pw", "start_tls": False}, "plaintext"),
    ({"local_hostname": "my host"}, "local_hostname"),
    ({"sender": "not an address"}, "sender"),
    ({"oauth_token": 42, "username": "u@example.com"}, "oauth_token"),
    ({"timeout": "soon"}, "timeout"),
]


@pytest.mark.parametrize(("options", "match"), BAD_SETTINGS)
async def test_bad_settings(
    provider: Callable[..., SMTPProvider], options: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        provider(**options)


async def test_good_settings(provider: Callable[..., SMTPProvider]) -> None:
    smtp = provider(username="me@example.com", password="hunter2", port=465, use_tls=True)
    assert smtp.name == "smtp" and smtp.default_sender == Address(email="me@example.com")
    assert "hunter2" not in repr(smtp) and "hunter2" not in str(vars(smtp))
    assert repr(smtp) == (
        "SMTPProvider(host='smtp.example.com', port=465, username='me@example.com', tls='implicit')"
    )
    assert smtp.max_message_size == 25 * 1024 * 1024

    plain = provider(
        host="127.0.0.1", username="me", password="pw", start_tls=False, max_message_size=1000
    )
    assert plain.default_sender is None and plain.max_message_size == 1000
    assert provider(sender="Ops <ops@example.com>", username="x").default_sender == Address(
        email="ops@example.com", name="Ops"
    )
    trusted = provider(username="me", password="pw", start_tls=False, allow_plaintext_auth=True)
    assert trusted.statistics().max_size == 4


def test_error_classes_say_what_to_do() -> None:
    assert issubclass(ConnectionLost, DeliveryUnknown) and issubclass(ResponseTimeout, TimeoutError)
    assert issubclass(RateLimitError, ProviderError)
