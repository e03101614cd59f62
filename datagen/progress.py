"""Progress lines with rate and ETA for long-running commands (to stderr)."""

from __future__ import annotations

import sys
import time


def format_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Call ``update(n)`` as work completes; prints at most every ``interval`` seconds."""

    def __init__(
        self,
        total: int,
        label: str,
        unit: str = "samples",
        interval: float = 2.0,
        stream=None,
        enabled: bool = True,
    ):
        self.total, self.label, self.unit = total, label, unit
        self.interval, self.enabled = interval, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self._last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.interval or self.done >= self.total):
            self._last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def rate(self, now: float | None = None) -> float:
        elapsed = (now or time.perf_counter()) - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        rate = self.rate(now)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        return (
            f"[{self.label}] {self.done}/{self.total} {self.unit}  {rate:.2f} {self.unit}/s  "
            f"elapsed {format_seconds((now or time.perf_counter()) - self.start)}  ETA {format_seconds(eta)}"
        )
