"""Graph JSON batching: many requests in one `POST https://graph.microsoft.com/v1.0/$batch`.

A batch holds at most 20 requests, each `{"id", "method", "url", "headers", "body"}` with a
URL relative to the version (`/users/{mailbox}/messages/{id}`); the answer holds one
`{"id", "status", "headers", "body"}` per request, in any order. Each answer is read like a
request of its own (`classify()` of `_graph_errors.py`).

Graph dispatches up to four requests of a batch to Exchange at once and counts each against
the mailbox's limits. So a batch is charged one limiter token per request and holds
min(requests, 4) slots of the mailbox's concurrency bound while it is in flight. Requests
answered 429 (or 503 with a throttling code) are sent again, alone, after the longest
`Retry-After` among them, by the pipeline's retry policy (`run_attempts`): the others are
never repeated. What still fails is raised after the whole batch was sent: the error of the
first failed request, saying how many failed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from xcomm._errors import CommunicationError, ProviderError, RateLimitError
from xcomm._http import encode_json
from xcomm._retry import run_attempts
from xcomm.email._graph_errors import classify

if TYPE_CHECKING:
    from xcomm.email._graph import GraphProvider

__all__ = [
    "BATCH_LIMIT",
    "BATCH_URL",
    "SubRequest",
    "batch_body",
    "query_string",
    "read_answers",
    "run_batch",
    "segment",
    "sub_error",
]

logger = logging.getLogger("xcomm.outlook")

BATCH_LIMIT = 20
API_ROOT = "https://graph.microsoft.com/v1.0"
BATCH_URL = f"{API_ROOT}/$batch"
#: Characters left as they are in a query value: OData's `$`, quotes, parentheses, commas.
_QUERY_SAFE = "$'(),/:=@*!"


def segment(value: str) -> str:
    """`value` as one URL path segment (Graph ids may hold '/', '+' and '=')."""
    return quote(value, safe="@=-_.")


def query_string(params: Mapping[str, Any]) -> str:
    """OData query text: `$filter=isRead%20eq%20false&$top=10` (`$` kept, spaces %20)."""
    return "&".join(f"{k}={quote(str(v), safe=_QUERY_SAFE)}" for k, v in params.items())


@dataclass(frozen=True, slots=True)
class SubRequest:
    """One request of a batch: `url` is absolute (under `API_ROOT`) or relative to it."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def relative(self) -> str:
        return self.url[len(API_ROOT) :] if self.url.startswith(API_ROOT) else self.url

    @property
    def idempotent(self) -> bool:
        return self.method in ("GET", "PATCH", "DELETE")


def batch_body(requests: Sequence[SubRequest], ids: Sequence[str]) -> dict[str, Any]:
    """The JSON body of a `$batch` POST (at most `BATCH_LIMIT` requests)."""
    if len(requests) > BATCH_LIMIT:
        raise ValueError(f"a Graph batch holds at most {BATCH_LIMIT} requests")
    items = []
    for request_id, request in zip(ids, requests, strict=True):
        item: dict[str, Any] = {"id": request_id, "method": request.method,
                                "url": request.relative}  # fmt: skip
        headers = dict(request.headers)
        if request.body is not None:
            item["body"] = request.body
            headers.setdefault("Content-Type", "application/json")
        if headers:
            item["headers"] = headers
        items.append(item)
    return {"requests": items}


@dataclass(frozen=True, slots=True)
class Answer:
    """One response of a batch."""

    status: int
    headers: dict[str, str]
    body: Any


def read_answers(answer: Mapping[str, Any]) -> dict[str, Answer]:
    """The batch's responses by request id (malformed entries are left out)."""
    found: dict[str, Answer] = {}
    for item in answer.get("responses") or ():
        if not isinstance(item, dict) or not isinstance(item.get("status"), int):
            continue
        headers = item.get("headers")
        found[str(item.get("id"))] = Answer(
            status=item["status"],
            headers={str(k): str(v) for k, v in headers.items()}
            if isinstance(headers, dict)
            else {},
            body=item.get("body"),
        )
    return found


