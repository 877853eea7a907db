"""Why a search stopped, and when a gap counts as closed: shared by every search."""

from __future__ import annotations

import enum


class StopReason(enum.StrEnum):
    """Why a branch and bound (or a bisection) ended. Its bound is sound whatever the reason."""

    GAP = "gap"  # the certified bound is within the gap of the best value
    EXHAUSTED = "exhausted"  # nothing left open: every box or sub-problem was closed
    FOUND = "found"  # a decision's target was reached (a witness)
    BUDGET = "budget"  # the time budget ended
    MAX_BOXES = "max-boxes"  # the work limit (boxes bounded) was reached
    MAX_NODES = "max-nodes"  # the work limit of ReLU splitting (sub-problems) was reached
    INTERRUPTED = "interrupted"  # Ctrl-C
    TIMEOUT = "timeout"  # an exact verifier's query ran out of time (bisection)
    UNKNOWN = "unknown"  # an exact verifier could not answer (bisection)
    ERROR = "error"  # an exact verifier failed (bisection)
    NO_PROGRESS = "no progress (counterexample below threshold on replay)"

    @property
    def complete(self) -> bool:
        """Did the search finish (gap closed or nothing left), rather than being cut short?"""
        return self in (StopReason.GAP, StopReason.EXHAUSTED)


def gap_closed(value: float, upper: float, rel_gap: float, abs_gap: float) -> bool:
    """Is ``upper`` within the relative (or absolute) gap of ``value``?"""
    return upper - value <= max(abs_gap, rel_gap * abs(value))


def work_part(total: int | None, spent: int, parts: int) -> int | None:
    """With a work limit of ``total`` boxes, what the next of ``parts`` searches still to run
    gets: the rest after ``spent``, shared evenly, as a time budget is (None: no limit)."""
    if total is None:
        return None
    return max(total - spent, 0) // max(parts, 1)
