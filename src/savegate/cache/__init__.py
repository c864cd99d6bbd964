"""The exact response cache's stores: whole answers by request hash, in this process's
memory (LRU, bounded in bytes) or in Redis (shared by every worker and replica). Which
requests are cached, and how a hit is answered, is the service's business
(`service/cache.py`)."""

from savegate.cache.entry import CacheBackend, CacheUnavailable, Entry
from savegate.cache.memory import MemoryCache

__all__ = ["CacheBackend", "CacheUnavailable", "Entry", "MemoryCache"]
