"""xcomm: asyncio-native messaging over email, SMS, chat and sockets through one API.

```python
from xcomm import CommManager

async with CommManager() as comm:
    smtp = comm.smtp("smtp.example.com", username="me@example.com", password="...")
    result = await smtp.compose().to("you@example.com").subject("Hi").body("Hello").send()
```
"""

import importlib
import typing

from xcomm._version import __version__

if typing.TYPE_CHECKING:
    from xcomm._clock import Clock, MonotonicClock
    from xcomm._config import Limits, RateLimit, RetryPolicy, Timeout
    from xcomm._errors import (
        AuthenticationError,
        CommunicationError,
        ConfigurationError,
        ConnectError,
        ConnectionLost,
        ConnectTimeout,
        DeliveryUnknown,
        FileAlreadyExists,
        LifecycleError,
        MessageError,
        OutboxError,
        PoolTimeout,
        ProviderError,
        QuerySyntaxError,
        RateLimitError,
        RecipientRejected,
        RequestNotSent,
        ResponseTimeout,
        ServiceUnavailable,
        TransportError,
        ValidationError,
    )
    from xcomm._limits import (
        CompositeLimiter,
        GlobalRateLimiter,
        LimiterStatistics,
        RateLimiter,
        TokenBucket,
    )
    from xcomm._logging import configure_logging, get_logger, redact
    from xcomm._manager import CommManager
    from xcomm._metrics import MetricsCollector, Operation, OperationStats
    from xcomm._models import (
        Address,
        Attachment,
        Contact,
        EmailMessage,
        RejectedRecipient,
        SendResult,
    )
    from xcomm._presets import PRESETS, PlatformLimit
    from xcomm._provider import Provider
    from xcomm._templates import (
        CompiledTemplate,
        RenderedContent,
        Template,
        TemplateError,
        UnsubscribeSigner,
    )
    from xcomm._webhook import WebhookProvider
    from xcomm.auth import FileTokenStore, OAuthClient, OAuthEndpoint, Token, TokenManager
    from xcomm.bulk import (
        BulkSender,
        CampaignFailed,
        CampaignResult,
        CampaignRun,
        DripCampaign,
        Outcome,
        Progress,
        Suppressions,
    )
    from xcomm.email._base import EmailProvider
    from xcomm.email._batch import FlagBatch
    from xcomm.email._compose import EmailDraft
    from xcomm.email._gmail import GmailProvider
    from xcomm.email._gmail_watch import GmailCheckpoint, GmailWatchState
    from xcomm.email._graph import GraphProvider
    from xcomm.email._graph_watch import GraphCheckpoint
    from xcomm.email._imap import IMAPProvider
    from xcomm.email._mailbox import FolderStatus, MailboxProvider, SearchQuery
    from xcomm.email._message import AttachmentInfo, Folder, ReceivedMessage
    from xcomm.email._pool import PoolStatistics
    from xcomm.email._query import EmailQuery, SortOrder
    from xcomm.email._query_imap import ImapSearch
    from xcomm.email._query_match import QueryableMessage
    from xcomm.email._query_plan import QueryPlan
    from xcomm.email._ses import SendQuota, SESProvider
    from xcomm.email._smtp import SMTPProvider

