"""Durations as written in definitions: `30s`, `15m`, `1h`, `7d`, `2w`.

Every duration is positive and at most `MAX_DURATION_S` (3650 days, ten years): windows,
hops, ttl, allowed lateness and `max_future` alike. Longer ones are refused at load,
because the state layout and the time arithmetic hold times in 64 bits (a window of
99999999999999999999999 days used to load and then stop the worker at its first event),
and no feature needs more.

>>> parse_duration("1h")
3600
>>> format_duration(604800)
'7d'
>>> parse_duration("3651d")
Traceback (most recent call last):
...
ValueError: '3651d' is longer than the longest duration allowed, 3650d (10 years)
"""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
MAX_DURATION_S = 3650 * 86400
"""The longest duration a definition may give: 3650 days (ten years)."""
# Digits beyond this cannot be a duration within MAX_DURATION_S; checked before int()
# so a 5,000-digit number is refused as too long, not by Python's int conversion limit.
_MAX_DIGITS = len(str(MAX_DURATION_S))


def parse_duration(text: str | int) -> int:
    """Seconds in a duration such as `90s`, `5m`, `1h`, `7d`; a bare int is seconds.

    Raises ValueError naming the accepted forms when `text` is not a positive duration,
    or the limit when it is longer than `MAX_DURATION_S`.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration; use e.g. 30s, 5m, 1h, 7d")
    if isinstance(text, int):
        seconds = text
    else:
        match = _PATTERN.match(str(text))
        if match is None:
            raise ValueError(
                f"{_shown(text)} is not a duration; use a whole number and a unit "
                "(s, m, h, d, w), e.g. 30s, 5m, 1h, 7d"
            )
        digits = match.group(1).lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS:
            raise ValueError(_too_long(text))
        seconds = int(digits) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{_shown(text)} is not a positive duration")
    if seconds > MAX_DURATION_S:
        raise ValueError(_too_long(text))
    return seconds


def format_duration(seconds: int) -> str:
    """The exact spelling of `seconds` in the largest unit up to days, used in feature names.

    Weeks are spelled in days (`604800` -> `7d`), as people name weekly windows.
    """
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def _too_long(text: str | int) -> str:
    return (
        f"{_shown(text)} is longer than the longest duration allowed, "
        f"{format_duration(MAX_DURATION_S)} (10 years)"
    )


def _shown(text: str | int) -> str:
    """`text` as an error shows it: quoted, and cut short if it is long."""
    shown = repr(text) if isinstance(text, str) else str(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."
