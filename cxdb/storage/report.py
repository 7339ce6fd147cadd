"""The report of ``cxdb check``, the same on every backend."""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_PROBLEMS", "Report"]

MAX_PROBLEMS = 100


class Report:
    """Problems found, each a kind and its details; the first :data:`MAX_PROBLEMS` are listed, all are
    counted."""

    def __init__(self) -> None:
        self.problems: list[dict[str, Any]] = []
        self.count = 0

    def problem(self, kind: str, **details: Any) -> None:
        self.count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append({"kind": kind, **details})

    def result(self, counts: dict[str, int]) -> dict[str, Any]:
        """``ok``, ``problem_count``, ``problems`` and ``counts`` (blobs, turns, contexts)."""
        return {"ok": self.count == 0, "problem_count": self.count, "problems": self.problems, "counts": counts}
