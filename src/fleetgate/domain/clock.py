"""Who owns "now": one clock per run, so a decision's date and its ledger year cannot straddle New Year."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


class Clock:
    """The system clock in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def today(self) -> dt.date:
        return self.now().date()


@dataclass(frozen=True)
class FixedClock(Clock):
    """A clock stopped at one instant: a run reads it once, tests set it."""

    instant: dt.datetime

    def now(self) -> dt.datetime:
        return self.instant

    @classmethod
    def at(cls, day: dt.date) -> FixedClock:
        """Noon UTC on `day`."""
        return cls(dt.datetime.combine(day, dt.time(12), dt.UTC))

    @classmethod
    def frozen(cls, clock: Clock | None = None) -> FixedClock:
        """The instant `clock` (or the system clock) reads now, held for a whole run."""
        return cls((clock or Clock()).now())
