"""The data layer: where sessions, their event logs and their images live."""

from core.store import SessionStore, StoredImage
from store.memory import MemoryStore
from store.redis import RedisStore

__all__ = ["MemoryStore", "RedisStore", "SessionStore", "StoredImage"]
