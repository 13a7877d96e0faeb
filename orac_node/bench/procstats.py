"""CPU and memory of the node process while a scenario runs (psutil)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import psutil

SAMPLE_EVERY_S = 0.5
"""RSS sampling interval: fine enough to see a 10-minute soak's drift."""


@dataclass
class ProcessStats:
    """CPU seconds used and RSS seen over one measurement window."""

    cpu_s: float = 0.0
    wall_s: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_max_mb: float = 0.0
    rss_series: list[tuple[float, float]] | None = None  # (seconds from start, MB)

    @property
    def cpu_percent(self) -> float:
        """Average CPU use, 100 = one core."""
        return 100 * self.cpu_s / self.wall_s if self.wall_s else 0.0


class ProcessSampler:
    """Measures one process between :meth:`start` and :meth:`stop`."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._task: asyncio.Task[None] | None = None
        self._stats = ProcessStats(rss_series=[])
        self._cpu0 = 0.0
        self._t0 = 0.0

    def _cpu(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def _rss_mb(self) -> float:
        return float(self._process.memory_info().rss) / 2**20

    def start(self) -> None:
        """Begin measuring."""
        self._t0 = time.monotonic()
        self._cpu0 = self._cpu()
        self._stats = ProcessStats(rss_series=[])
        self._stats.rss_start_mb = self._stats.rss_max_mb = self._rss_mb()
        self._task = asyncio.create_task(self._sample(), name="rss-sampler")

    async def _sample(self) -> None:
        series = self._stats.rss_series
        assert series is not None
        while True:
            rss = self._rss_mb()
            series.append((time.monotonic() - self._t0, rss))
            self._stats.rss_max_mb = max(self._stats.rss_max_mb, rss)
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def stop(self) -> ProcessStats:
        """Finish measuring and return the figures."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._stats.cpu_s = self._cpu() - self._cpu0
        self._stats.wall_s = time.monotonic() - self._t0
        self._stats.rss_end_mb = self._rss_mb()
        return self._stats
