"""An aiohttp service that owns one `CommManager` for its whole life.

A `cleanup_ctx` opens the manager (and its one pooled SMTP provider) at startup and closes it
at cleanup, so every request shares the same connection pool, limiters and metrics. xcomm's
errors become HTTP answers in one middleware.

    SMTP_HOST=127.0.0.1 SMTP_PORT=8025 python docs/examples/aiohttp_app.py
    curl -X POST localhost:8080/notify -H 'content-type: application/json' \
         -d '{"to": "ada@example.com", "subject": "Hi", "body": "Hello"}'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

import xcomm
from xcomm import CommManager, RateLimit, RetryPolicy, SMTPProvider

#: Retry-After sent with a 429 when the provider did not say how long to wait.
DEFAULT_RETRY_AFTER = 30

COMM = web.AppKey("comm", CommManager)
SMTP = web.AppKey("smtp", SMTPProvider)
TIMEOUT = web.AppKey("send_timeout", float)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, exc: Exception, **extra: Any) -> web.Response:
    body = {"detail": str(exc), "error": type(exc).__name__, **extra}
    return web.json_response(body, status=status)


def error_response(exc: xcomm.CommunicationError) -> web.Response:
    """The HTTP answer for an xcomm error (same mapping as the FastAPI example)."""
    if isinstance(exc, xcomm.RecipientRejected):
        rejected = [
            {"address": r.address, "code": r.code, "reason": r.reason} for r in exc.rejected
        ]
        return _error(422, exc, rejected=rejected)
    if isinstance(exc, xcomm.ValidationError | xcomm.MessageError):
        return _error(422, exc)
    if isinstance(exc, xcomm.RateLimitError):
        wait = DEFAULT_RETRY_AFTER if exc.retry_after is None else math.ceil(exc.retry_after)
        response = _error(429, exc)
        response.headers["Retry-After"] = str(max(1, wait))
        return response
    if isinstance(exc, xcomm.ServiceUnavailable | xcomm.TransportError):
        return _error(503, exc)
    return _error(502, exc)  # credentials or configuration: the service is misconfigured


@web.middleware
async def xcomm_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn xcomm errors raised by a handler into JSON error responses."""
    try:
        return await handler(request)
    except xcomm.CommunicationError as exc:
        return error_response(exc)


async def notify(request: web.Request) -> web.Response:
    """`POST /notify` with `{"to": ..., "subject": ..., "body": ...}`."""
    try:
        payload = await request.json()
    except json.JSONDecodeError:
        return web.json_response({"detail": "the body must be JSON"}, status=400)
    if not isinstance(payload, dict):
        return web.json_response({"detail": "the body must be a JSON object"}, status=422)
    to, subject, body = (payload.get(name) for name in ("to", "subject", "body"))
    if not (isinstance(to, str) and isinstance(subject, str) and isinstance(body, str)):
        return web.json_response(
            {"detail": "'to', 'subject' and 'body' are required and must be strings"}, status=422
        )
    result = await request.app[SMTP].send_message(to, subject, body, timeout=request.app[TIMEOUT])
    return web.json_response({"message_id": result.message_id, "accepted": list(result.accepted)})


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
) -> web.Application:
    """An aiohttp app that sends notifications through one pooled SMTP provider.

    The manager and the provider live on `app[COMM]` and `app[SMTP]` between startup and
    cleanup. The arguments are those of the FastAPI example's `create_app`.
    """

    async def comm_ctx(app: web.Application) -> AsyncIterator[None]:
        async with CommManager() as comm:
            app[COMM] = comm
            app[SMTP] = comm.smtp(
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

    app = web.Application(middlewares=[xcomm_errors])
    app[TIMEOUT] = timeout
    app.cleanup_ctx.append(comm_ctx)
    app.router.add_post("/notify", notify)
    return app


def _env_bool(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    return value in ("1", "true", "yes", "on")


if __name__ == "__main__":
    web.run_app(
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
        port=int(os.environ.get("PORT", "8080")),
    )
