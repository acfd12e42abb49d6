"""Stands in for a livekit plugin in tests/engine/test_provider_cache.py: records its importer."""

import threading

IMPORTED_ON = threading.current_thread()
