"""A real Dovecot IMAP server for the integration tests, one per session on free ports.

The configuration follows docs in /work/shared/reference/test-services.md §1: a short base
dir (unix socket paths must stay under ~100 bytes), root-mode users `dovecot`/`dovenull`
(or the current user when not root), Maildir under the temp dir, and:

- `port`: plaintext IMAP offering STARTTLS; `tls_port`: implicit TLS (IMAPS), both with a
  certificate for localhost/127.0.0.1 issued by the session's throwaway CA;
- any user name logs in with `PASSWORD` (a static passdb), so each test takes a fresh user
  and so an empty mailbox (`Dovecot.new_user()`);
- XOAUTH2/OAUTHBEARER checked against a local introspection endpoint: `token_for(user)` is
  accepted, anything else is refused (after the `+ <base64 json>` challenge).
"""

from __future__ import annotations

import grp
import http.server
import imaplib
import itertools
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import trustme

PASSWORD = "s3cret-imap"
GOOD_TOKEN = "good-imap-token"
_users = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Introspection(http.server.BaseHTTPRequestHandler):
    """Dovecot's oauth2 passdb POSTs `token=...` here; only GOOD_TOKEN is active."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        token = (form.get("token") or [""])[0]
        auth = self.headers.get("Authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:]
        user = token.removeprefix(f"{GOOD_TOKEN}:")  # tokens are `token_for(user)`
        body = json.dumps({"active": user != token, "username": user}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@dataclass
class Dovecot:
    """A running Dovecot: where it listens and how to put mail into it."""

    host: str
    port: int
    tls_port: int
    directory: Path
    process: subprocess.Popen[bytes]
    password: str = PASSWORD
    _introspection: http.server.HTTPServer | None = field(default=None, repr=False)

    @property
    def log(self) -> str:
        """The server's log so far (useful in assertion messages)."""
        path = self.directory / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def new_user(self) -> str:
        """A user nobody has used yet in this session: an empty INBOX."""
        return f"user{next(_users)}-{os.getpid()}@example.com"

    def token_for(self, user: str) -> str:
        """An OAuth2 access token the server accepts for `user`."""
        return f"{GOOD_TOKEN}:{user}"

    def imap(self, user: str) -> imaplib.IMAP4:
        """A logged-in stdlib client (plaintext over loopback), for setting up mailboxes."""
        client = imaplib.IMAP4(self.host, self.port, timeout=5)
        client.login(user, self.password)
        return client

    def append(
        self,
        user: str,
        raw: bytes,
        *,
        folder: str = "INBOX",
        flags: str = "",
        date: datetime | None = None,
    ) -> int:
        """APPEND `raw` to `folder` (its IMAP name: modified UTF-7) of `user`, creating the
        folder when missing; returns the new message's UID."""
        client = self.imap(user)
        mailbox = '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
        try:
            if folder != "INBOX":
                client.create(mailbox)  # NO when it exists: fine
            when = imaplib.Time2Internaldate(date) if date is not None else None
            typ, data = client.append(mailbox, f"({flags})" if flags else None, when, raw)
            assert typ == "OK", data
            found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            assert found, data
            return int(found.group(1))
        finally:
            client.logout()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._introspection is not None:
            self._introspection.shutdown()
            self._introspection.server_close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _users_for_mode() -> dict[str, str]:
    if os.geteuid() == 0:
        return {
            "internal_user": "dovecot",
            "internal_group": "dovecot",
            "login_user": "dovenull",
            "mail_uid": "nobody",
            "mail_gid": "nogroup",
        }
    me = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(me.pw_gid).gr_name
    return {
        "internal_user": me.pw_name,
        "internal_group": group,
        "login_user": me.pw_name,
        "mail_uid": me.pw_name,
        "mail_gid": group,
    }


def _config(d: Path, port: int, tls_port: int, oauth_port: int) -> str:
    u = _users_for_mode()
    (d / "oauth2.conf.ext").write_text(
        "introspection_mode = post\n"
        f"introspection_url = http://127.0.0.1:{oauth_port}/introspect\n"
        "active_attribute = active\n"
        "active_value = true\n"
        "username_attribute = username\n"
    )
    return f"""
instance_name = dovecot-test-{port}
base_dir = {d}/run
state_dir = {d}/state
protocols = imap
listen = 127.0.0.1
log_path = {d}/dovecot.log
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
auth_verbose = yes
default_internal_user = {u["internal_user"]}
default_internal_group = {u["internal_group"]}
default_login_user = {u["login_user"]}
first_valid_uid = 0
mail_location = maildir:{d}/mail/%n/Maildir
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/oauth2.conf.ext
}}
passdb {{
  driver = static
  mechanisms = plain login
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={u["mail_uid"]} gid={u["mail_gid"]} home={d}/mail/%n
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
"""


def server_environment() -> dict[str, str]:
    """Dovecot's environment: TZ=UTC, so SEARCH SINCE/BEFORE compare the internal date's UTC
    day (as `EmailQuery.matches()` does); Dovecot imports TZ into its children by default."""
    return {**os.environ, "TZ": "UTC"}


def _wait_banner(port: int, process: subprocess.Popen[bytes], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(200).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"dovecot does not greet on 127.0.0.1:{port} after {within}s")


def start_dovecot(binary: Path, ca: trustme.CA, extra_config: str = "") -> Dovecot:
    """Write a config into a short temp dir, start `dovecot -F`, wait for `* OK`.
    `extra_config` is appended to the configuration (e.g. `imap_capability = ...`)."""
    d = Path(tempfile.mkdtemp(prefix="dc-", dir="/tmp"))
    d.chmod(0o755)
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    (d / "mail").mkdir()
    if os.geteuid() == 0:
        shutil.chown(d / "mail", "nobody", "nogroup")
    introspection = http.server.HTTPServer(("127.0.0.1", 0), _Introspection)
    threading.Thread(target=introspection.serve_forever, daemon=True).start()
    port, tls_port = _free_port(), _free_port()
    conf = d / "dovecot.conf"
    conf.write_text(_config(d, port, tls_port, introspection.server_address[1]) + extra_config)
    with open(d / "stderr.log", "wb") as stderr:  # config errors, before log_path applies
        process = subprocess.Popen(
            [str(binary), "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=server_environment(),
        )
    server = Dovecot("127.0.0.1", port, tls_port, d, process, _introspection=introspection)
    try:
        _wait_banner(port, process)
    except BaseException:
        log = server.log + (d / "stderr.log").read_text(errors="replace")
        server.stop()
        raise RuntimeError(f"dovecot did not start:\n{log}") from None
    return server


def dovecot_session(binary: Path, ca: trustme.CA, extra_config: str = "") -> Iterator[Dovecot]:
    server = start_dovecot(binary, ca, extra_config)
    try:
        yield server
    finally:
        server.stop()
