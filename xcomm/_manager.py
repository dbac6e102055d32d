"""`CommManager`: the one owner of every shared resource.

It owns the shared `httpx.AsyncClient` (the HTTP connection pool, made at its first use), the
limiter registry, the metrics, and every provider it hands out (and so their SMTP pools).
Providers borrow; the manager closes. Nothing it opened outlives `async with`.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import hashlib
import importlib.util
import inspect
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, overload

import anyio

from xcomm._clock import MONOTONIC, Clock
from xcomm._config import (
    DEFAULT_LIMITS,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    Limits,
    RateLimit,
    RetryPolicy,
    Timeout,
    secret_from_env,
)
from xcomm._errors import ConfigurationError, LifecycleError
from xcomm._limits import GlobalRateLimiter
from xcomm._metrics import MetricsCollector
from xcomm._provider import HttpPool, Provider, ProviderContext
from xcomm._retry import Limiter
from xcomm.outbox import OutboxStore

if TYPE_CHECKING:
    import httpx

    from xcomm._models import Address
    from xcomm._templates import Template, UnsubscribeSigner
    from xcomm._webhook import WebhookProvider
    from xcomm.auth import OAuthClient, OAuthEndpoint, TokenManager
    from xcomm.bulk import BulkSender, CampaignResult, Suppressions
    from xcomm.bulk._run import ProgressCallback
    from xcomm.bulk._scheduler import DripCampaign, Scheduler
    from xcomm.email._base import EmailProvider
    from xcomm.email._gmail import GmailProvider
    from xcomm.email._graph import GraphProvider
    from xcomm.email._imap import IMAPProvider
    from xcomm.email._ses import SESProvider
    from xcomm.email._smtp import SMTPProvider

__all__ = ["CommManager"]

logger = logging.getLogger("xcomm")

GLOBAL = "global"
#: Scopes a Gmail service-account token asks for (send and read).
GMAIL_DEFAULT_SCOPES = (
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.readonly",
)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class CommManager:
    """Owns the shared HTTP pool, limiters, connection pools and metrics; hands out providers.

    Example:
        ```python
        async with CommManager(rate_limits={"smtp": RateLimit(rate=100, per=60)}) as comm:
            smtp = comm.smtp("smtp.example.com", username="me@example.com", password="...")
            await smtp.compose().to("you@example.com").subject("Hi").body("Hello").send()
            print(comm.metrics.get_stats().success_rate)
        ```

    Args:
        timeout: per-phase timeouts for every provider (seconds, or a `Timeout`).
        limits: connection limits of the shared HTTP pool.
        rate_limits: buckets shared by providers, keyed by provider name (`"smtp"`,
            `"webhook"`), by account key, or `"global"` for one bucket every call passes.
            Numbers are messages per minute.
        retry: the default `RetryPolicy`; each provider may override it.
        transport: the HTTP pool every REST provider sends through: an httpx transport
            (tests pass `httpx.MockTransport`), or `"aiohttp"` / `"httpx"` to pick a built-in
            one. Default: `$XCOMM_HTTP_TRANSPORT` if set, else `"aiohttp"` when aiohttp is
            installed (`xcomm[fast]`), else `"httpx"`. Built-in ones get `limits`; a transport
            you pass brings its own. See "The HTTP pool" in `docs/concepts.md`.
        clock: the time source for limiters and retry sleeps (tests pass a `FakeClock`).
        metrics: a collector to feed (a new one by default).
        outbox: where campaigns are tracked: a path or `sqlite:///...` URL (SQLite, WAL),
            `"memory://"`, or an `OutboxStore`. Default: `$XCOMM_OUTBOX`, else a SQLite file
            in the user's data directory. Opened on first use, closed with the manager.

    A manager opens once (`async with`, or `await comm.open()`); `aclose()` is idempotent.
    Providers are created by cheap synchronous factories on an open manager and connect lazily.
    """

    def __init__(
        self,
        *,
        timeout: Timeout | float | None = DEFAULT_TIMEOUT,
        limits: Limits = DEFAULT_LIMITS,
        rate_limits: Mapping[str, RateLimit | float] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | Literal["aiohttp", "httpx"] | None = None,
        clock: Clock | None = None,
        metrics: MetricsCollector | None = None,
        outbox: str | os.PathLike[str] | OutboxStore | None = None,
    ) -> None:
        if not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be an xcomm.Limits, got {type(limits).__name__}")
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry must be an xcomm.RetryPolicy, got {type(retry).__name__}"
            )
        if transport is None:
            transport = _transport_from_env()
        if transport is not None and not (
            transport in _TRANSPORTS if isinstance(transport, str) else _is_transport(transport)
        ):
            raise ConfigurationError(
                "transport must be 'aiohttp', 'httpx' or an httpx.AsyncBaseTransport "
                "(for example httpx.MockTransport)"
            )
        if transport == "aiohttp" and not _have_aiohttp():  # said now, not at the first request
            raise ConfigurationError("transport 'aiohttp' needs aiohttp: pip install 'xcomm[fast]'")
        self._timeout = Timeout.coerce(timeout)
        self._limits = limits
        self._retry = retry
        self._transport_choice = transport
        self._clock: Clock = clock or MONOTONIC
        self._metrics = metrics or MetricsCollector()
        self._limiters = GlobalRateLimiter(clock=self._clock)
        for key, value in (rate_limits or {}).items():
            limit = RateLimit.coerce(value, what=f"rate_limits[{key!r}]")
            if limit is not None:
                self._limiters.get_or_create(key, limit)
        self._state = _State.UNOPENED
        self._stack: contextlib.AsyncExitStack | None = None
        self._http: HttpPool | None = None
        self._providers: list[Provider] = []
        self._bounds: dict[str, anyio.CapacityLimiter] = {}
        if outbox is not None and not isinstance(outbox, str | os.PathLike | OutboxStore):
            raise ConfigurationError(
                "outbox must be a path, a URL such as 'sqlite:///campaigns.db' or "
                "'memory://', or an OutboxStore"
            )
        self._outbox_location = outbox
        self._outbox: OutboxStore | None = None
        self._outbox_lock: anyio.Lock | None = None
        self._suppressions: Suppressions | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> Self:
        """Open the shared resources. Prefer `async with CommManager() as comm:`."""
        if self._state is not _State.UNOPENED:
            raise LifecycleError(
                f"a CommManager can be opened only once (this one is {self._state.value}); "
                "create a new CommManager"
            )
        # Nothing opens here: the HTTP pool and the providers open at their first use, and
        # close in reverse order (the providers first).
        stack = contextlib.AsyncExitStack()
        stack.push_async_callback(self._close_http)
        stack.push_async_callback(self._close_providers)
        self._stack, self._state = stack, _State.OPEN
        return self

    async def aclose(self) -> None:
        """Close every provider and the shared client. Safe to call more than once."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def outbox(self) -> OutboxStore:
        """The durable outbox, opened on first use (see the `outbox=` argument)."""
        self._require_open("use the outbox")
        if self._outbox is not None:
            return self._outbox
        if self._outbox_lock is None:
            self._outbox_lock = anyio.Lock()
        async with self._outbox_lock:
            if self._outbox is None:
                from xcomm.outbox import default_outbox_location, open_outbox

                store = open_outbox(self._outbox_location or default_outbox_location())
                await store.open()
                assert self._stack is not None
                self._stack.push_async_callback(store.aclose)
                self._outbox = store
        return self._outbox

    @property
    def suppressions(self) -> Suppressions:
        """The outbox's suppression list: addresses no campaign sends to. See `docs/bulk.md`.

        `await comm.suppressions.add("ada@example.org", reason="unsubscribed")`. Getting it
        does no I/O; its methods open the outbox on first use (the manager must be open).
        """
        if self._suppressions is None:
            from xcomm.bulk import Suppressions

            self._suppressions = Suppressions(self.outbox)
        return self._suppressions

    def _http_pool(self) -> HttpPool:
        """The shared HTTP client and its transport, made at the first use: a program that
        only speaks SMTP never imports httpx nor loads the CA certificates a client needs."""
        self._require_open("use the HTTP pool")
        if self._http is None:
            import httpx

            from xcomm._http import to_httpx_timeout

            transport = _make_transport(self._transport_choice, self._limits)
            # The client owns (and closes) the transport; providers drive the transport
            # directly and `comm.http` shares its pool.
            client = httpx.AsyncClient(
                timeout=to_httpx_timeout(self._timeout),
                transport=transport,
                headers={"User-Agent": _user_agent()},
                follow_redirects=False,
            )
            self._http = HttpPool(client, transport, tuple(client.headers.items()))
        return self._http

    async def _close_http(self) -> None:
        pool, self._http = self._http, None
        if pool is not None:
            await pool.client.aclose()

    async def _close_providers(self) -> None:
        providers, self._providers = self._providers, []
        for provider in reversed(providers):
            try:
                await provider.aclose()
            except Exception:  # one provider failing to close must not leak the others
                logger.warning("closing %s failed", provider.name, exc_info=True)

    @property
    def is_open(self) -> bool:
        """True between `open()` and `aclose()`."""
        return self._state is _State.OPEN

    # -- shared parts ----------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        """An httpx client on the shared HTTP pool, for your own requests (while open).

        It shares the providers' transport (and so their connections and limits), but
        providers do not go through it: its cookies and event hooks do not reach them.
        """
        self._require_open("use comm.http")
        return self._http_pool().client

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """The HTTP pool every REST provider sends through (only while open)."""
        self._require_open("use comm.transport")
        return self._http_pool().transport

    @property
    def limiters(self) -> GlobalRateLimiter:
        """The limiter registry every provider's calls pass through."""
        return self._limiters

    @property
    def metrics(self) -> MetricsCollector:
        """Counts, success rates and durations of every provider call."""
        return self._metrics

    @property
    def clock(self) -> Clock:
        """The time source of limiters and retries."""
        return self._clock

    def _require_open(self, action: str) -> None:
        if self._state is _State.UNOPENED:
            raise LifecycleError(
                f"open the CommManager before you {action}: `async with CommManager() as comm:`"
            )
        if self._state is _State.CLOSED:
            raise LifecycleError(f"this CommManager is closed; cannot {action}")

    def _context(self) -> ProviderContext:
        return ProviderContext(
            limiters=self._limiters,
            retry=self._retry,
            metrics=self._metrics,
            clock=self._clock,
            timeout=self._timeout,
            http_pool=self._http_pool,
            outbox=self.outbox,
        )

    def _limiter(
        self, provider: str, account: str, rate_limit: RateLimit | float | None
    ) -> Limiter | None:
        """Compose account, provider and global buckets (whichever are configured)."""
        keys: list[str] = []
        limit = RateLimit.coerce(rate_limit)
        if limit is not None:
            self._limiters.get_or_create(account, limit)
            keys.append(account)
        elif account in self._limiters:
            keys.append(account)
        if provider in self._limiters and provider != account:
            keys.append(provider)
        if GLOBAL in self._limiters:
            keys.append(GLOBAL)
        return self._limiters.compose(*keys) if keys else None

    def _concurrency(self, key: str, limit: int) -> anyio.CapacityLimiter:
        """The bound on requests in flight for `key` (a mailbox), one per key per manager."""
        bound = self._bounds.get(key)
        if bound is None:
            bound = self._bounds[key] = anyio.CapacityLimiter(limit)
        return bound

    def _register(self, provider: Provider) -> None:
        self._providers.append(provider)

    # -- provider factories ------------------------------------------------------------------

    def smtp(
        self,
        host: str,
        port: int = 587,
        *,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        tls_context: ssl.SSLContext | None = None,
        validate_certs: bool = True,
        oauth_token: str | Callable[[], Awaitable[str]] | None = None,
        sender: str | Address | None = None,
        pool_size: int = 4,
        max_messages_per_connection: int = 100,
        idle_timeout: float = 30.0,
        timeout: Timeout | float | None = None,
        local_hostname: str | None = None,
        allow_plaintext_auth: bool = False,
        max_message_size: int | None = None,
        rate_limit: RateLimit | float | None = None,
        retry: RetryPolicy | None = None,
        password_env: str | None = None,
    ) -> SMTPProvider:
        """A pooled SMTP provider (PIPELINING when offered). See `docs/providers/smtp.md`.

        `rate_limit` (a `RateLimit`, or messages per minute) applies to this account
        (host, port, user); `rate_limits={"smtp": ...}` on the manager to all SMTP providers.
        `password_env` names an environment variable holding the password: campaigns sent
        through this provider keep the name (never the password), so `xcomm worker`
        processes can rebuild the provider.
        """
        self._require_open("create an SMTP provider")
        from xcomm.email._smtp import SMTPProvider

        if password_env is not None:
            if password is not None:
                raise ConfigurationError("give password= or password_env=, not both")
            password = secret_from_env(password_env, f"the SMTP password of {host}")

        account = f"smtp:{username or ''}@{host}:{port}"
        provider = SMTPProvider(
            self._context(),
            limiter=self._limiter("smtp", account, rate_limit),
            retry=retry,
            host=host,
            port=port,
            username=username,
            password=password,
            use_tls=use_tls,
            start_tls=start_tls,
            tls_context=tls_context,
            validate_certs=validate_certs,
            oauth_token=oauth_token,
            sender=sender,
            pool_size=pool_size,
            max_messages_per_connection=max_messages_per_connection,
            idle_timeout=idle_timeout,
            timeout=timeout,
            local_hostname=local_hostname,
            allow_plaintext_auth=allow_plaintext_auth,
            max_message_size=max_message_size,
            password_env=password_env,
        )
        self._register(provider)
        return provider

    def imap(
        self,
        host: str,
        port: int = 993,
        *,
        username: str,
        password: str | None = None,
        oauth_token: str | Callable[[], Awaitable[str]] | None = None,
        use_tls: bool = True,
        start_tls: bool | None = False,
        tls_context: ssl.SSLContext | None = None,
        validate_certs: bool = True,
        folder: str = "INBOX",
        pool_size: int = 2,
        idle_timeout: float = 60.0,
        batch_size: int = 100,
        timeout: Timeout | float | None = None,
        allow_plaintext_auth: bool = False,
        rate_limit: RateLimit | float | None = None,
        retry: RetryPolicy | None = None,
        password_env: str | None = None,
    ) -> IMAPProvider:
        """A pooled IMAP provider to search and read a mailbox. See `docs/providers/imap.md`.

        Needs the `xcomm[imap]` extra (aioimaplib, GPL-3.0) when the first connection opens.
        `rate_limit` (a `RateLimit`, or calls per minute) applies to this account.
        """
        self._require_open("create an IMAP provider")
        from xcomm.email._imap import IMAPProvider

        if password_env is not None:
            if password is not None:
                raise ConfigurationError("give password= or password_env=, not both")
            password = secret_from_env(password_env, f"the IMAP password of {host}")
        provider = IMAPProvider(
            self._context(),
            limiter=self._limiter("imap", f"imap:{username}@{host}:{port}", rate_limit),
            retry=retry,
            host=host,
            port=port,
            username=username,
            password=password,
            oauth_token=oauth_token,
            use_tls=use_tls,
            start_tls=start_tls,
            tls_context=tls_context,
            validate_certs=validate_certs,
            folder=folder,
            pool_size=pool_size,
            idle_timeout=idle_timeout,
            batch_size=batch_size,
            timeout=timeout,
            allow_plaintext_auth=allow_plaintext_auth,
        )
        self._register(provider)
        return provider

    def ses(
        self,
        region: str | None = None,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        sender: str | Address | None = None,
        configuration_set: str | None = None,
        tags: Mapping[str, str] | None = None,
        max_connections: int = 20,
        timeout: Timeout | float | None = None,
        rate_limit: RateLimit | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> SESProvider:
        """An Amazon SES (API v2) provider. See `docs/providers/ses.md`.

        Needs the `xcomm[aws]` extra (aiobotocore). Credentials and region come from the
        standard AWS chain (environment, `profile`, shared files, role) unless given here;
        the client opens on first use. `rate_limit` (a `RateLimit`, or messages per minute)
        applies to this account and region; `await ses.apply_quota()` sets it from the
        account's `MaxSendRate` instead.
        """
        self._require_open("create an SES provider")
        from xcomm.email._ses import SESProvider

        who = access_key_id or (f"profile:{profile}" if profile else "")
        digest = hashlib.sha256(who.encode()).hexdigest()[:16]
        account = f"ses:{region or 'default'}:{digest}"
        provider = SESProvider(
            self._context(),
            limiter=self._limiter("ses", account, rate_limit),
            relimit=lambda limit: self._limiter("ses", account, limit),
            account=account,
            retry=retry,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            profile=profile,
            endpoint_url=endpoint_url,
            sender=sender,
            configuration_set=configuration_set,
            tags=tags,
            max_connections=max_connections,
            timeout=timeout,
        )
        self._register(provider)
        return provider

    def gmail(
        self,
        credentials_path: str | os.PathLike[str] | None = None,
        *,
        token_manager: TokenManager | None = None,
        user_id: str = "me",
        sender: str | Address | None = None,
        subject: str | None = None,
        scopes: Sequence[str] = GMAIL_DEFAULT_SCOPES,
        create_labels: bool = True,
        rate_limit: RateLimit | float | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | float | None = None,
    ) -> GmailProvider:
        """A Gmail API provider to send, search and act on mail. See
        `docs/providers/gmail.md`.

        `credentials_path` is an authorized-user token file (`xcomm auth gmail` writes one)
        or a service-account key (`subject=` impersonates a Workspace user through
        domain-wide delegation, with `scopes`: the default sends and reads; labelling and
        trashing need gmail.modify); or pass your own `token_manager`. `add_label()` creates
        a missing label unless `create_labels=False`. The limiter defaults to the `gmail`
        preset (15,000 quota units a minute per user; a send costs 100); `rate_limit`
        overrides it.
        """
        self._require_open("create a Gmail provider")
        from xcomm._presets import PRESETS
        from xcomm.auth import (
            AuthorizedUser,
            RefreshGrant,
            ServiceAccountGrant,
            ServiceAccountKey,
            TokenManager,
            load_google_credentials,
        )
        from xcomm.email._gmail import GmailProvider

        if (credentials_path is None) == (token_manager is None):
            raise ConfigurationError(
                "comm.gmail(): give a credentials file (credentials_path=) or token_manager=, "
                "one of the two"
            )
        path = None if credentials_path is None else os.fspath(credentials_path)
        who = f"token-manager:{id(token_manager)}"
        if path is not None:
            creds = load_google_credentials(path)
            if isinstance(creds, AuthorizedUser):
                token_manager = TokenManager(
                    RefreshGrant(self.oauth(creds.client), creds.refresh_token),
                    clock=self._clock,
                    token=creds.token,
                )
                who = f"user:{creds.client_id}:{creds.refresh_token}"
            elif isinstance(creds, ServiceAccountKey):
                grant = ServiceAccountGrant(self.oauth(), creds, scopes, subject=subject)
                token_manager = TokenManager(grant, clock=self._clock)
                who = f"sa:{creds.client_email}:{subject or ''}"
            else:
                raise ConfigurationError(
                    f"{path} is an OAuth client file, not a token: run `xcomm auth gmail "
                    f"--client-secrets {path}` first and pass the token file it writes"
                )
        if subject is not None and path is None:
            raise ConfigurationError("comm.gmail(): subject= needs a service-account key file")
        assert token_manager is not None
        digest = hashlib.sha256(f"{who}:{user_id}".encode()).hexdigest()[:16]
        provider = GmailProvider(
            self._context(),
            limiter=self._limiter(
                "gmail", f"gmail:{digest}", rate_limit or PRESETS["gmail"].limit
            ),
            auth=token_manager,
            retry=retry,
            user_id=user_id,
            sender=sender,
            create_labels=create_labels,
            timeout=timeout,
            spec={
                "kind": "gmail", "credentials_path": path, "user_id": user_id,
                "subject": subject, "sender": None if sender is None else str(sender),
                "create_labels": None if create_labels else False,
            },
        )  # fmt: skip
        self._register(provider)
        return provider

    def outlook(
        self,
        *,
        mailbox: str | None = None,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_secret_env: str | None = None,
        credentials_path: str | os.PathLike[str] | None = None,
        token_manager: TokenManager | None = None,
        sender: str | Address | None = None,
        save_to_sent_items: bool = True,
        rate_limit: RateLimit | float | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | float | None = None,
    ) -> GraphProvider:
        """A Microsoft Graph provider that sends from, searches and acts on an Outlook /
        Exchange Online mailbox.

        App-only: `tenant_id`, `client_id`, `client_secret` (or `client_secret_env`, the name
        of the variable holding it, which `spec()` keeps so workers can rebuild the provider)
        and `mailbox`. A signed-in user: `credentials_path` (written by `xcomm auth outlook`)
        or your own `token_manager`; without `mailbox` they send as `/me`. The limiter
        defaults to the `graph` preset per mailbox (10,000 requests per 10 minutes);
        `rate_limit` overrides it. At most 4 requests per mailbox are in flight at once,
        across every provider of this manager (a `$batch` call counts for up to 4). Reading
        needs Mail.Read, acting on messages Mail.ReadWrite. See `docs/providers/outlook.md`.
        """
        self._require_open("create an Outlook provider")
        from xcomm._presets import PRESETS
        from xcomm.email._graph import GraphProvider
        from xcomm.email._graph_setup import GRAPH_MAILBOX_CONCURRENCY, graph_setup

        setup = graph_setup(
            oauth=self.oauth, clock=self._clock, mailbox=mailbox, tenant_id=tenant_id,
            client_id=client_id, client_secret=client_secret,
            client_secret_env=client_secret_env, credentials_path=credentials_path,
            token_manager=token_manager, sender=None if sender is None else str(sender),
            save_to_sent_items=save_to_sent_items,
        )  # fmt: skip
        provider = GraphProvider(
            self._context(),
            limiter=self._limiter("outlook", setup.account, rate_limit or PRESETS["graph"].limit),
            auth=setup.auth,
            concurrency=self._concurrency(setup.mailbox_key, GRAPH_MAILBOX_CONCURRENCY),
            retry=retry,
            mailbox=mailbox,
            sender=sender,
            save_to_sent_items=save_to_sent_items,
            timeout=timeout,
            spec=setup.spec,
        )
        self._register(provider)
        return provider

    @overload
    def email(self, provider: Literal["imap"], /, **config: Any) -> IMAPProvider: ...

    @overload
    def email(self, provider: Literal["gmail"], /, **config: Any) -> GmailProvider: ...

    @overload
    def email(self, provider: Literal["outlook", "graph"], /, **config: Any) -> GraphProvider: ...

    @overload
    def email(self, provider: str, /, **config: Any) -> EmailProvider: ...

    def email(self, provider: str, /, **config: Any) -> EmailProvider | IMAPProvider:
        """An email provider by name with its own settings: `comm.email("smtp", host=...)`.

        Sending providers ("smtp", "ses", "gmail", "outlook" alias "graph") share one API
        (`compose()`, `send()`, `send_message()`); reading providers ("imap", "gmail", "outlook")
        share another (`search()`, `get()`, `folders()`, message actions, `watch()`).
        """
        factories: dict[str, Callable[..., EmailProvider | IMAPProvider]] = {
            "smtp": self.smtp,
            "ses": self.ses,
            "gmail": self.gmail,
            "outlook": self.outlook,
            "graph": self.outlook,
            "imap": self.imap,
        }
        factory = factories.get(provider.lower() if isinstance(provider, str) else provider)
        if factory is None:
            raise ConfigurationError(
                f"unknown email provider {provider!r}; available: {', '.join(sorted(factories))}"
            )
        try:
            inspect.signature(factory).bind(**config)
        except TypeError as exc:
            raise ConfigurationError(
                f"bad settings for email provider {provider!r}: {exc}"
            ) from exc
        return factory(**config)

    def webhook(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
        timeout: Timeout | float | None = None,
        rate_limit: RateLimit | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> WebhookProvider:
        """A provider that POSTs JSON to `url`; `await hook.send({"text": "hi"})`."""
        self._require_open("create a webhook provider")
        from xcomm._webhook import WebhookProvider

        digest = hashlib.sha256(str(url).encode()).hexdigest()[:16]
        provider = WebhookProvider(
            self._context(),
            limiter=self._limiter("webhook", f"webhook:{digest}", rate_limit),
            url=url,
            headers=headers,
            method=method,
            timeout=timeout,
            retry=retry,
        )
        self._register(provider)
        return provider

    def oauth(
        self,
        client: OAuthClient | None = None,
        *,
        rate_limit: RateLimit | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> OAuthEndpoint:
        """A client of `client`'s token endpoint, on the shared pipeline (see docs/auth.md).

        `client` may be omitted when only `service_account_token()` is used (the key file
        names its own token endpoint).
        """
        self._require_open("create an OAuth endpoint")
        from xcomm.auth import OAuthEndpoint

        account = f"oauth:{client.token_uri}:{client.client_id}" if client else "oauth"
        endpoint = OAuthEndpoint(
            self._context(),
            limiter=self._limiter("oauth", account, rate_limit),
            client=client,
            retry=retry,
        )
        self._register(endpoint)
        return endpoint

    def create_bulk_sender(
        self,
        provider: EmailProvider,
        *,
        max_concurrent: int = 32,
        rate_limit: RateLimit | float | None = None,
        per_domain_concurrency: int | None = None,
        retry_failed: bool = True,
        track_delivery: bool = True,
        policy: str = "at-least-once",
        lease: float = 300.0,
        daily_cap: int | str | None = None,
        processes: int = 1,
    ) -> BulkSender:
        """A campaign sender over `provider`, tracked in this manager's outbox.

        `rate_limit` is messages per minute (or a `RateLimit`); `daily_cap` is messages per
        day for the provider's account (or a preset name such as `"gmail"`); `processes`
        sends each campaign from that many processes sharing the outbox (more CPU cores).
        See `docs/bulk.md`.
        """
        self._require_open("create a bulk sender")
        from xcomm.bulk import BulkSender

        return BulkSender(
            provider,
            outbox=self.outbox,
            clock=self._clock,
            max_concurrent=max_concurrent,
            rate_limit=rate_limit,
            per_domain_concurrency=per_domain_concurrency,
            retry_failed=retry_failed,
            track_delivery=track_delivery,
            policy=policy,
            lease=lease,
            daily_cap=daily_cap,
            processes=processes,
        )

    # -- scheduling ---------------------------------------------------------------------------

    def provider_for(self, spec: Mapping[str, Any], *, campaign_id: str = "") -> EmailProvider:
        """The email provider a stored campaign was sent with (its `spec()`).

        A provider of this manager with the same spec is reused (one created with a password
        in code matches too); otherwise one is built from the spec, the password coming from
        its `password_env` variable (an Outlook client secret from `client_secret_env`).
        Raises `ConfigurationError` saying what to do when neither works.
        """
        from xcomm.bulk._campaign import rebuild_problem
        from xcomm.email._base import EmailProvider

        self._require_open("find a campaign's provider")
        wanted = dict(spec)
        for provider in self._providers:
            if (
                isinstance(provider, EmailProvider)
                and not provider.closed
                and (provider.spec() == wanted)
            ):
                return provider
        of = f"campaign {campaign_id!r}" if campaign_id else "this campaign"
        if (problem := rebuild_problem(wanted)) is not None:
            raise ConfigurationError(
                f"{of} {problem}; or create the same provider on this manager before running "
                "the scheduler"
            )
        kind = wanted.pop("kind")
        return self.email(str(kind), **wanted)

    def create_campaign(
        self,
        name: str,
        *,
        steps: Sequence[tuple[Template, float | datetime.timedelta]],
        provider: EmailProvider,
        rate_limit: RateLimit | float | None = None,
        unsubscribe: UnsubscribeSigner | None = None,
    ) -> DripCampaign:
        """A drip sequence: `steps` are `(template, delay)`, each delay after the step before.

        `await campaign.enroll(contacts)` queues contacts; `await comm.run_scheduler()` (or
        `xcomm worker`) sends each step when due. See `docs/bulk.md`.
        """
        self._require_open("create a campaign")
        from xcomm.bulk._campaign import campaign_limit
        from xcomm.bulk._scheduler import DripCampaign, steps_of
        from xcomm.email._base import EmailProvider

        if not isinstance(provider, EmailProvider):
            raise ConfigurationError("provider must be an email provider, e.g. comm.smtp(...)")
        return DripCampaign(
            name,
            steps_of(steps),
            provider=provider,
            outbox=self.outbox,
            rate_limit=campaign_limit(rate_limit),
            unsubscribe=unsubscribe,
        )

    async def run_scheduler(
        self,
        *,
        campaign_id: str | None = None,
        until_idle: bool = False,
        poll_interval: float = 1.0,
        max_concurrent: int = 32,
        per_domain_concurrency: int | None = None,
        policy: str = "at-least-once",
        lease: float = 300.0,
        rate_share: float = 1.0,
        on_progress: ProgressCallback | None = None,
    ) -> CampaignResult:
        """Send outbox records when they are due: scheduled campaigns, drip steps, retries.

        Runs until cancelled (run it as a task of your app), or with `until_idle=True` until
        nothing is due now. Several processes may run it on one SQLite outbox; give each
        `rate_share=1/N` so that together they keep every campaign's rate limit.
        Returns the totals of what it sent.
        """
        scheduler = await self._scheduler(
            max_concurrent, per_domain_concurrency, policy, lease, rate_share
        )
        return await scheduler.run(
            campaign_id=campaign_id,
            until_idle=until_idle,
            poll_interval=poll_interval,
            on_progress=on_progress,
        )

    async def resume_campaign(
        self,
        campaign_id: str,
        /,
        *,
        max_concurrent: int | None = None,
        per_domain_concurrency: int | None = None,
        policy: str | None = None,
        lease: float = 300.0,
        on_progress: ProgressCallback | None = None,
    ) -> CampaignResult:
        """Send what a campaign has left that is due (after a crash, or an interrupted run).

        Uses the campaign's stored definition, including the concurrency and delivery policy
        it was sent with unless given here; raises `ConfigurationError` before sending
        anything if the campaign is unknown or its provider cannot be rebuilt.
        """
        found = await (await self.outbox()).get_campaign(campaign_id)
        stored = found.options if found is not None else {}
        scheduler = await self._scheduler(
            max_concurrent or int(stored.get("max_concurrent", 32)),
            per_domain_concurrency or stored.get("per_domain_concurrency"),
            policy or str(stored.get("policy", "at-least-once")),
            lease,
        )
        await scheduler.resolve(campaign_id)  # fail before any claim
        return await scheduler.run(
            campaign_id=campaign_id, until_idle=True, on_progress=on_progress
        )

    async def _scheduler(
        self,
        max_concurrent: int,
        per_domain_concurrency: int | None,
        policy: str,
        lease: float,
        rate_share: float = 1.0,
    ) -> Scheduler:
        self._require_open("run the scheduler")
        from xcomm.bulk._campaign import Options
        from xcomm.bulk._scheduler import Scheduler

        options = Options(
            max_concurrent=max_concurrent,
            per_domain_concurrency=per_domain_concurrency,
            policy=policy,
            lease=lease,
        )
        store = await self.outbox()
        return Scheduler(self, store, options, clock=self._clock, rate_share=rate_share)


_TRANSPORTS = ("aiohttp", "httpx")
TRANSPORT_ENV = "XCOMM_HTTP_TRANSPORT"


def _transport_from_env() -> Literal["aiohttp", "httpx"] | None:
    value = os.environ.get(TRANSPORT_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value == "aiohttp":
        return "aiohttp"
    if value == "httpx":
        return "httpx"
    raise ConfigurationError(f"{TRANSPORT_ENV} must be 'aiohttp', 'httpx' or 'auto', not {value!r}")


def _have_aiohttp() -> bool:
    return importlib.util.find_spec("aiohttp") is not None  # imported at its first request


def _is_transport(value: object) -> bool:
    import httpx

    return isinstance(value, httpx.AsyncBaseTransport)


def _make_transport(
    choice: httpx.AsyncBaseTransport | Literal["aiohttp", "httpx"] | None, limits: Limits
) -> httpx.AsyncBaseTransport:
    """The manager's HTTP pool: the given transport, or a built-in one with `limits`."""
    import httpx

    if not isinstance(choice, str | None):
        return choice
    if choice is None:
        choice = "aiohttp" if _have_aiohttp() else "httpx"
    pool_limits = httpx.Limits(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
    )
    if choice == "aiohttp":
        from xcomm.transports import AiohttpTransport

        return AiohttpTransport(limits=pool_limits)
    return httpx.AsyncHTTPTransport(limits=pool_limits, trust_env=True)


def _user_agent() -> str:
    from xcomm._version import __version__

    return f"xcomm/{__version__}"
