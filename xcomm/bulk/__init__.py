"""Bulk sending: campaigns through a bounded worker pool on the durable outbox, and the
suppression list they respect."""

from xcomm.bulk._progress import CampaignRun
from xcomm.bulk._recipients import Recipient, RecipientsSource
from xcomm.bulk._result import CampaignFailed, CampaignResult, Outcome, Progress
from xcomm.bulk._scheduler import DripCampaign
from xcomm.bulk._sender import BulkSender
from xcomm.bulk._suppressions import Suppressions

__all__ = [
    "BulkSender",
    "CampaignFailed",
    "CampaignResult",
    "CampaignRun",
    "DripCampaign",
    "Outcome",
    "Progress",
    "Recipient",
    "RecipientsSource",
    "Suppressions",
]
