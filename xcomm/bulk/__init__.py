"""Bulk sending: campaigns through a bounded worker pool on the durable outbox."""

from xcomm.bulk._recipients import Recipient, RecipientsSource
from xcomm.bulk._result import CampaignFailed, CampaignResult, Outcome, Progress
from xcomm.bulk._scheduler import DripCampaign
from xcomm.bulk._sender import BulkSender

__all__ = [
    "BulkSender",
    "CampaignFailed",
    "CampaignResult",
    "DripCampaign",
    "Outcome",
    "Progress",
    "Recipient",
    "RecipientsSource",
]
