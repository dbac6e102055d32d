"""xcomm: asyncio-native messaging over email, SMS, chat and sockets through one API.

```python
from xcomm import CommManager

async with CommManager() as comm:
    smtp = comm.smtp("smtp.example.com", username="me@example.com", password="...")
    result = await smtp.compose().to("you@example.com").subject("Hi").body("Hello").send()
```
"""

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
from xcomm._version import __version__
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
