"""Listening for connections within the process's file limit: raise it, cap connections, back off."""

from listener.accept import BackoffAcceptor, LogThrottle, add_backoff_accept_handler
from listener.limits import FD_RESERVE, connection_cap, open_file_limit, raise_open_file_limit
from listener.server import CappedHTTPServer

__all__ = [
    "FD_RESERVE",
    "BackoffAcceptor",
    "CappedHTTPServer",
    "LogThrottle",
    "add_backoff_accept_handler",
    "connection_cap",
    "open_file_limit",
    "raise_open_file_limit",
]
