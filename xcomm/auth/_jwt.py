"""The signed JWT a Google service account trades for an access token (RFC 7523).

RS256 over `base64url(header).base64url(claims)`; claims `iss`, `scope`, `aud`, `iat`, `exp`
(at most an hour later) and, for domain-wide delegation, `sub` (the user to act as).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from xcomm._errors import ConfigurationError

if TYPE_CHECKING:
    from xcomm.auth._files import ServiceAccountKey

__all__ = ["ASSERTION_LIFETIME", "b64url", "service_account_assertion"]

ASSERTION_LIFETIME = 3600


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sign_rs256(pem: str, message: bytes) -> bytes:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError as exc:
        raise ConfigurationError(
            'Google service accounts need cryptography to sign: pip install "xcomm[google]"'
        ) from exc
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError("the service-account private_key cannot be loaded") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError("the service-account private_key is not an RSA key")
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def service_account_assertion(
    key: ServiceAccountKey, scopes: Sequence[str], *, subject: str | None, now: float
) -> str:
    """The signed assertion for the JWT bearer grant."""
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if key.private_key_id:
        header["kid"] = key.private_key_id
    issued = int(now)
    claims: dict[str, Any] = {
        "iss": key.client_email,
        "scope": " ".join(scopes),
        "aud": key.token_uri,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME,
    }
    if subject:
        claims["sub"] = subject
    signing_input = (
        f"{b64url(msgspec.json.encode(header))}.{b64url(msgspec.json.encode(claims))}"
    ).encode("ascii")
    signature = _sign_rs256(key.private_key, signing_input)
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"