def sub_error(request: SubRequest, answer: Answer) -> ProviderError | None:
    """The xcomm error of one batch response (None for a 2xx), read like a plain answer."""
    content = encode_json(answer.body) if answer.body is not None else b""
    url = request.url if request.url.startswith("https://") else f"{API_ROOT}{request.url}"
    response = httpx.Response(
        answer.status,
        headers=answer.headers,
        content=content,
        request=httpx.Request(request.method, url),
    )
    return classify(response, idempotent=request.idempotent)


async def run_batch(
    provider: GraphProvider,
    operation: str,
    requests: Sequence[SubRequest],
    *,
    timeout: float | None = None,
) -> list[Any | ProviderError]:
    """Send `requests` in batches of 20; each one's JSON answer body ({} when empty) or its
    error, in order. Throttled requests are sent again as the module docstring says."""
    results: list[Any | ProviderError] = []
    for start in range(0, len(requests), BATCH_LIMIT):
        results.extend(await _one_batch(provider, operation, requests[start : start + BATCH_LIMIT],
                                        timeout))  # fmt: skip
    return results


async def _one_batch(
    provider: GraphProvider,
    operation: str,
    requests: Sequence[SubRequest],
    timeout: float | None,
) -> list[Any | ProviderError]:
    results: dict[int, Any | ProviderError] = {}
    pending = list(range(len(requests)))
    idempotent = all(r.idempotent for r in requests)

    async def attempt(number: int) -> None:
        nonlocal pending
        chosen = [requests[i] for i in pending]
        body = batch_body(chosen, [str(i + 1) for i in pending])
        try:
            answer, _, _ = await provider._api(
                f"{operation}.$batch", "POST", BATCH_URL, body=encode_json(body),
                content_type="application/json", idempotent=idempotent, timeout=timeout,
                cost=float(len(chosen)), slots=len(chosen),
            )  # fmt: skip
        except CommunicationError as exc:  # the POST was retried already: not again here
            raise _Failed(exc) from exc
        answers = read_answers(answer)
        throttled: list[int] = []
        waits: list[float] = []
        for index in pending:
            found = answers.get(str(index + 1))
            if found is None:
                results[index] = ProviderError(
                    "Graph's batch answer has no response for this request",
                    provider="outlook",
                )
                continue
            error = sub_error(requests[index], found)
            if isinstance(error, RateLimitError):
                throttled.append(index)
                if error.retry_after is not None:
                    waits.append(error.retry_after)
            results[index] = error if error is not None else (found.body or {})
        pending = throttled
        if throttled:
            wait = max(waits) if waits else None
            if wait and provider.limiter is not None:
                provider.limiter.penalize(wait)
            raise RateLimitError(
                f"Graph throttled {len(throttled)} of the batch's requests",
                provider="outlook",
                retry_after=wait,
                status=429,
            )

    try:
        await run_attempts(attempt, policy=provider._retry, clock=provider._context.clock)
    except RateLimitError:
        pass  # the throttled requests keep their own RateLimitError in `results`
    except _Failed as failed:
        raise failed.error from failed.error.__cause__
    return [results[i] for i in range(len(requests))]


class _Failed(Exception):
    """The batch POST itself failed (after the pipeline's own retries): not retried again."""

    def __init__(self, error: CommunicationError) -> None:
        super().__init__(str(error))
        self.error = error


def raise_failures(what: str, requests: Sequence[SubRequest], results: Sequence[Any]) -> None:
    """Raise the first failure among `results` (logging each), saying how many failed."""
    failed = [
        (r, e) for r, e in zip(requests, results, strict=True) if isinstance(e, ProviderError)
    ]
    if not failed:
        return
    for request, error in failed:
        logger.warning("%s: %s %s failed: %s", what, request.method, request.relative, error)
    first = failed[0][1]
    if len(failed) > 1:
        first.detail = (
            f"{len(failed)} of {len(requests)} batched requests failed (the others were "
            f"applied); first: {first.detail or first}"
        )
    raise first
