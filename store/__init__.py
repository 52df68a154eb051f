"""The data layer: where sessions, their event logs and their images live."""

from store.base import SessionStore, StoredImage
from store.memory import MemoryStore

__all__ = ["MemoryStore", "SessionStore", "StoredImage"]
