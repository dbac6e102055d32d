"""A FastAPI service that owns one `CommManager` for its whole life.

The lifespan opens the manager (and its one pooled SMTP provider) at startup and closes it at
shutdown, so every request shares the same connection pool, limiters and metrics. xcomm's
errors become HTTP answers in one place (`install_error_handlers`).

Run it against any SMTP server, for example the demo's (`python -m xcomm demo` prints one) or
a local aiosmtpd (`python -m aiosmtpd -n -l 127.0.0.1:8025`):

    SMTP_HOST=127.0.0.1 SMTP_PORT=8025 python docs/examples/fastapi_app.py
    curl -X POST localhost:8000/notify -H 'content-type: application/json' \
         -d '{"to": "ada@example.com", "subject": "Hi", "body": "Hello"}'
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import xcomm
from xcomm import CommManager, RateLimit, RetryPolicy, SMTPProvider

#: Retry-After sent with a 429 when the provider did not say how long to wait.
DEFAULT_RETRY_AFTER = 30


class Notification(BaseModel):
    """The body of `POST /notify`."""

    to: str = Field(description="recipient: 'ada@example.com' or 'Ada <ada@example.com>'")
    subject: str = Field(max_length=998)
    body: str


class Sent(BaseModel):
    """The answer of `POST /notify`."""

    message_id: str | None
    accepted: list[str]


def create_app(
    smtp_host: str,
    smtp_port: int = 587,
    *,
    username: str | None = None,
    password: str | None = None,
    sender: str | None = None,
    start_tls: bool | None = None,
    pool_size: int = 4,
    rate_limit: RateLimit | float | None = None,
    retry: RetryPolicy | None = None,
    timeout: float = 30.0,
) -> FastAPI:
    """A FastAPI app that sends notifications through one pooled SMTP provider.

    The manager and the provider live on `app.state.comm` and `app.state.smtp` between
    startup and shutdown.

    Args:
        smtp_host: the SMTP server.
        smtp_port: its port (587 submission with STARTTLS, 465 with `use_tls`, 25).
        username: the login, when the server needs one.
        password: the password for `username`.
        sender: the From address (defaults to `username`).
        start_tls: None upgrades when offered, True requires STARTTLS, False never.
        pool_size: SMTP connections shared by all requests.
        rate_limit: messages per minute (or a `RateLimit`) for this account.
        retry: how sends are retried (the manager's default policy when None).
        timeout: seconds one send may take, retries included.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with CommManager() as comm:
            app.state.comm = comm
            app.state.smtp = comm.smtp(
                smtp_host,
                smtp_port,
                username=username,
                password=password,
                sender=sender,
                start_tls=start_tls,
                pool_size=pool_size,
                rate_limit=rate_limit,
                retry=retry,
            )
            yield
        # Leaving the block closed the pool: QUIT on every idle SMTP connection.

    app = FastAPI(title="notifications", lifespan=lifespan)
    install_error_handlers(app)

    @app.post("/notify", response_model=Sent)
    async def notify(note: Notification, request: Request) -> Sent:
        smtp: SMTPProvider = request.app.state.smtp
        result = await smtp.send_message(note.to, note.subject, note.body, timeout=timeout)
        return Sent(message_id=result.message_id, accepted=list(result.accepted))

    return app


def _error(status: int, exc: Exception, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map xcomm's errors to HTTP answers.

    | xcomm error                                   | HTTP |
    |-----------------------------------------------|------|
    | ValidationError (bad address, header, ...)    | 422  |
    | RecipientRejected, MessageError               | 422  |
    | RateLimitError                                | 429 with Retry-After |
    | ServiceUnavailable, TransportError            | 503  |
    | AuthenticationError, ConfigurationError, ...  | 502 (the service is misconfigured) |
    """

    @app.exception_handler(xcomm.ValidationError)
    async def invalid(request: Request, exc: xcomm.ValidationError) -> JSONResponse:
        return _error(422, exc)

    @app.exception_handler(xcomm.RecipientRejected)
    async def rejected(request: Request, exc: xcomm.RecipientRejected) -> JSONResponse:
        return JSONResponse(
            {
                "detail": str(exc),
                "error": type(exc).__name__,
                "rejected": [{"address": r.address, "code": r.code, "reason": r.reason}
                             for r in exc.rejected],
            },
            422,
        )  # fmt: skip

    @app.exception_handler(xcomm.MessageError)
    async def refused(request: Request, exc: xcomm.MessageError) -> JSONResponse:
        return _error(422, exc)

    @app.exception_handler(xcomm.RateLimitError)
    async def throttled(request: Request, exc: xcomm.RateLimitError) -> JSONResponse:
        wait = DEFAULT_RETRY_AFTER if exc.retry_after is None else math.ceil(exc.retry_after)
        return _error(429, exc, **{"Retry-After": str(max(1, wait))})

    @app.exception_handler(xcomm.ServiceUnavailable)
    async def unavailable(request: Request, exc: xcomm.ServiceUnavailable) -> JSONResponse:
        return _error(503, exc)

    @app.exception_handler(xcomm.TransportError)
    async def unreachable(request: Request, exc: xcomm.TransportError) -> JSONResponse:
        return _error(503, exc)

    @app.exception_handler(xcomm.CommunicationError)
    async def misconfigured(request: Request, exc: xcomm.CommunicationError) -> JSONResponse:
        return _error(502, exc)


def _env_bool(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    return value in ("1", "true", "yes", "on")


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        create_app(
            os.environ.get("SMTP_HOST", "127.0.0.1"),
            int(os.environ.get("SMTP_PORT", "8025")),
            username=os.environ.get("SMTP_USERNAME") or None,
            password=os.environ.get("SMTP_PASSWORD") or None,
            sender=os.environ.get("SMTP_SENDER", "notifications@example.com"),
            start_tls=_env_bool("SMTP_STARTTLS"),
            pool_size=int(os.environ.get("SMTP_POOL_SIZE", "4")),
        ),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
    )