# Public name -> the module that defines it. A name is imported at its first use
# (PEP 562), so a program that sends with one provider, the CLI and the bulk sender's helper
# processes do not import every provider (and httpx, Jinja2, ...) at start-up.
_EXPORTS = {
    "Clock": "xcomm._clock",
    "MonotonicClock": "xcomm._clock",
    "Limits": "xcomm._config",
    "RateLimit": "xcomm._config",
    "RetryPolicy": "xcomm._config",
    "Timeout": "xcomm._config",
    "AuthenticationError": "xcomm._errors",
    "CommunicationError": "xcomm._errors",
    "ConfigurationError": "xcomm._errors",
    "ConnectError": "xcomm._errors",
    "ConnectionLost": "xcomm._errors",
    "ConnectTimeout": "xcomm._errors",
    "DeliveryUnknown": "xcomm._errors",
    "FileAlreadyExists": "xcomm._errors",
    "LifecycleError": "xcomm._errors",
    "MessageError": "xcomm._errors",
    "OutboxError": "xcomm._errors",
    "PoolTimeout": "xcomm._errors",
    "ProviderError": "xcomm._errors",
    "QuerySyntaxError": "xcomm._errors",
    "RateLimitError": "xcomm._errors",
    "RecipientRejected": "xcomm._errors",
    "RequestNotSent": "xcomm._errors",
    "ResponseTimeout": "xcomm._errors",
    "ServiceUnavailable": "xcomm._errors",
    "TransportError": "xcomm._errors",
    "ValidationError": "xcomm._errors",
    "CompositeLimiter": "xcomm._limits",
    "GlobalRateLimiter": "xcomm._limits",
    "LimiterStatistics": "xcomm._limits",
    "RateLimiter": "xcomm._limits",
    "TokenBucket": "xcomm._limits",
    "configure_logging": "xcomm._logging",
    "get_logger": "xcomm._logging",
    "redact": "xcomm._logging",
    "CommManager": "xcomm._manager",
    "MetricsCollector": "xcomm._metrics",
    "Operation": "xcomm._metrics",
    "OperationStats": "xcomm._metrics",
    "Address": "xcomm._models",
    "Attachment": "xcomm._models",
    "Contact": "xcomm._models",
    "EmailMessage": "xcomm._models",
    "RejectedRecipient": "xcomm._models",
    "SendResult": "xcomm._models",
    "PRESETS": "xcomm._presets",
    "PlatformLimit": "xcomm._presets",
    "Provider": "xcomm._provider",
    "CompiledTemplate": "xcomm._templates",
    "RenderedContent": "xcomm._templates",
    "Template": "xcomm._templates",
    "TemplateError": "xcomm._templates",
    "UnsubscribeSigner": "xcomm._templates",
    "WebhookProvider": "xcomm._webhook",
    "FileTokenStore": "xcomm.auth",
    "OAuthClient": "xcomm.auth",
    "OAuthEndpoint": "xcomm.auth",
    "Token": "xcomm.auth",
    "TokenManager": "xcomm.auth",
    "BulkSender": "xcomm.bulk",
    "CampaignFailed": "xcomm.bulk",
    "CampaignResult": "xcomm.bulk",
    "CampaignRun": "xcomm.bulk",
    "DripCampaign": "xcomm.bulk",
    "Outcome": "xcomm.bulk",
    "Progress": "xcomm.bulk",
    "Suppressions": "xcomm.bulk",
    "EmailProvider": "xcomm.email._base",
    "FlagBatch": "xcomm.email._batch",
    "EmailDraft": "xcomm.email._compose",
    "GmailProvider": "xcomm.email._gmail",
    "GmailCheckpoint": "xcomm.email._gmail_watch",
    "GmailWatchState": "xcomm.email._gmail_watch",
    "GraphProvider": "xcomm.email._graph",
    "GraphCheckpoint": "xcomm.email._graph_watch",
    "IMAPProvider": "xcomm.email._imap",
    "FolderStatus": "xcomm.email._mailbox",
    "MailboxProvider": "xcomm.email._mailbox",
    "SearchQuery": "xcomm.email._mailbox",
    "AttachmentInfo": "xcomm.email._message",
    "Folder": "xcomm.email._message",
    "ReceivedMessage": "xcomm.email._message",
    "PoolStatistics": "xcomm.email._pool",
    "EmailQuery": "xcomm.email._query",
    "SortOrder": "xcomm.email._query",
    "ImapSearch": "xcomm.email._query_imap",
    "QueryableMessage": "xcomm.email._query_match",
    "QueryPlan": "xcomm.email._query_plan",
    "SendQuota": "xcomm.email._ses",
    "SESProvider": "xcomm.email._ses",
    "SMTPProvider": "xcomm.email._smtp",
}

__all__ = [
    "PRESETS",
    "Address",
    "Attachment",
    "AttachmentInfo",
    "AuthenticationError",
    "BulkSender",
    "CampaignFailed",
    "CampaignResult",
    "CampaignRun",
    "Clock",
    "CommManager",
    "CommunicationError",
    "CompiledTemplate",
    "CompositeLimiter",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "Contact",
    "DeliveryUnknown",
    "DripCampaign",
    "EmailDraft",
    "EmailMessage",
    "EmailProvider",
    "EmailQuery",
    "FileAlreadyExists",
    "FileTokenStore",
    "FlagBatch",
    "Folder",
    "FolderStatus",
    "GlobalRateLimiter",
    "GmailCheckpoint",
    "GmailProvider",
    "GmailWatchState",
    "GraphCheckpoint",
    "GraphProvider",
    "IMAPProvider",
    "ImapSearch",
    "LifecycleError",
    "LimiterStatistics",
    "Limits",
    "MailboxProvider",
    "MessageError",
    "MetricsCollector",
    "MonotonicClock",
    "OAuthClient",
    "OAuthEndpoint",
    "Operation",
    "OperationStats",
    "OutboxError",
    "Outcome",
    "PlatformLimit",
    "PoolStatistics",
    "PoolTimeout",
    "Progress",
    "Provider",
    "ProviderError",
    "QueryPlan",
    "QuerySyntaxError",
    "QueryableMessage",
    "RateLimit",
    "RateLimitError",
    "RateLimiter",
    "ReceivedMessage",
    "RecipientRejected",
    "RejectedRecipient",
    "RenderedContent",
    "RequestNotSent",
    "ResponseTimeout",
    "RetryPolicy",
    "SESProvider",
    "SMTPProvider",
    "SearchQuery",
    "SendQuota",
    "SendResult",
    "ServiceUnavailable",
    "SortOrder",
    "Suppressions",
    "Template",
    "TemplateError",
    "Timeout",
    "Token",
    "TokenBucket",
    "TokenManager",
    "TransportError",
    "UnsubscribeSigner",
    "ValidationError",
    "WebhookProvider",
    "configure_logging",
    "get_logger",
    "redact",
    "__version__",
]


# Subpackages, which `import xcomm` used to import with everything else: `xcomm.bulk` still
# works without importing it first.
_SUBPACKAGES = frozenset({"auth", "bulk", "email", "outbox", "testing", "transports"})


def __getattr__(name: str) -> typing.Any:
    """Import a public name from its module (or a subpackage) at its first use."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"xcomm.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xcomm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
