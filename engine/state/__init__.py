"""Per-partition customer state: the store seam (``base``) and its two backends, ``memory`` and
``rocksdb`` (RocksDB with its compacted changelog)."""

from microseg.engine.state.base import DnaStore, StoreError
from microseg.engine.state.memory import MemoryStore

__all__ = ["DnaStore", "StoreError", "MemoryStore"]
