"""Signed webhooks: which events become messages, where they may go, and their delivery from the outbox."""

from workflow.webhooks.dispatcher import WebhookDispatcher
from workflow.webhooks.guard import RefusedDestination, check_url
from workflow.webhooks.messages import EVENT_TYPES, SESSION_EVENTS, WebhookPolicy, WebhookTarget

__all__ = [
    "EVENT_TYPES",
    "SESSION_EVENTS",
    "RefusedDestination",
    "WebhookDispatcher",
    "WebhookPolicy",
    "WebhookTarget",
    "check_url",
]
