"""Real SMTP peers for the integration tests, started once per session on free ports.

- aiosmtpd servers in their own threads (`Controller`), one per profile (plain, STARTTLS with
  AUTH, implicit TLS, ...), each with a `Recorder` handler that the `smtpd` fixture resets
  before every test;
- Postfix `smtp-sink` subprocesses, one per fault profile (`smtp_sink("-r", "RCPT")`);
- one Dovecot IMAP server (`dovecot`, configured in `dovecot.py`).

A missing binary skips the test locally and fails it under `CI=true` (`require_binary`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from dovecot import Dovecot, dovecot_session

from xcomm import CommManager, RetryPolicy, Timeout

ROOT = Path(__file__).resolve().parents[2]
POSTFIX = ROOT / ".cache" / "postfix"
SMTP_SINK = POSTFIX / "usr" / "sbin" / "smtp-sink"

#: Retries fast enough that a test with three attempts costs milliseconds.
FAST_RETRY = RetryPolicy(max_attempts=3, backoff=0.01, max_backoff=0.01, jitter=False)
TEST_TIMEOUT = Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)
USER, PASSWORD, GOOD_TOKEN = "alice@example.com", "s3cret", "good-token"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(
    port: int, *, proc: subprocess.Popen[bytes] | None = None, within: float = 5.0
) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {within}s")


def require_binary(path: Path, how_to_install: str) -> Path:
    """`path` if it is there; else skip the test, or fail it when the environment has CI=true."""
    if path.is_file() and os.access(path, os.X_OK):
        return path
    reason = f"{path} is missing; install it with `{how_to_install}`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: required services must be present)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def require() -> Callable[[Path, str], Path]:
    """`require_binary` as a fixture, for tests of the skip-or-fail rule itself."""
    return require_binary


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The servers' TLS context: a certificate for localhost and 127.0.0.1 from `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts `ca` (and nothing else)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# -- aiosmtpd ----------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    login: bytes | None
    tls: bool


@dataclass
class Recorder:
    """aiosmtpd handler: records what arrives; refuses `tempfail@` (451) and `nosuch@` (550)."""

    messages: list[Delivery] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)
    transactions: int = 0
    auth_attempts: list[str] = field(default_factory=list)
    data_delay: float = 0.0
    rcpt_delay: float = 0.0
    data_started: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.messages.clear()
        self.peers.clear()
        self.auth_attempts.clear()
        self.in_flight.clear()
        self.max_in_flight.clear()
        self.transactions = self.data_started = 0
        self.data_delay = self.rcpt_delay = 0.0

    @property
    def connections(self) -> int:
        """Distinct client connections that said EHLO."""
        return len(set(self.peers))

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.peers.append(session.peer)
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.transactions += 1
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(self.rcpt_delay)
        if address.startswith("tempfail@"):
            return "451 4.3.0 try again later"
        if address.startswith("nosuch@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_started += 1
        domains = {rcpt.rpartition("@")[2] for rcpt in envelope.rcpt_tos}
        for domain in domains:  # transactions in flight per recipient domain
            self.in_flight[domain] = self.in_flight.get(domain, 0) + 1
            self.max_in_flight[domain] = max(
                self.max_in_flight.get(domain, 0), self.in_flight[domain]
            )
        try:
            await asyncio.sleep(self.data_delay)
        finally:
            for domain in domains:
                self.in_flight[domain] -= 1
        auth = session.auth_data
        self.messages.append(
            Delivery(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.original_content or envelope.content,
                mail_options=list(envelope.mail_options),
                login=auth.login if isinstance(auth, LoginPassword) else None,
                tls=server.transport.get_extra_info("ssl_object") is not None,
            )
        )
        return "250 2.0.0 queued"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        """PLAIN and LOGIN: alice@example.com / s3cret."""
        self.auth_attempts.append(mechanism)
        ok = data.login == USER.encode() and data.password == PASSWORD.encode()
        if ok:
            return AuthResult(success=True, auth_data=data)
        # handled=False makes aiosmtpd send the 535; without it the client would hang.
        return AuthResult(success=False, handled=False, message="535 5.7.8 Bad credentials")

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        """XOAUTH2: the token "good-token" is accepted for any user."""
        self.auth_attempts.append("XOAUTH2")
        blob = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        fields = dict(p.split("=", 1) for p in blob.decode().split("\x01") if "=" in p)
        if fields.get("auth") == f"Bearer {GOOD_TOKEN}":
            return AuthResult(success=True, auth_data=LoginPassword(fields["user"].encode(), b""))
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "Bearer"}))
        return AuthResult(success=False, handled=False, message="535 5.7.8 Token not accepted")


@dataclass
class SMTPServer:
    """A running aiosmtpd server."""

    host: str
    port: int
    recorder: Recorder
    user: str = USER
    password: str = PASSWORD
    good_token: str = GOOD_TOKEN


#: name -> (tls, with_auth, extra SMTP keyword arguments)
PROFILES: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "plain": ("none", False, {}),
    "plain-no-utf8": ("none", False, {"enable_SMTPUTF8": False}),
    "plain-small": ("none", False, {"data_size_limit": 4000}),
    "plain-auth": ("none", True, {"auth_require_tls": False}),
    "plain-short-idle": ("none", False, {"timeout": 0.2}),
    "starttls-auth": ("starttls", True, {}),
    "starttls-login-only": ("starttls", True, {"auth_exclude_mechanism": ["PLAIN", "XOAUTH2"]}),
    # aiosmtpd only knows about STARTTLS: on an implicit TLS port it must offer AUTH "without" it
    "implicit-tls": ("implicit", True, {"auth_require_tls": False}),
    "public-auth": ("none", True, {"auth_require_tls": False}),  # bound to 0.0.0.0
}


@pytest.fixture(scope="session")
def smtpd_servers(server_tls: ssl.SSLContext) -> Iterator[Callable[[str], SMTPServer]]:
    """Starts each aiosmtpd profile the first time a test asks for it; stops all at the end."""
    running: dict[str, tuple[Controller, SMTPServer]] = {}

    def get(profile: str) -> SMTPServer:
        if profile not in running:
            tls, auth, extra = PROFILES[profile]
            recorder = Recorder()
            port = free_port()  # Controller(port=0) cannot work: it probes the port it was given
            bind = "0.0.0.0" if profile == "public-auth" else "127.0.0.1"
            kwargs: dict[str, Any] = {
                "hostname": bind,
                "port": port,
                "server_hostname": "localhost",
            }
            if tls == "starttls":
                kwargs.update(tls_context=server_tls, require_starttls=True)
            elif tls == "implicit":
                kwargs.update(ssl_context=server_tls)
            if auth:  # offered everywhere, required only with STARTTLS (else aiosmtpd warns)
                kwargs.update(authenticator=recorder.authenticate, auth_required=tls == "starttls")
            controller = Controller(recorder, **kwargs, **extra)
            controller.start()
            running[profile] = (controller, SMTPServer("127.0.0.1", port, recorder))
        return running[profile][1]

    yield get
    for controller, _ in running.values():
        controller.stop()


@pytest.fixture
def smtpd(smtpd_servers: Callable[[str], SMTPServer]) -> Callable[[str], SMTPServer]:
    """`smtpd("plain")`: the session's server for that profile, with a clean recorder."""

    def get(profile: str = "plain") -> SMTPServer:
        server = smtpd_servers(profile)
        server.recorder.reset()
        return server

    return get


