"""`FileTokenStore`: a token in a file only its owner can read, optionally encrypted.

Writes are atomic (a temp file in the same directory, fsync, `os.replace`) and the file is
created with mode 0600. On POSIX, reading a token file that the group or others can read
raises `ConfigurationError` (a leaked refresh token is a standing login; refusing makes the
problem visible instead of silently continuing). With `encryption_key`, the file holds
AES-256-GCM ciphertext (needs `xcomm[google]`, i.e. cryptography).
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path

import anyio.to_thread
import msgspec

from xcomm._errors import ConfigurationError
from xcomm.auth._client import Token

__all__ = ["FileTokenStore", "write_private"]

_MAGIC = "xcomm-token-v1"
_encode = msgspec.json.Encoder()
_decode_token = msgspec.json.Decoder(Token)


class _Envelope(msgspec.Struct, kw_only=True):
    format: str
    alg: str
    nonce: str
    ciphertext: str


_decode_envelope = msgspec.json.Decoder(_Envelope)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600, and check the mode afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o600)  # mkstemp already creates 0600; make it explicit
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sys.platform != "win32" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigurationError(f"{path}: could not restrict the token file to mode 0600")


def check_private(path: Path) -> None:
    """Refuse a token file that the group or others may read (POSIX only)."""
    if sys.platform == "win32":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(
            f"{path}: the token file is readable by others (mode {mode:04o}); run "
            f"`chmod 600 {path}` after checking nobody copied it"
        )


def _aesgcm(key: bytes) -> object:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise ConfigurationError(
            'encrypted token files need cryptography: pip install "xcomm[google]"'
        ) from exc
    return AESGCM(key)


def _coerce_key(key: bytes | str) -> bytes:
    raw = key
    if isinstance(key, str):
        try:
            raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        except ValueError as exc:
            raise ConfigurationError("encryption_key text must be base64 (32 bytes)") from exc
    if len(raw) != 32:
        raise ConfigurationError(
            "encryption_key must be 32 bytes (AES-256) or their base64; make one with "
            "FileTokenStore.generate_key()"
        )
    return bytes(raw) if isinstance(raw, bytes | bytearray) else raw.encode()


class FileTokenStore:
    """Keeps one token in a 0600 file; `TokenManager(..., store=FileTokenStore("tok.json"))`.

    Example:
        ```python
        import os
        from xcomm.auth import FileTokenStore

        store = FileTokenStore("graph-token.json", encryption_key=os.environ["XCOMM_TOKEN_KEY"])
        ```

    Args:
        path: the file (created on first save).
        encryption_key: 32 bytes, or their URL-safe base64 text (for an environment
            variable); None stores plain JSON. `FileTokenStore.generate_key()` makes one.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, encryption_key: bytes | str | None = None
    ) -> None:
        self._path = Path(path)
        self._key = None if encryption_key is None else _coerce_key(encryption_key)
        if self._key is not None:
            _aesgcm(self._key)  # fail now, not at the first refresh, when cryptography is missing

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self._path)!r}, encrypted={self._key is not None})"

    @property
    def path(self) -> Path:
        """The token file."""
        return self._path

    @staticmethod
    def generate_key() -> str:
        """A new random AES-256 key as base64 text (store it in a secret manager or env var)."""
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")

    def _aad(self) -> bytes:
        return _MAGIC.encode()

    def encode(self, token: Token) -> bytes:
        """The file content for `token` (plain JSON, or an encrypted envelope)."""
        plain = _encode.encode(token)
        if self._key is None:
            return plain
        nonce = secrets.token_bytes(12)
        sealed = _aesgcm(self._key).encrypt(nonce, plain, self._aad())  # type: ignore[attr-defined]
        envelope = _Envelope(
            format=_MAGIC,
            alg="A256GCM",
            nonce=base64.b64encode(nonce).decode(),
            ciphertext=base64.b64encode(sealed).decode(),
        )
        return _encode.encode(envelope)

    def decode(self, data: bytes) -> Token:
        """The token in file content written by `encode()`."""
        where = str(self._path)
        try:
            envelope = _decode_envelope.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            envelope = None
        if envelope is not None and envelope.format == _MAGIC:
            if self._key is None:
                raise ConfigurationError(f"{where}: the token file is encrypted; pass its key")
            try:
                plain = _aesgcm(self._key).decrypt(  # type: ignore[attr-defined]
                    base64.b64decode(envelope.nonce),
                    base64.b64decode(envelope.ciphertext),
                    self._aad(),
                )
            except Exception as exc:
                raise ConfigurationError(
                    f"{where}: cannot decrypt the token file (wrong key, or it was altered)"
                ) from exc
        elif self._key is not None:
            raise ConfigurationError(
                f"{where}: the token file is not encrypted but an encryption_key was given"
            )
        else:
            plain = data
        try:
            return _decode_token.decode(plain)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ConfigurationError(f"{where}: not an xcomm token file ({exc})") from exc

    def _load(self) -> Token | None:
        try:
            check_private(self._path)
            data = self._path.read_bytes()
        except FileNotFoundError:
            return None
        return self.decode(data)

    async def load(self) -> Token | None:
        """The stored token, or None when the file does not exist yet."""
        return await anyio.to_thread.run_sync(self._load)

    async def save(self, token: Token) -> None:
        """Replace the stored token (atomically, mode 0600)."""
        data = self.encode(token)
        await anyio.to_thread.run_sync(write_private, self._path, data)
