"""Each call keeps one ``llama-server`` slot: its prompt stays cached between its answers.

llama-server gives a request the free slot whose cache shares the longest beginning with it.
A call's drafts break that: the engine starts an answer on the first transcript and cancels
it when the words change, and the next request arrives while the cancelled one still holds
its slot. It then goes to another slot and reads the whole prompt again (measured: 253
tokens, 4.2 s on one busy core, instead of 7 new tokens). Pinned with ``id_slot``, it
waits the few milliseconds until the cancelled one lets go and reads only what is new.

Calls name themselves in OpenAI's ``prompt_cache_key`` field. A new call takes the slot
that holds the fewest calls (the least recently given of those); a call silent for
``idle`` seconds gives its place up. More calls than slots share slots: their answers then
take turns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["SlotAffinity"]


class SlotAffinity:
    """Which slot each call's requests go to.

    Args:
        slots: the server's ``--parallel`` slots.
        idle: seconds after its last request that a call's place is given up.
        clock: the time source (monotonic seconds).
    """

    def __init__(
        self, slots: int, *, idle: float = 600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.idle = idle
        self._clock = clock
        self._calls: dict[str, tuple[int, float]] = {}  # call -> (slot, last request)
        self._given = [0.0] * slots  # when each slot was last given to a new call
        self._lock = threading.Lock()

    def slot_for(self, call: str) -> int:
        """The slot of ``call``'s requests (the same one as long as it keeps asking)."""
        now = self._clock()
        with self._lock:
            for name, (_, last) in list(self._calls.items()):
                if now - last > self.idle:
                    del self._calls[name]
            if call in self._calls:
                slot = self._calls[call][0]
            else:
                held = [0] * self.slots
                for taken, _ in self._calls.values():
                    held[taken] += 1
                slot = min(range(self.slots), key=lambda s: (held[s], self._given[s], s))
                self._given[slot] = now
            self._calls[call] = (slot, now)
            return slot

    def calls(self) -> int:
        """Calls holding a place now."""
        with self._lock:
            return len(self._calls)
