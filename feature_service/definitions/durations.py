"""Durations as written in definitions: `30s`, `15m`, `1h`, `7d`, `2w`.

>>> parse_duration("1h")
3600
>>> format_duration(604800)
'7d'
"""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str | int) -> int:
    """Seconds in a duration such as `90s`, `5m`, `1h`, `7d`; a bare int is seconds.

    Raises ValueError naming the accepted forms when `text` is not a positive duration.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration; use e.g. 30s, 5m, 1h, 7d")
    if isinstance(text, int):
        seconds = text
    else:
        match = _PATTERN.match(str(text))
        if match is None:
            raise ValueError(
                f"{text!r} is not a duration; use a whole number and a unit "
                "(s, m, h, d, w), e.g. 30s, 5m, 1h, 7d"
            )
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return seconds


def format_duration(seconds: int) -> str:
    """The exact spelling of `seconds` in the largest unit up to days, used in feature names.

    Weeks are spelled in days (`604800` -> `7d`), as people name weekly windows.
    """
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
