"""One streaming generator's stream, as its owner sees it: a state machine with no I/O.

A generator task's worker reports each yielded item (by index) before the task ends; the
reply to the task itself marks the end, or the error. This records what arrived, where the
consumer is, and which item reports may be acknowledged now:

    items:     0 1 2 3 4 5 .          received (a contiguous prefix is `available`)
    consumer:        ^                `consumed` items handed out by next()
    end:                   ^ [error]  set by the task's reply; a failed task adds one error item

- Duplicates: an item whose index was already received (a retried attempt running again
  over items its first attempt reported) is ignored.
- Backpressure (`threshold` > 0): the report of item `i` is acknowledged only once fewer than
  `threshold` items are received but unconsumed counting it, i.e. `i + 1 - consumed <
  threshold`; the producer waits for that acknowledgement before running further ahead.
  Held acknowledgements are let go as the consumer takes items, when the stream ends, or when
  the consumer abandons the stream (its generator was dropped).
- Abandoned streams drop items as they arrive: nobody will ever take them.
"""

from __future__ import annotations

# What to do with a reported item.
KEEP = "keep"  # a new item: store it for the consumer
DUPLICATE = "duplicate"  # already received (a retried attempt): ignore it
DROP = "drop"  # nobody will take it (the stream was abandoned or has ended): free it

# What the consumer's next() gets.
ITEM = "item"  # the item at the returned index
WAIT = "wait"  # nothing yet: wait for the next report or the end
ERROR = "error"  # the task failed after the items before: hand out its error
END = "end"  # no more items: StopIteration


class GeneratorState:
    """Items received, the consumer's position, the end, and the backpressure window."""

    __slots__ = (
        "threshold",
        "received",
        "available",
        "consumed",
        "ended",
        "failed",
        "error_taken",
        "abandoned",
        "held",
    )

    def __init__(self, threshold: int = -1):
        self.threshold = threshold  # <= 0: no backpressure
        self.received: set[int] = set()
        self.available = 0  # items 0 .. available-1 have all arrived
        self.consumed = 0  # items handed to the consumer
        self.ended = False
        self.failed = False
        self.error_taken = False
        self.abandoned = False
        self.held: list[int] = []  # item reports whose acknowledgement waits for the consumer

    # -- producer side --------------------------------------------------------------------
    def on_item(self, index: int) -> str:
        """An item report arrived: KEEP, DUPLICATE or DROP."""
        if index < 0:
            raise ValueError(f"item index must be >= 0, got {index}")
        if index in self.received or index < self.available:
            return DUPLICATE
        if self.ended:
            return DROP
        self.received.add(index)
        while self.available in self.received:
            self.received.discard(self.available)
            self.available += 1
        return DROP if self.abandoned else KEEP

    def may_ack(self, index: int) -> bool:
        """Whether the report of item `index` may be acknowledged now (the producer goes on)."""
        if self.threshold <= 0 or self.ended or self.abandoned:
            return True
        return index + 1 - self.consumed < self.threshold

    def hold(self, index: int) -> None:
        """Keep the acknowledgement of item `index` until `releasable` lets it go."""
        self.held.append(index)

    def releasable(self) -> list[int]:
        """Held acknowledgements that may go now (removed from the held ones), in order."""
        out = [i for i in self.held if self.may_ack(i)]
        if out:
            self.held = [i for i in self.held if i not in out]
        return out

    def on_end(self, failed: bool) -> None:
        """The task ended (its reply, or its final failure); `failed` adds the error item."""
        self.ended = True
        self.failed = failed

    # -- consumer side --------------------------------------------------------------------
    def take(self) -> tuple[str, int]:
        """Advance the consumer: (ITEM, index), (ERROR, -1), (END, -1), or (WAIT, -1)."""
        if self.consumed < self.available:
            self.consumed += 1
            return ITEM, self.consumed - 1
        if not self.ended:
            return WAIT, -1
        if self.failed and not self.error_taken:
            self.error_taken = True
            return ERROR, -1
        return END, -1

    def ready(self) -> bool:
        """Whether take() would answer without waiting."""
        return self.consumed < self.available or self.ended

    def finished(self) -> bool:
        """Whether everything the stream will ever give was taken (next() raises StopIteration)."""
        return self.ended and self.consumed >= self.available and (not self.failed or self.error_taken)

    def abandon(self) -> range:
        """The consumer dropped the stream: the indices of received items never taken."""
        self.abandoned = True
        untaken = range(self.consumed, self.available)
        self.consumed = self.available
        return untaken

    def unconsumed(self) -> int:
        return self.available - self.consumed
