"""Flow control (DESIGN §8): limits by time window, per-key limits and start rates, at `now`.

Pure functions of the spec and of times the store already holds, so a restart or a failover
decides exactly as before:

* A window is open at an instant or not; the effective limit is the lowest limit of the open
  windows, else `concurrencyLimit`. Lowering it never stops a run: new grants wait.
* A run's key value is its label's value, or its parameter's value as JSON; a run without the
  label or parameter (or with a null parameter) is not limited by that rule.
* A start rate is a token bucket that starts full; its level is derived from the grant times
  alone (`starts_available`), as the min-plus form of the bucket: for every k, the k latest
  grants plus the new ones must fit in `burst + rate × (now − k-th latest grant)`. Integer
  microsecond arithmetic, so a boundary is exact and a deadline at it finds the token there.
"""

from __future__ import annotations

import datetime
import json
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workpools.api.flowcontrol import KeyLimit, LimitWindow, StartRate
from workpools.core import schedules

UTC = datetime.UTC
MINUTE_US = 60_000_000

__all__ = [
    "EffectiveLimit",
    "effective_limit",
    "key_value",
    "next_start",
    "next_window_change",
    "starts_available",
    "window_open",
    "window_problems",
]


# -- windows -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EffectiveLimit:
    limit: int | None
    """The limit that applies now; None: unlimited."""
    window: LimitWindow | None = None
    """The open window that sets it; None: concurrencyLimit applies."""

    def describe(self) -> str:
        """`2` or `0 in window night`: the limit as a hold reason names it."""
        shown = "∞" if self.limit is None else str(self.limit)
        return shown if self.window is None else f"{shown} in window {self.window.label()}"


def effective_limit(base: int | None, windows: Sequence[LimitWindow], now: datetime.datetime) -> EffectiveLimit:
    """The open window with the lowest limit (the first of equals), else `base`."""
    open_ = [w for w in windows if window_open(w, now)]
    if not open_:
        return EffectiveLimit(base)
    lowest = min(open_, key=lambda w: w.limit)
    return EffectiveLimit(lowest.limit, lowest)


def window_open(window: LimitWindow, now: datetime.datetime) -> bool:
    """Whether `window` is open at `now` (a window whose cron cannot be evaluated never opens)."""
    if window.cron is not None:
        cron = _cron(window)
        if cron is None or window.duration_seconds is None:
            return False
        last = next(cron.before(now), None)
        return last is not None and now < last + datetime.timedelta(seconds=window.duration_seconds)
    start, end = _clock(window.from_), _clock(window.to)
    local = now.astimezone(_zone(window.time_zone)).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end  # over midnight


def next_window_change(windows: Sequence[LimitWindow], now: datetime.datetime) -> datetime.datetime | None:
    """The first moment after `now` at which some window may open or close: a deadline for the timer."""
    return min((t for w in windows for t in _changes(w, now) if t > now), default=None)


def window_problems(windows: Sequence[LimitWindow]) -> list[str]:
    """Windows the schema accepted that cannot be evaluated (a reversed range such as `5-1`, a
    date that never comes such as February 30): they never open, and the condition says so."""
    problems = []
    for window in windows:
        if window.cron is not None and isinstance(parsed := schedules.parse_cached(window.cron, window.time_zone), str):
            problems.append(f"window {window.label()} never opens: {parsed}")
    return problems


def _changes(window: LimitWindow, now: datetime.datetime) -> Iterator[datetime.datetime]:
    if window.cron is not None:
        cron = _cron(window)
        if cron is None or window.duration_seconds is None:
            return
        if (last := next(cron.before(now), None)) is not None:
            yield last + datetime.timedelta(seconds=window.duration_seconds)  # it closes
        yield cron.after(now)  # it opens (again)
        return
    zone = _zone(window.time_zone)
    today = now.astimezone(zone).date()
    for days in range(3):  # today's and tomorrow's bounds; one more day covers a DST shift
        for bound in (window.from_, window.to):
            local = datetime.datetime.combine(today + datetime.timedelta(days=days), _clock(bound), tzinfo=zone)
            yield local.astimezone(UTC)


def _cron(window: LimitWindow) -> schedules.Cron | None:
    parsed = schedules.parse_cached(window.cron or "", window.time_zone)
    return parsed if isinstance(parsed, schedules.Cron) else None


def _zone(name: str | None) -> datetime.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name) if name else UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC  # the schema admits only known zones; a tzdata older than the schema's reads UTC


def _clock(text: str | None) -> datetime.time:
    hours, minutes = (text or "00:00").split(":")
    return datetime.time(int(hours), int(minutes))


# -- keys ----------------------------------------------------------------------------------------


def key_value(rule: KeyLimit, labels: Mapping[str, str], parameters: Mapping[str, Any]) -> str | None:
    """The run's value for `rule` (None: the run lacks the key, so the rule does not limit it)."""
    if rule.label is not None:
        return labels.get(rule.label)
    value = parameters.get(rule.parameter or "")
    if value is None:
        return None
    # JSON, so the string "1" and the number 1 are different values, and objects compare by content.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- start rates ---------------------------------------------------------------------------------


def starts_available(grants: Iterable[datetime.datetime], rate: StartRate, now: datetime.datetime) -> int:
    """How many grants the bucket allows at `now`, given every earlier grant time (any order)."""
    available = rate.burst
    for k, elapsed in enumerate(_elapsed_us(grants, now), start=1):
        available = min(available, rate.burst - k + rate.per_minute * elapsed // MINUTE_US)
    return max(0, available)


def next_start(grants: Iterable[datetime.datetime], rate: StartRate, now: datetime.datetime) -> datetime.datetime:
    """The first moment at or after `now` at which one grant is allowed (if none is made meanwhile)."""
    wait_us = 0
    for k, elapsed in enumerate(_elapsed_us(grants, now), start=1):
        # term k allows one more once per_minute × (elapsed + wait) ≥ (1 + k − burst) × one minute
        needed = -(-(1 + k - rate.burst) * MINUTE_US // rate.per_minute)  # ceiling division
        wait_us = max(wait_us, needed - elapsed)
    return now + datetime.timedelta(microseconds=wait_us)


def _elapsed_us(grants: Iterable[datetime.datetime], now: datetime.datetime) -> list[int]:
    """Microseconds since each grant, latest first; a grant stamped after `now` (another clock) counts as now."""
    return sorted(max(0, _us(now - g)) for g in grants)


def _us(delta: datetime.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
