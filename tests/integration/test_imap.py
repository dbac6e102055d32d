"""The IMAP provider against a real Dovecot (`conftest.dovecot`)."""

from __future__ import annotations

import imaplib

import pytest
from dovecot import Dovecot

pytestmark = pytest.mark.service("dovecot")


def test_dovecot_fixture_stores_and_serves_mail(dovecot: Dovecot) -> None:
    user = dovecot.new_user()
    assert dovecot.append(user, b"Subject: hi\r\n\r\nbody\r\n") == 1
    client: imaplib.IMAP4 = dovecot.imap(user)
    try:
        typ, data = client.select("INBOX")
        assert (typ, data) == ("OK", [b"1"])
    finally:
        client.logout()
