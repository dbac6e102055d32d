"""The error tree: what callers can catch, and that no secret leaks into text."""

from __future__ import annotations

import pytest

import xcomm
from xcomm import (
    AuthenticationError,
    CommunicationError,
    ConfigurationError,
    ConnectionLost,
    DeliveryUnknown,
    MessageError,
    ProviderError,
    RateLimitError,
    RecipientRejected,
    RejectedRecipient,
    RequestNotSent,
    ServiceUnavailable,
    TransportError,
    ValidationError,
)


def test_every_error_is_a_communication_error() -> None:
    for name in xcomm.__all__:
        obj = getattr(xcomm, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, CommunicationError), name


def test_builtin_mixins() -> None:
    assert issubclass(ValidationError, ValueError)
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(xcomm.ConnectError, ConnectionError)
    assert issubclass(xcomm.ConnectTimeout, TimeoutError)
    assert issubclass(xcomm.PoolTimeout, TimeoutError)
    assert issubclass(ConnectionLost, ConnectionError)
    assert issubclass(xcomm.ResponseTimeout, TimeoutError)
    assert issubclass(xcomm.ConnectError, RequestNotSent)
    assert issubclass(ConnectionLost, DeliveryUnknown)
    assert issubclass(RequestNotSent, TransportError)
    assert not issubclass(DeliveryUnknown, RequestNotSent)


def test_provider_error_carries_evidence_and_says_it() -> None:
    err = RateLimitError(
        "rate limited",
        provider="twilio",
        error_code="20429",
        status=429,
        retry_after=2.5,
        detail="Too   many\nrequests",
    )
    assert err.transient
    assert err.detail == "Too many requests"
    text = str(err)
    assert text.startswith("twilio: rate limited")
    assert "status=429" in text and "code=20429" in text and "retry_after=2.5s" in text
    assert repr(err).startswith("RateLimitError(")


def test_transient_defaults() -> None:
    assert ServiceUnavailable("x", provider="p").transient
    assert not MessageError("x", provider="p").transient
    assert not AuthenticationError("x", provider="p").transient
    assert not ServiceUnavailable("x", provider="p", transient=False).transient


def test_recipient_rejected_is_transient_only_when_every_refusal_is() -> None:
    temp = RejectedRecipient(address="a@x.org", code=451, reason="try later")
    perm = RejectedRecipient(address="b@x.org", code=550, reason="no such user")
    assert RecipientRejected("all refused", provider="smtp", rejected=[temp]).transient
    mixed = RecipientRejected("all refused", provider="smtp", rejected=[temp, perm])
    assert not mixed.transient
    assert mixed.rejected == (temp, perm)
    assert isinstance(mixed, ProviderError)


def test_long_details_are_clipped() -> None:
    err = ProviderError("no", provider="p", detail="x" * 5000)
    assert err.detail is not None and len(err.detail) <= 500


@pytest.mark.parametrize("cls", [RequestNotSent, DeliveryUnknown])
def test_transport_errors_name_the_provider(cls: type[TransportError]) -> None:
    err = cls("connection failed", provider="smtp", detail="EOF")
    assert str(err) == "smtp: connection failed (EOF)"
