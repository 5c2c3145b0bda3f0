"""A customer's plan history over a period: which plan segments the period saw, for how long, and the
credits counted under each. Pure functions; the close turns the result into a statement
(``tollgate.domain.rating.rate_parts``).

The counter holds the period's total credits and, per plan segment, the credits counted under it (the
authorizer adds both in one write). Credits the segment tallies do not account for were counted before
plan segments existed (an older authorizer): they belong to the segment in force at the period's start,
the only plan such a customer can have had.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from tollgate.domain.models import PlanSegment
from tollgate.domain.periods import period_end, period_start


@dataclass(frozen=True)
class SegmentShare:
    """One segment's share of a period: ``[starts, ends)`` within it (empty when the segment lies outside the
    period but has credits in it) and the credits counted under it."""

    segment: PlanSegment
    starts: datetime
    ends: datetime
    credits: int


def period_shares(
    segments: Sequence[PlanSegment], period: str, counted: Mapping[int, int], total: int
) -> list[SegmentShare]:
    """The segments ``period`` overlaps or has credits under, in time order, with their credits.

    ``counted``: credits per segment number as the counter holds them; ``total``: the counter's total. Every
    credit of ``total`` is in exactly one share: a tally of a segment the history does not know (never
    written by Tollgate) and credits no tally accounts for go to the segment in force at the period's start.
    """
    start, end = period_start(period), period_end(period)
    known = {segment.seq for segment in segments}
    unattributed = total - sum(credits for seq, credits in counted.items() if seq in known)
    if unattributed < 0:
        raise ValueError(
            f"the counter's plan segment tallies ({sum(counted.values())}) exceed its total ({total})"
        )
    shares: list[SegmentShare] = []
    for index, segment in enumerate(segments):
        following = segments[index + 1].since if index + 1 < len(segments) else None
        starts = max(segment.since or start, start)
        ends = min(following or end, end)
        credits = counted.get(segment.seq, 0)
        if starts < ends:
            shares.append(SegmentShare(segment, starts, ends, credits))
        elif credits:  # counted under a segment that does not cover the period: never dropped
            moment = min(max(starts, start), end)
            shares.append(SegmentShare(segment, moment, moment, credits))
    if unattributed:
        first = next(i for i, share in enumerate(shares) if share.starts < share.ends)
        share = shares[first]
        shares[first] = SegmentShare(share.segment, share.starts, share.ends, share.credits + unattributed)
    return sorted(shares, key=lambda share: (share.starts, share.segment.seq))