@pytest.fixture
async def manager() -> AsyncIterator[CommManager]:
    """An open manager with fast retries and short timeouts; closes its providers after."""
    async with CommManager(retry=FAST_RETRY, timeout=TEST_TIMEOUT) as comm:
        yield comm


# -- Postfix smtp-sink ---------------------------------------------------------------------------


@dataclass
class Sink:
    """A running smtp-sink process."""

    port: int
    process: subprocess.Popen[bytes]
    dump_dir: Path | None = None

    def dumped(self) -> list[Path]:
        """The messages captured with `-d` (one file each)."""
        return sorted(self.dump_dir.iterdir()) if self.dump_dir else []


def start_sink(*options: str, dump: bool = False) -> Sink:
    """Start `smtp-sink -a [options]` on a free port and wait until it accepts connections."""
    binary = require_binary(SMTP_SINK, "bash benchmarks/install_postfix_tools.sh")
    args = [str(binary), "-a", *options]
    if os.geteuid() == 0:
        args[1:1] = ["-u", "nobody"]  # smtp-sink refuses to run as root
    dump_dir = None
    if dump:
        dump_dir = Path(tempfile.mkdtemp(prefix="sink-"))
        dump_dir.chmod(0o777)  # written by the -u user
        args += ["-d", f"{dump_dir}/%H%M%S."]
    port = free_port()
    env = {**os.environ, "LD_LIBRARY_PATH": str(POSTFIX / "usr" / "lib" / "postfix")}
    process = subprocess.Popen([*args, f"127.0.0.1:{port}", "64"], env=env)
    try:
        wait_port(port, proc=process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Sink(port, process, dump_dir)


def stop_sink(sink: Sink) -> None:
    if sink.process.poll() is None:
        sink.process.terminate()
    sink.process.wait(5)
    if sink.dump_dir is not None:
        shutil.rmtree(sink.dump_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[Callable[..., Sink]]:
    """`smtp_sink("-r", "RCPT")`: one smtp-sink per fault profile, started on first use."""
    running: dict[tuple[str, ...], Sink] = {}

    def get(*options: str) -> Sink:
        if options not in running:
            running[options] = start_sink(*options)
        return running[options]

    yield get
    for sink in running.values():
        stop_sink(sink)


@pytest.fixture
def fresh_sink() -> Iterator[Callable[..., Sink]]:
    """A private smtp-sink for tests that make it exit (`-M`) or inspect its dump files."""
    started: list[Sink] = []

    def start(*options: str, dump: bool = False) -> Sink:
        sink = start_sink(*options, dump=dump)
        started.append(sink)
        return sink

    yield start
    for sink in started:
        stop_sink(sink)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    return free_port()


@pytest.fixture(scope="session")
def public_address() -> str:
    """An address of this machine that is not loopback (the test is skipped without one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # sends nothing; only picks the outgoing address
            address: str = s.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127.") or address == "0.0.0.0":
        pytest.skip("this machine has no non-loopback IPv4 address")
    return address


# -- Dovecot IMAP --------------------------------------------------------------------------------

DOVECOT = Path(shutil.which("dovecot") or "/usr/sbin/dovecot")


@pytest.fixture(scope="session")
def dovecot(ca: trustme.CA) -> Iterator[Dovecot]:
    """A Dovecot IMAP server for the session (see `tests/integration/dovecot.py`)."""
    binary = require_binary(
        DOVECOT, "apt-get install -y --no-install-recommends dovecot-imapd (or .ci/run)"
    )
    yield from dovecot_session(binary, ca)


@pytest.fixture
def dovecot_for_refusals(ca: trustme.CA) -> Iterator[Dovecot]:
    """A Dovecot of the test's own, for tests of refused logins: after one, Dovecot delays
    every login from the same address by seconds (its anvil penalty)."""
    binary = require_binary(
        DOVECOT, "apt-get install -y --no-install-recommends dovecot-imapd (or .ci/run)"
    )
    yield from dovecot_session(binary, ca)
