"""Request counters for tests and benchmarks: by operation and status, by auth phase, in total."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Requests seen, thread-safe: by operation and status, by auth phase, and in total."""

    _by_operation: dict[str, dict[int, int]] = field(default_factory=dict)
    _by_phase: dict[str, int] = field(default_factory=dict)
    _total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, operation: str, status: int) -> None:
        with self._lock:
            statuses = self._by_operation.setdefault(operation, {})
            statuses[status] = statuses.get(status, 0) + 1
            self._total += 1

    def phase(self, name: str) -> None:
        with self._lock:
            self._by_phase[name] = self._by_phase.get(name, 0) + 1

    def count(self, operation: str | None = None, status: int | None = None) -> int:
        """Requests of one operation (all when None), of one status (all when None)."""
        with self._lock:
            return sum(
                n
                for op, statuses in self._by_operation.items()
                if operation is None or op == operation
                for code, n in statuses.items()
                if status is None or code == status
            )

    def phases(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_phase)

    def total(self) -> int:
        with self._lock:
            return self._total

    def reset(self) -> None:
        with self._lock:
            self._by_operation.clear()
            self._by_phase.clear()
            self._total = 0

    def snapshot(self) -> dict[str, object]:
        """`{"total": n, "by_operation": {op: {status: n}}, "by_status": {status: n}, "by_phase": {...}}`."""
        with self._lock:
            by_status: dict[int, int] = {}
            for statuses in self._by_operation.values():
                for code, n in statuses.items():
                    by_status[code] = by_status.get(code, 0) + n
            return {
                "total": self._total,
                "by_operation": {op: dict(statuses) for op, statuses in self._by_operation.items()},
                "by_status": by_status,
                "by_phase": dict(self._by_phase),
            }
