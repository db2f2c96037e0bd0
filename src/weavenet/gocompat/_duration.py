"""Go's ``time.Duration``: ``time.ParseDuration`` and ``Duration.String``, in integer nanoseconds.

Why one parser: duration flags (``--dns-fallback-timeout``, ``--ipalloc-reclaim-after``) are Go durations in
Weave, so ``1m30s``, ``1.5h``, ``500ms`` or ``2h45m`` must mean what Go makes of them, everywhere. weavenet also
takes a bare number as seconds (``2``, ``2.5``), where Go says "missing unit"; that is the only leniency, and only
when asked for (``bare_seconds``).

Go 1.15's rules (weave 2.8 is built with it): an optional sign, then one or more ``<number><unit>`` parts with no
space between them; a number is digits with an optional fraction (``1``, ``1.5``, ``1.``, ``.5``, not ``.``);
units are ``ns us µs μs ms s m h``; ``0`` alone needs no unit; a total beyond an int64 of nanoseconds (about 292
years) is an error. A fraction is scaled in floating point and truncated, as Go does (``1.0000000001s`` is
``1s``).
"""

from __future__ import annotations

import re

from weavenet.errors import WeavenetError

NANOSECOND = 1
MICROSECOND = 1000 * NANOSECOND
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_MAX = (1 << 63) - 1  # Go's int64 Duration
_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # MICRO SIGN
    "\u03bcs": MICROSECOND,  # GREEK SMALL LETTER MU
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_DIGITS = "0123456789"
_BARE_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")


class DurationError(WeavenetError):
    """Not a Go duration; the message is Go's (``time: invalid duration "x"``, ``time: missing unit ...``)."""


def _quote(s: str) -> str:
    """The time package's own quoting in these messages: ``"`` and ``\\`` escaped, every byte of a non-ASCII
    or control character as ``\\xNN``."""
    out = ['"']
    for ch in s:
        if ord(ch) < 0x20 or ord(ch) >= 0x80:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogateescape"))
        else:
            out.append("\\" + ch if ch in '"\\' else ch)
    out.append('"')
    return "".join(out)


def _digits(s: str, i: int) -> int:
    while i < len(s) and s[i] in _DIGITS:
        i += 1
    return i


def _parse(text: str, orig: str) -> int:
    invalid = DurationError(f"time: invalid duration {_quote(orig)}")
    s = text
    neg = False
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    i = 0
    while i < len(s):
        if s[i] != "." and s[i] not in _DIGITS:
            raise invalid
        end = _digits(s, i)
        whole = int(s[i:end]) if end > i else 0
        if whole > _MAX:
            raise invalid
        pre = end > i
        i = end
        frac, scale, post = 0, 1.0, False
        if i < len(s) and s[i] == ".":
            end = _digits(s, i + 1)
            post = end > i + 1
            for c in s[i + 1 : end]:  # digits past int64 precision are consumed but ignored, as in Go
                nxt = frac * 10 + ord(c) - 48
                if nxt > _MAX:
                    break
                frac, scale = nxt, scale * 10
            i = end
        if not pre and not post:
            raise invalid  # ".s", "-.s"
        start = i
        while i < len(s) and s[i] != "." and s[i] not in _DIGITS:
            i += 1
        if i == start:
            raise DurationError(f"time: missing unit in duration {_quote(orig)}")
        unit_name = s[start:i]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise DurationError(f"time: unknown unit {_quote(unit_name)} in duration {_quote(orig)}")
        if whole > _MAX // unit:
            raise invalid
        value = whole * unit
        if frac:
            value += int(float(frac) * (float(unit) / scale))  # Go: float64 scaling, truncated toward zero
            if value > _MAX:
                raise invalid
        total += value
        if total > _MAX:
            raise invalid
    return -total if neg else total


def parse_duration(text: str, *, bare_seconds: bool = False) -> int:
    """Go's ``time.ParseDuration``, in nanoseconds; raises :class:`DurationError` with Go's message.

    ``bare_seconds`` also takes a number without a unit (``2``, ``-1.5``, ``.5``) as seconds, the form weavenet's
    flags have always accepted, where Go would say "missing unit".
    """
    if bare_seconds and _BARE_NUMBER.fullmatch(text):
        return _parse(text + "s", text)
    return _parse(text, text)


def parse_seconds(text: str, *, allow_negative: bool = True) -> float:
    """A duration flag's value in seconds: surrounding whitespace ignored, a Go duration or bare seconds.

    ``allow_negative=False`` refuses a leading ``-`` (``-0s`` included), for flags where a negative value has no
    meaning. Raises :class:`DurationError`; callers turn that into their own usage message.
    """
    t = text.strip()
    if not allow_negative and t.startswith("-"):
        raise DurationError(f"time: negative duration {_quote(t)} not allowed")
    return parse_duration(t, bare_seconds=True) / SECOND


def _frac(u: int, prec: int) -> tuple[str, int]:
    """Go's fmtFrac: the last ``prec`` digits of ``u`` as ``.ddd`` without trailing zeros (or nothing), and the
    rest of ``u``."""
    rest, frac = divmod(u, 10**prec)
    digits = f"{frac:0{prec}d}".rstrip("0")
    return ("." + digits if digits else ""), rest


def format_duration(ns: int) -> str:
    """Go's ``Duration.String``: ``1h30m0s``, ``1m30s``, ``1.5s``, ``500ms``, ``1.2µs``, ``7ns``, ``0s``, ``-5s``.

    Hours are the largest unit (days differ in length); below one second the unit shrinks so that the integer
    part is not zero.
    """
    u = abs(ns)
    sign = "-" if ns < 0 else ""
    if u == 0:
        return "0s"
    if u < SECOND:
        if u < MICROSECOND:
            return f"{sign}{u}ns"
        prec, unit = (3, "\u00b5s") if u < MILLISECOND else (6, "ms")
        frac, whole = _frac(u, prec)
        return f"{sign}{whole}{frac}{unit}"
    frac, secs = _frac(u, 9)
    minutes, s = divmod(secs, 60)
    text = f"{s}{frac}s"
    if minutes:
        hours, m = divmod(minutes, 60)
        text = f"{m}m{text}"
        if hours:
            text = f"{hours}h{text}"
    return sign + text
