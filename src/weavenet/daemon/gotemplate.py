"""A Go ``text/template`` subset, plus the bits of Go ``fmt`` and ``encoding/json`` it needs.

Why this exists: ``weave report -f FORMAT`` hands FORMAT verbatim (curl ``--data-urlencode "format=$2"``)
to the daemon, which parses it with Go's ``text/template`` (weave 2.8.x is built with Go 1.15) and executes
it over the ``WeaveStatus`` report, with one extra function ``json``. Scripts in the wild feed it things like
``{{.Router.Name}}``, ``{{len .DNS.Entries}}`` or ``{{range .Router.Targets}}{{.}}{{"\\n"}}{{end}}``, so
the output must be what Go prints, byte for byte, for the constructs that can occur.

Escapes: template *text* is copied verbatim, so ``'{{range .Router.Targets}}{{.}}\\n{{end}}'``
(single-quoted in the shell) prints a literal backslash and ``n`` after each target, exactly as Go does. A
newline comes either from a real newline in the argument (upstream test 150 does this) or from a Go string
literal inside an action, ``{{"\\n"}}`` (upstream test 175), whose escapes *are* interpreted.

Supported, with Go 1.15 semantics (the Go weave 2.8 is built with): text; ``{{/* comments */}}``;
``{{-``/``-}}`` trim markers; ``.``, ``.A.B`` field chains, ``$``, ``$x.A``, ``(pipeline).A``;
string/raw-string/char/number/bool/nil literals; pipelines with ``|``; ``$x := p`` / ``$x = p``;
``if``/``else if``/``else``, ``range`` (``$e :=``, ``$i, $e :=``, ``else``), ``with``/``else``;
``define``/``template``/``block``; the builtins ``and or not len index slice eq ne lt le gt ge print printf
println html js urlquery call`` plus weave's ``json``. As in Go 1.15 an action may not span lines,
``break``/``continue`` do not exist, ``and``/``or`` evaluate every argument and ``eq`` accepts only basic
kinds. Errors carry Go's text, including the ``template: format:LINE:COL: executing "format" at <NODE>:``
prefix at the node Go reports. Complex constants raise :class:`TemplateParseError`.

Value model (what the data may contain): ``None`` is Go's "no value" (a nil interface or a missing map
key); :class:`GoNil` is a *typed* nil (pointer, slice, map, interface); plain ``dict`` and :class:`GoStruct`
are Go structs (a missing field is an error; field order is insertion order); :class:`GoMap` is a Go map
(missing keys yield no value, iteration is in sorted key order); ``list``/``tuple`` are slices;
:class:`GoText` is a value that encodes to JSON as a string but prints differently (a Go ``Stringer`` such as
``time.Time``). A plain ``dict`` ranged over is iterated like a map, and ``len``/``range`` treat ``None`` as
an empty slice, because a JSON round trip cannot tell a nil slice from a nil pointer; use
``weavenet.daemon.report.template_view`` to get the exact Go typing of a report.

Deliberate differences from Go, all in corners no script can depend on: a pointer nested inside a printed
struct shows its contents (``&{...}``) where Go prints a memory address; ``%#v`` only quotes strings;
scalars report their kind (``int``) where Go names the exact type (``uint32``) in error texts; the only
method callable as a field is a Stringer's ``String``; nesting deeper than 100 levels is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, ClassVar

from weavenet.errors import WeavenetError

__all__ = [
    "GoMap",
    "GoNil",
    "GoSlice",
    "GoStruct",
    "GoText",
    "Template",
    "TemplateError",
    "TemplateExecError",
    "TemplateParseError",
    "execute",
    "go_json",
    "go_sprint",
    "go_sprintf",
    "go_sprintln",
    "go_value_string",
]


# ------------------------------------------------------------------------------------------------- errors


class TemplateError(WeavenetError):
    """A FORMAT could not be parsed or executed; the message is one line, in Go's wording where it matters.

    ``partial_output`` holds what Go would already have written to the HTTP response before an execution error
    (Go streams template output; weave then appends ``error during template execution``).
    """

    def __init__(self, message: str, partial_output: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.partial_output = partial_output


class TemplateParseError(TemplateError):
    """The template text is invalid (weave answers 400 with this message)."""


class TemplateExecError(TemplateError):
    """Executing a valid template failed (weave answers 500 ``error during template execution``)."""


# ------------------------------------------------------------------------------------------------- values


class GoNil:
    """A typed Go nil. ``kind`` is ``ptr``, ``slice``, ``map`` or ``iface``; ``go_type`` names the type."""

    __slots__ = ("go_type", "kind")

    KINDS: ClassVar[frozenset[str]] = frozenset({"ptr", "slice", "map", "iface"})

    def __init__(self, kind: str, go_type: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown nil kind {kind!r}")
        self.kind = kind
        self.go_type = go_type

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoNil) and other.kind == self.kind and other.go_type == self.go_type

    def __hash__(self) -> int:
        return hash((self.kind, self.go_type))

    def __repr__(self) -> str:
        return f"GoNil({self.kind!r}, {self.go_type!r})"


class GoStruct(dict):
    """A Go struct value (a ``dict`` so it stays JSON-compatible).

    ``pointer`` says it was reached through a pointer (``*T``); ``stringer`` is its ``String()`` method,
    used by ``%v``/``%s``/``%q``/``%x`` and by top-level printing, exactly where Go's fmt would call it;
    ``omitempty`` names the fields tagged ``json:",omitempty"`` (left out of JSON when empty).
    """

    def __init__(
        self,
        fields: Mapping[str, Any] | None = None,
        *,
        go_type: str = "struct",
        pointer: bool = False,
        stringer: Callable[[GoStruct], str] | None = None,
        omitempty: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(fields or {})
        self.go_type = go_type
        self.pointer = pointer
        self.stringer = stringer
        self.omitempty = omitempty

    def type_name(self) -> str:
        return ("*" if self.pointer else "") + self.go_type


class GoMap(dict):
    """A Go map: a missing key gives "no value" as a field and ``elem_zero`` (the element type's zero value;
    ``None`` for ``interface{}``) from ``index``; ranging and printing go in sorted key order."""

    def __init__(
        self,
        items: Mapping[str, Any] | None = None,
        *,
        go_type: str = "map[string]interface {}",
        elem_zero: object = None,
    ) -> None:
        super().__init__(items or {})
        self.go_type = go_type
        self.elem_zero = elem_zero


class GoSlice(list):
    """A Go slice with its type name (for ``%T`` and error messages)."""

    def __init__(self, items: Sequence[Any] = (), *, go_type: str = "[]interface {}") -> None:
        super().__init__(items)
        self.go_type = go_type


class GoText(str):
    """A value that JSON-encodes as this string but prints as ``go_string`` (a Go ``Stringer``).

    ``time.Time`` is the case that matters: JSON has RFC 3339, ``%v`` has ``2006-01-02 15:04:05 +0000 UTC``.
    ``go_kind`` is the Go kind of the underlying type (``struct`` for time.Time), which decides spacing in
    ``print`` and whether comparisons are allowed.
    """

    go_string: str
    go_type: str
    go_kind: str

    def __new__(cls, json_text: str, go_string: str, go_type: str, go_kind: str = "struct") -> GoText:
        obj = super().__new__(cls, json_text)
        obj.go_string = go_string
        obj.go_type = go_type
        obj.go_kind = go_kind
        return obj


def _is_go_string(v: object) -> bool:
    """A value of Go kind string (a time.Time rendered as GoText is not)."""
    return isinstance(v, str) and not (isinstance(v, GoText) and v.go_kind != "string")


def _stringer(v: object) -> str | None:
    """The String() result Go's fmt would use for ``v``, or None."""
    if isinstance(v, GoText):
        return v.go_string
    if isinstance(v, GoStruct) and v.stringer is not None:
        return v.stringer(v)
    return None


def go_type_name(v: object) -> str:
    """Go's ``%T`` for a value of our model (best effort for plain Python values)."""
    if v is None:
        return "<nil>"
    if isinstance(v, GoNil):
        return v.go_type
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, GoText):
        return v.go_type
    if isinstance(v, str):
        return "string"
    if isinstance(v, GoStruct):
        return v.type_name()
    if isinstance(v, GoMap | GoSlice):
        return v.go_type
    if isinstance(v, dict):
        return "struct"
    if isinstance(v, list | tuple):
        return "[]interface {}"
    return type(v).__name__


def _go_bytes(s: str) -> bytes:
    """The bytes Go would hold for ``s``: UTF-8, with surrogate escapes mapped back to raw bytes."""
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


def _from_go_bytes(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


# ------------------------------------------------------------------------------------------------- fmt


_MAX_WIDTH = 1_000_000  # Go fmt rejects larger widths/precisions (%!(BADWIDTH)/%!(BADPREC))


@dataclass(frozen=True)
class _Flags:
    minus: bool = False
    plus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    wid: int | None = None
    prec: int | None = None
    plus_v: bool = False
    sharp_v: bool = False


_NO_FLAGS = _Flags()


def _pad(s: str, f: _Flags) -> str:
    """Go's fmt.pad: width counts runes, ``-`` pads right, ``0`` pads left with zeros (also for strings)."""
    if f.wid is None or f.wid <= len(s):
        return s
    fill = f.wid - len(s)
    if f.minus:
        return s + " " * fill
    return ("0" if f.zero else " ") * fill + s


def _shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-tripping decimal digits of abs(x) and the decimal-point position (Go's decimal.dp)."""
    if x == 0:
        return "0", 1
    _, digits, exp = Decimal(repr(abs(x))).as_tuple()
    ds = "".join(map(str, digits)).lstrip("0") or "0"
    # Decimal may carry trailing zeros (e.g. 1e+16 -> digits "1", exp 16); trim them into the exponent.
    stripped = ds.rstrip("0") or "0"
    assert isinstance(exp, int)
    dp = len(ds) + exp
    return stripped, dp


def _fmt_e_shortest(digits: str, dp: int, upper: bool = False) -> str:
    exp = dp - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    e = "E" if upper else "e"
    return f"{mant}{e}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _fmt_f_shortest(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * (-dp) + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _float_g_shortest(x: float, upper: bool = False) -> str:
    """strconv.FormatFloat(x, 'g', -1, 64) without the sign."""
    digits, dp = _shortest_digits(x)
    exp = dp - 1
    if exp < -4 or exp >= 6:  # strconv: with the shortest precision, %e is chosen as if precision were 6
        return _fmt_e_shortest(digits, dp, upper)
    return _fmt_f_shortest(digits, dp)


def _hex_float(ax: float, prec: int | None, upper: bool) -> str:
    """strconv's %x for a non-negative float: ``0x1.8p+01`` (shortest, or rounded to ``prec`` hex digits)."""
    if ax == 0:
        lead, frac, exp, width = 0, 0, 0, 13
    else:
        m, e = math.frexp(ax)
        mant = int(m * (1 << 53))
        lead, frac, exp, width = mant >> 52, mant & ((1 << 52) - 1), e - 1, 13
    if prec is None:
        digits = f"{frac:013x}".rstrip("0")
    elif prec < width:
        shift = 4 * (width - prec)
        q, r = divmod(frac, 1 << shift)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
        if q >> (4 * prec):
            q, lead = 0, lead + 1
            if lead == 2:
                lead, exp = 1, exp + 1
        digits = f"{q:0{prec}x}" if prec else ""
    else:
        digits = f"{frac:013x}" + "0" * (prec - width)
    s = f"0x{lead}" + (f".{digits}" if digits else "") + f"p{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return s.upper() if upper else s


def _fmt_float(x: float, verb: str, f: _Flags) -> str:
    if math.isnan(x):  # never zero padded; the sign only when asked for
        return _pad(("+" if f.plus else " " if f.space else "") + "NaN", replace(f, zero=False))
    if math.isinf(x):  # Go keeps the "+" of +Inf even without the plus flag
        sign = "-" if x < 0 else " " if f.space and not f.plus else "+"
        return _pad(sign + "Inf", replace(f, zero=False))
    neg = x < 0 or (x == 0 and math.copysign(1.0, x) < 0)
    ax = abs(x)
    prec = f.prec
    if verb in "vgG":
        if prec is None:
            body = _float_g_shortest(ax, upper=verb == "G")
        else:
            body = format(ax, f".{max(prec, 1)}{'G' if verb == 'G' else 'g'}")
    elif verb in "eE":
        body = format(ax, f".{6 if prec is None else prec}{verb}")
    elif verb in "xX":
        body = _hex_float(ax, prec, verb == "X")
    else:  # f F
        body = format(ax, f".{6 if prec is None else prec}f")
    if f.sharp and "." not in body and "e" not in body.lower():
        body += "."
    sign = "-" if neg else "+" if f.plus else " " if f.space else ""
    if f.zero and not f.minus and f.wid is not None and f.wid > len(sign) + len(body):
        return sign + "0" * (f.wid - len(sign) - len(body)) + body
    return _pad(sign + body, replace(f, zero=False))


def _fmt_integer(v: int, verb: str, f: _Flags) -> str:
    neg = v < 0
    u = -v if neg else v
    if verb in "vd":
        digits = str(u)
    elif verb == "b":
        digits = format(u, "b")
    elif verb in "oO":
        digits = format(u, "o")
    elif verb == "x":
        digits = format(u, "x")
    elif verb == "X":
        digits = format(u, "X")
    else:  # pragma: no cover - callers filter verbs
        digits = str(u)
    prec = f.prec
    if prec is not None:
        if prec == 0 and v == 0:
            return _pad("", replace(f, zero=False))
        digits = digits.rjust(prec, "0")
    elif f.zero and not f.minus and f.wid is not None:
        # Go leaves room for the sign but not for a 0x/0o prefix: %#08x of 255 is 0x000000ff.
        digits = digits.rjust(f.wid - (1 if (neg or f.plus or f.space) else 0), "0")
    prefix = ""
    if verb == "O":
        prefix = "0o"
    elif f.sharp:
        if verb == "o" and not digits.startswith("0"):
            prefix = "0"
        elif verb in "xX":
            prefix = "0" + verb
        elif verb == "b":
            prefix = "0b"
    sign = "-" if neg else "+" if f.plus else " " if f.space else ""
    return _pad(sign + prefix + digits, replace(f, zero=False))


def _quote_rune(r: int, ascii_only: bool = False) -> str:
    return "'" + _quote_body(chr(r) if 0 <= r <= 0x10FFFF else "\ufffd", "'", ascii_only) + "'"


_SIMPLE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _quote_body(s: str, quote: str, ascii_only: bool) -> str:
    out: list[str] = []
    for ch in s:
        o = ord(ch)
        if ch == quote or ch == "\\":
            out.append("\\" + ch)
        elif 0xD800 <= o <= 0xDFFF:  # an invalid byte in Go terms
            out.extend(f"\\x{b:02x}" for b in _go_bytes(ch))
        elif ascii_only and o >= 0x80:
            out.append(f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
        elif ch.isprintable():
            out.append(ch)
        elif ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return "".join(out)


def go_quote(s: str, ascii_only: bool = False) -> str:
    """strconv.Quote / QuoteToASCII."""
    return '"' + _quote_body(s, '"', ascii_only) + '"'


def _can_backquote(s: str) -> bool:
    for ch in s:
        o = ord(ch)
        if ch == "`" or ch == "\ufeff" or 0xD800 <= o <= 0xDFFF:
            return False
        if (o < 0x20 and ch != "\t") or o == 0x7F:
            return False
    return True


def _fmt_string(s: str, verb: str, f: _Flags) -> str:
    if f.prec is not None and verb in "vsqxX":
        s = s[: f.prec] if verb != "x" and verb != "X" else s
    if verb in "vs":
        if f.sharp_v:
            return _pad(go_quote(s), f)
        return _pad(s, f)
    if verb == "q":
        if f.sharp and _can_backquote(s):
            return _pad("`" + s + "`", f)
        return _pad(go_quote(s, ascii_only=f.plus), f)
    # x X: hex of the bytes
    b = _go_bytes(s)
    if f.prec is not None:
        b = b[: f.prec]
    digits = "0123456789abcdef" if verb == "x" else "0123456789ABCDEF"
    parts: list[str] = []
    for i, byte in enumerate(b):
        piece = digits[byte >> 4] + digits[byte & 0xF]
        if f.space:
            if f.sharp:
                piece = "0" + verb + piece
            if i > 0:
                piece = " " + piece
        elif f.sharp and i == 0:
            piece = "0" + verb + piece
        parts.append(piece)
    return _pad("".join(parts), f)


def _bad_verb(verb: str, v: object, f: _Flags, depth: int) -> str:
    """Go's badVerb: the value is printed with %v *and the same flags*, without calling String()."""
    if v is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type_name(v)}={_format(v, 'v', f, depth, methods=False)})"


def _format(v: object, verb: str, f: _Flags, depth: int, methods: bool = True) -> str:
    """Format one operand like Go's fmt (printArg/printValue) for the value kinds of our model."""
    if verb == "T":
        return _pad(go_type_name(v), f)
    if v is None:  # nested in a container Go prints a nil interface as <nil> whatever the verb
        return _pad("<nil>", f) if verb == "v" or depth > 0 else _bad_verb(verb, v, f, depth)
    if isinstance(v, GoNil):
        if v.kind == "slice":
            return "[]"
        if v.kind == "map":
            return "map[]"
        if verb == "v" or (v.kind == "iface" and depth > 0):
            return _pad("<nil>", f)
        if v.kind == "ptr" and verb in "bodxX":  # fmtPointer prints the address as an integer
            return _fmt_integer(0, verb, f)
        if v.kind == "ptr" and verb == "p":
            return _pad("0x0", f)
        return _bad_verb(verb, v, f, depth)
    if methods and verb in "vsxXq":
        text = _stringer(v)
        if text is not None:
            return _fmt_string(text, "s" if verb == "v" else verb, f)
    if isinstance(v, bool):
        if verb in "vt":
            return _pad("true" if v else "false", f)
        return _bad_verb(verb, v, f, depth)
    if isinstance(v, int):
        if verb in "vdboOxX":
            return _fmt_integer(v, verb, f)
        if verb == "c":
            return _pad(chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd", f)
        if verb == "q":
            return _pad(_quote_rune(v, f.plus), f)
        if verb == "U":
            s = f"U+{v:04X}" if v >= 0 else _bad_verb(verb, v, f, depth)
            if f.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
                s += f" '{chr(v)}'"
            return _pad(s, f)
        return _bad_verb(verb, v, f, depth)
    if isinstance(v, float):
        if verb in "veEfFgGxX":
            return _fmt_float(v, verb, f)
        return _bad_verb(verb, v, f, depth)
    if isinstance(v, str):
        if verb in "vsqxX":
            return _fmt_string(v, verb, f)
        return _bad_verb(verb, v, f, depth)
    if isinstance(v, GoMap):
        parts = [
            _format(k, verb, f, depth + 1, methods) + ":" + _format(v[k], verb, f, depth + 1, methods)
            for k in _sorted_keys(v)
        ]
        return "map[" + " ".join(parts) + "]"
    if isinstance(v, dict):
        # A pointer to a struct prints as &{...}; nested deeper Go prints an address instead, for which the
        # contents are a more useful (and equally unparseable) stand-in.
        prefix = "&" if isinstance(v, GoStruct) and v.pointer else ""
        parts = []
        for k, item in v.items():
            s = _format(item, verb, f, depth + 1, methods)
            parts.append(f"{k}:{s}" if f.plus_v else s)
        return prefix + "{" + " ".join(parts) + "}"
    if isinstance(v, list | tuple):
        return "[" + " ".join(_format(item, verb, f, depth + 1, methods) for item in v) + "]"
    return _pad(str(v), f)


def _sorted_keys(m: Mapping[Any, Any]) -> list[Any]:
    try:
        return sorted(m)
    except TypeError:
        return sorted(m, key=repr)


def go_value_string(v: object) -> str:
    """``fmt.Sprint(v)`` for one operand: Go's ``%v``."""
    return _format(v, "v", _NO_FLAGS, 0)


def go_sprint(*args: object) -> str:
    """fmt.Sprint: operands separated by a space when neither side is a string."""
    out: list[str] = []
    prev_string = False
    for i, a in enumerate(args):
        is_string = isinstance(a, str) and not (isinstance(a, GoText) and a.go_kind != "string")
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(go_value_string(a))
        prev_string = is_string
    return "".join(out)


def go_sprintln(*args: object) -> str:
    """fmt.Sprintln: operands always separated by spaces, newline appended."""
    return " ".join(go_value_string(a) for a in args) + "\n"


_FLAG_CHARS = "+-# 0"


def _parsenum(s: str, i: int) -> tuple[int, bool, int]:
    """Go's fmt parsenum: an overlong number swallows the rest of the format (which then has no verb)."""
    num = 0
    present = False
    while i < len(s) and s[i] in "0123456789":
        if num > _MAX_WIDTH:
            return 0, False, len(s)
        num = num * 10 + ord(s[i]) - 48
        present = True
        i += 1
    return num, present, i


def _int_from_arg(args: Sequence[object], argi: int) -> tuple[int, bool, int]:
    """Go's intFromArg: (value, ok, next argument index)."""
    if argi >= len(args):
        return 0, False, argi
    a = args[argi]
    if isinstance(a, bool) or not isinstance(a, int) or abs(a) > _MAX_WIDTH:
        return 0, False, argi + 1
    return a, True, argi + 1


def _arg_number(fmt: str, i: int, argi: int, nargs: int) -> tuple[int, int, bool, bool]:
    """Go's argNumber for ``[n]``: (arg index, new position, found, good)."""
    if i >= len(fmt) or fmt[i] != "[":
        return argi, i, False, True
    close = fmt.find("]", i + 1)
    if len(fmt) - i < 3 or close < 0:
        return argi, i + 1, False, False
    num, present, end = _parsenum(fmt[: close + 1], i + 1)
    if not present or end != close:
        return argi, close + 1, False, False
    if 0 <= num - 1 < nargs:
        return num - 1, close + 1, True, True
    return argi, close + 1, True, False


def go_sprintf(fmt: str, *args: object) -> str:
    """fmt.Sprintf for the verbs ``v s d q x X o O b c t T U e E f F g G p %``, flags ``+-# 0``, width,
    precision, ``*`` and ``[n]`` argument indexes, with Go's error notation (``%!d(string=x)``,
    ``%!v(MISSING)``, ``%!(EXTRA ...)``, ``%!v(BADINDEX)``, ``%!(BADWIDTH)``, ``%!(NOVERB)``)."""
    out: list[str] = []
    n = len(fmt)
    i = 0
    argi = 0
    reordered = False
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        fl: dict[str, Any] = {}
        while i < n and fmt[i] in _FLAG_CHARS:
            c = fmt[i]
            if c == "+":
                fl["plus"] = True
            elif c == "-":
                fl["minus"] = True
                fl["zero"] = False
            elif c == "#":
                fl["sharp"] = True
            elif c == " ":
                fl["space"] = True
            else:
                fl["zero"] = not fl.get("minus", False)
            i += 1
        reordered = reordered or fmt[i : i + 1] == "["
        argi, i, after_index, good = _arg_number(fmt, i, argi, len(args))
        if i < n and fmt[i] == "*":
            i += 1
            w, present, argi = _int_from_arg(args, argi)
            if not present:
                out.append("%!(BADWIDTH)")
            else:
                if w < 0:
                    w, fl["minus"], fl["zero"] = -w, True, False
                fl["wid"] = w
            after_index = False
        else:
            w, present, i = _parsenum(fmt, i)
            if present:
                fl["wid"] = w
                if after_index:
                    good = False
        if i + 1 < n and fmt[i] == ".":
            i += 1
            if after_index:
                good = False
            reordered = reordered or fmt[i : i + 1] == "["
            argi, i, after_index, ok = _arg_number(fmt, i, argi, len(args))
            good = good and ok
            if i < n and fmt[i] == "*":
                i += 1
                p, present, argi = _int_from_arg(args, argi)
                if p < 0:
                    p, present = 0, False
                if not present:
                    out.append("%!(BADPREC)")
                else:
                    fl["prec"] = p
                after_index = False
            else:
                p, _, i = _parsenum(fmt, i)
                fl["prec"] = p  # "%.d" means precision 0
        if not after_index:
            reordered = reordered or fmt[i : i + 1] == "["
            argi, i, after_index, ok = _arg_number(fmt, i, argi, len(args))
            good = good and ok
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if not good:
            out.append(f"%!{verb}(BADINDEX)")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        if verb == "v":
            fl["sharp_v"], fl["sharp"] = fl.get("sharp", False), False
            fl["plus_v"], fl["plus"] = fl.get("plus", False), False
        out.append(_format(args[argi], verb, _Flags(**fl), 0))
        argi += 1
    if not reordered and argi < len(args):
        extra = ", ".join("<nil>" if a is None else f"{go_type_name(a)}={go_value_string(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# ------------------------------------------------------------------------------------------------- JSON


def _json_string(s: str, escape_html: bool) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or (escape_html and ch in "<>&") or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:  # invalid UTF-8 in Go terms: coerced to U+FFFD
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _json_float(x: float) -> str:
    if math.isinf(x) or math.isnan(x):
        raise ValueError(f"json: unsupported value: {go_value_string(x)}")
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    digits, dp = _shortest_digits(x)
    sign = "-" if x < 0 else ""
    ax = abs(x)
    if ax < 1e-6 or ax >= 1e21:
        exp = dp - 1
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp)}"
    return sign + _fmt_f_shortest(digits, dp)


def _json_empty(v: object) -> bool:
    """encoding/json isEmptyValue: false, 0, "", nil, and empty slices/maps (a struct never is)."""
    if v is None or isinstance(v, GoNil):
        return True
    if isinstance(v, bool | int | float):
        return not v
    if isinstance(v, GoText):
        return v.go_kind == "string" and not v
    if isinstance(v, str | list | tuple | GoMap):
        return len(v) == 0
    return False


def go_json(value: object, indent: str | None = None, escape_html: bool = True) -> str:
    """Go's ``json.Marshal`` (``indent=None``) or ``json.MarshalIndent(v, "", indent)``.

    Struct dicts keep their field order, :class:`GoMap` keys are sorted, ``None``/:class:`GoNil` are ``null``,
    ``<``, ``>``, ``&``, U+2028 and U+2029 are ``\\u`` escaped as Go does, empty containers stay ``[]``/``{}``
    even when indenting, and there is no trailing newline. NaN/Inf raise ``ValueError`` (Go returns an error).
    """
    out: list[str] = []

    def enc(v: object, level: int) -> None:
        if v is None or isinstance(v, GoNil):
            out.append("null")
        elif isinstance(v, bool):
            out.append("true" if v else "false")
        elif isinstance(v, int):
            out.append(str(v))
        elif isinstance(v, float):
            out.append(_json_float(v))
        elif isinstance(v, str):
            out.append(_json_string(str.__str__(v), escape_html))
        elif isinstance(v, dict):
            keys = _sorted_keys(v) if isinstance(v, GoMap) else list(v)
            if isinstance(v, GoStruct) and v.omitempty:
                keys = [k for k in keys if not (k in v.omitempty and _json_empty(v[k]))]
            if not keys:
                out.append("{}")
                return
            out.append("{")
            for i, k in enumerate(keys):
                if i:
                    out.append(",")
                if indent is not None:
                    out.append("\n" + indent * (level + 1))
                out.append(_json_string(str(k), escape_html))
                out.append(": " if indent is not None else ":")
                enc(v[k], level + 1)
            if indent is not None:
                out.append("\n" + indent * level)
            out.append("}")
        elif isinstance(v, list | tuple):
            if not v:
                out.append("[]")
                return
            out.append("[")
            for i, item in enumerate(v):
                if i:
                    out.append(",")
                if indent is not None:
                    out.append("\n" + indent * (level + 1))
                enc(item, level + 1)
            if indent is not None:
                out.append("\n" + indent * level)
            out.append("]")
        else:
            raise ValueError(f"json: unsupported type: {type(v).__name__}")

    enc(value, 0)
    return "".join(out)


# ------------------------------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Tok:
    typ: str
    val: str
    pos: int
    line: int

    def __str__(self) -> str:  # Go's item.String(), used in "unexpected X" messages
        if self.typ == "EOF":
            return "EOF"
        if self.typ == "ERROR":
            return self.val
        if self.typ in ("KEYWORD", "DOT", "NIL"):
            return f"<{self.val}>"
        if len(self.val) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


_KEYWORDS = frozenset({"block", "define", "else", "end", "if", "range", "template", "with"})
_SPACE = " \t"  # Go 1.15 isSpace
_TRIM = " \t\r\n"


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or c.isdecimal()


def _go_U(c: str) -> str:
    o = ord(c)
    s = f"U+{o:04X}"
    if c.isprintable() and not 0xD800 <= o <= 0xDFFF:
        s += f" '{c}'"
    return s


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks: list[_Tok] = []
        self.line = 1

    def at_terminator(self, i: int) -> bool:
        if i >= len(self.src):
            return True
        c = self.src[i]
        return c in _SPACE or c in "\r\n.,|:)(" or c == "}"

    def run(self) -> list[_Tok]:
        src = self.src
        n = len(src)
        pos = 0
        while True:
            i = src.find("{{", pos)
            if i < 0:
                if pos < n:
                    self.emit("TEXT", src[pos:], pos)
                self.emit("EOF", "", n)
                return self.toks
            trim = i + 3 < n and src[i + 2] == "-" and src[i + 3] in _SPACE
            text = src[pos:i]
            if trim:
                text = text.rstrip(_TRIM)
            if text:
                self.emit("TEXT", text, pos)
            self.line += src.count("\n", pos, i)
            pos = i + 2 + (2 if trim else 0)
            if src.startswith("/*", pos):
                end = src.find("*/", pos + 2)
                if end < 0:
                    return self.error("unclosed comment", pos)
                self.line += src.count("\n", pos, end)
                k = end + 2
                if src.startswith("}}", k):
                    pos, trim_right = k + 2, False
                elif k < n and src[k] in _SPACE and src.startswith("-}}", k + 1):
                    pos, trim_right = k + 4, True
                else:
                    return self.error("comment ends before closing delimiter", k)
                if trim_right:
                    pos = self.skip_space(pos)
                continue
            self.emit("LEFT", "{{", i)
            pos = self.inside_action(pos)
            if pos < 0:
                return self.toks

    def skip_space(self, pos: int) -> int:
        n = len(self.src)
        start = pos
        while pos < n and self.src[pos] in _TRIM:
            pos += 1
        self.line += self.src.count("\n", start, pos)
        return pos

    def emit(self, typ: str, val: str, pos: int) -> None:
        self.toks.append(_Tok(typ, val, pos, self.line))

    def error(self, msg: str, pos: int) -> list[_Tok]:
        self.toks.append(_Tok("ERROR", msg, pos, self.line))
        return self.toks

    def inside_action(self, pos: int) -> int:
        """Lex one action; returns the position after its right delimiter, or -1 after an error."""
        src = self.src
        n = len(src)
        depth = 0
        while True:
            right = 0
            if src.startswith("}}", pos):
                right = 2
            elif pos < n and src[pos] in _SPACE and src.startswith("-}}", pos + 1):
                right = 4
            if right:
                if depth:
                    self.error("unclosed left paren", pos)
                    return -1
                self.emit("RIGHT", "}}", pos)
                pos += right
                return self.skip_space(pos) if right == 4 else pos
            if pos >= n or src[pos] in "\r\n":
                self.error("unclosed action", pos)
                return -1
            c = src[pos]
            start = pos
            if c in _SPACE:
                while pos < n and src[pos] in _SPACE:
                    pos += 1
                if src.startswith("-}}", pos):
                    pos -= 1  # the last space belongs to " -}}"
                    if pos == start:
                        continue
                self.emit("SPACE", src[start:pos], start)
                continue
            pos += 1
            if c == "=":
                self.emit("ASSIGN", "=", start)
            elif c == ":":
                if pos >= n or src[pos] != "=":
                    self.error("expected :=", start)
                    return -1
                pos += 1
                self.emit("DECLARE", ":=", start)
            elif c == "|":
                self.emit("PIPE", "|", start)
            elif c == '"' or c == "'":
                while True:
                    if pos >= n or src[pos] == "\n":
                        what = "quoted string" if c == '"' else "character constant"
                        self.error(f"unterminated {what}", start)
                        return -1
                    d = src[pos]
                    pos += 1
                    if d == "\\":
                        if pos >= n or src[pos] == "\n":
                            what = "quoted string" if c == '"' else "character constant"
                            self.error(f"unterminated {what}", start)
                            return -1
                        pos += 1
                    elif d == c:
                        break
                self.emit("STRING" if c == '"' else "CHAR", src[start:pos], start)
            elif c == "`":
                end = src.find("`", pos)
                if end < 0:
                    self.error("unterminated raw quoted string", start)
                    return -1
                pos = end + 1
                self.emit("RAWSTRING", src[start:pos], start)
                self.line += src.count("\n", start, pos)
            elif c == "$" or (c == "." and not (pos < n and src[pos] in "0123456789")):
                typ = "VAR" if c == "$" else "FIELD"
                if self.at_terminator(pos):
                    self.emit(typ if c == "$" else "DOT", c, start)
                    continue
                while pos < n and _is_alnum(src[pos]):
                    pos += 1
                if not self.at_terminator(pos):
                    self.error(f"bad character {_go_U(src[pos])}", pos)
                    return -1
                self.emit(typ, src[start:pos], start)
            elif c in "+-.0123456789":
                pos = self.number(start)
                if pos < 0:
                    return -1
            elif _is_alnum(c):
                while pos < n and _is_alnum(src[pos]):
                    pos += 1
                word = src[start:pos]
                if not self.at_terminator(pos):
                    self.error(f"bad character {_go_U(src[pos])}", pos)
                    return -1
                if word in _KEYWORDS:
                    self.emit("KEYWORD", word, start)
                elif word in ("true", "false"):
                    self.emit("BOOL", word, start)
                elif word == "nil":
                    self.emit("NIL", word, start)
                else:
                    self.emit("IDENT", word, start)
            elif c == "(":
                depth += 1
                self.emit("LPAREN", c, start)
            elif c == ")":
                depth -= 1
                self.emit("RPAREN", c, start)  # Go emits the token first, so the parser reports it
                if depth < 0:
                    self.error(f"unexpected right paren {_go_U(c)}", start)
                    return -1
            elif ord(c) < 0x80 and c.isprintable():
                self.emit("CHARITEM", c, start)
            else:
                self.error(f"unrecognized character in action: {_go_U(c)}", start)
                return -1

    def scan_number(self, pos: int) -> tuple[bool, int]:
        """Go's lexer.scanNumber: (ok, end)."""
        src = self.src
        n = len(src)

        def run(p: int, chars: str) -> int:
            while p < n and src[p] in chars:
                p += 1
            return p

        if pos < n and src[pos] in "+-":
            pos += 1
        digits = "0123456789_"
        if pos < n and src[pos] == "0":
            pos += 1
            if pos < n and src[pos] in "xX":
                pos, digits = pos + 1, "0123456789abcdefABCDEF_"
            elif pos < n and src[pos] in "oO":
                pos, digits = pos + 1, "01234567_"
            elif pos < n and src[pos] in "bB":
                pos, digits = pos + 1, "01_"
        pos = run(pos, digits)
        if pos < n and src[pos] == ".":
            pos = run(pos + 1, digits)
        if len(digits) == 11 and pos < n and src[pos] in "eE":
            pos = run(pos + 1 + (pos + 1 < n and src[pos + 1] in "+-"), "0123456789_")
        if len(digits) == 23 and pos < n and src[pos] in "pP":
            pos = run(pos + 1 + (pos + 1 < n and src[pos + 1] in "+-"), "0123456789_")
        if pos < n and src[pos] == "i":
            pos += 1
        if pos < n and _is_alnum(src[pos]):
            return False, pos + 1
        return True, pos

    def number(self, start: int) -> int:
        src = self.src
        ok, pos = self.scan_number(start)
        if not ok:
            self.error(f"bad number syntax: {go_quote(src[start:pos])}", start)
            return -1
        if pos < len(src) and src[pos] in "+-":  # Go's complex form 1+2i
            ok, pos = self.scan_number(pos)
            if not ok or src[pos - 1] != "i":
                self.error(f"bad number syntax: {go_quote(src[start:pos])}", start)
                return -1
            self.emit("COMPLEX", src[start:pos], start)
            return pos
        self.emit("NUMBER", src[start:pos], start)
        return pos


# ------------------------------------------------------------------------------------------------- parse tree


class _Node:
    def go_string(self) -> str:
        raise NotImplementedError


@dataclass
class _Text(_Node):
    text: str


@dataclass
class _Field(_Node):
    pos: int
    idents: tuple[str, ...]

    def go_string(self) -> str:
        return "".join("." + i for i in self.idents)


@dataclass
class _Variable(_Node):
    pos: int
    idents: tuple[str, ...]  # idents[0] is "$name"

    def go_string(self) -> str:
        return ".".join(self.idents)


@dataclass
class _Ident(_Node):
    pos: int
    name: str

    def go_string(self) -> str:
        return self.name


@dataclass
class _Dot(_Node):
    pos: int

    def go_string(self) -> str:
        return "."


@dataclass
class _Nil(_Node):
    pos: int

    def go_string(self) -> str:
        return "nil"


@dataclass
class _Bool(_Node):
    pos: int
    value: bool

    def go_string(self) -> str:
        return "true" if self.value else "false"


@dataclass
class _Number(_Node):
    pos: int
    text: str
    value: int | float | str  # the "ideal constant" for an interface{} parameter; str: its exec-time error

    def go_string(self) -> str:
        return self.text


@dataclass
class _String(_Node):
    pos: int
    quoted: str
    text: str

    def go_string(self) -> str:
        return self.quoted


@dataclass
class _Command(_Node):
    pos: int
    args: list[_Node]

    def go_string(self) -> str:
        parts = []
        for a in self.args:
            s = a.go_string()
            parts.append(f"({s})" if isinstance(a, _Pipe) else s)
        return " ".join(parts)


@dataclass
class _Pipe(_Node):
    pos: int
    line: int
    decl: list[str]
    is_assign: bool
    cmds: list[_Command]

    def go_string(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(c.go_string() for c in self.cmds)


@dataclass
class _Chain(_Node):
    pos: int
    node: _Node
    fields: list[str]

    def go_string(self) -> str:
        s = self.node.go_string()
        if isinstance(self.node, _Pipe):
            s = f"({s})"
        return s + "".join("." + f for f in self.fields)


@dataclass
class _Action(_Node):
    pos: int
    pipe: _Pipe

    def go_string(self) -> str:
        return "{{" + self.pipe.go_string() + "}}"


@dataclass
class _List(_Node):
    nodes: list[_Node]


@dataclass
class _Branch(_Node):
    kind: str  # if | range | with
    pos: int
    pipe: _Pipe
    body: _List
    else_body: _List | None

    def go_string(self) -> str:
        return "{{" + self.kind + " " + self.pipe.go_string() + "}}"


@dataclass
class _TemplateCall(_Node):
    pos: int
    name: str
    pipe: _Pipe | None

    def go_string(self) -> str:
        arg = f" {self.pipe.go_string()}" if self.pipe is not None else ""
        return "{{template " + go_quote(self.name) + arg + "}}"


@dataclass
class _End(_Node):
    pos: int


@dataclass
class _Else(_Node):
    pos: int


_FUNC_NAMES = frozenset(
    {
        "and",
        "or",
        "not",
        "len",
        "index",
        "slice",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "print",
        "printf",
        "println",
        "html",
        "js",
        "urlquery",
        "json",
        "call",
    }
)
_OPERAND_START = frozenset(
    {
        "BOOL",
        "CHAR",
        "COMPLEX",
        "DOT",
        "FIELD",
        "IDENT",
        "NUMBER",
        "NIL",
        "RAWSTRING",
        "STRING",
        "VAR",
        "LPAREN",
    }
)
_MAX_DEPTH = 100  # nesting of blocks and parentheses; keeps Python's recursion limit out of reach


def _unquote(quoted: str) -> str:
    """strconv.Unquote for "..." (escapes interpreted) and `...` (raw, CRs dropped); raises ValueError."""
    if quoted.startswith("`"):
        return quoted[1:-1].replace("\r", "")
    body = quoted[1:-1]
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c != "\\":
            if c == quoted[0]:
                raise ValueError("invalid syntax")
            out += _go_bytes(c)
            i += 1
            continue
        i += 1
        if i >= n:
            raise ValueError("invalid syntax")
        e = body[i]
        i += 1
        simple = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
        if e in simple:
            out.append(simple[e])
        elif e == quoted[0]:
            out += e.encode()
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            hexpart = body[i : i + width]
            if len(hexpart) != width or any(h not in "0123456789abcdefABCDEF" for h in hexpart):
                raise ValueError("invalid syntax")
            i += width
            v = int(hexpart, 16)
            if e == "x":
                out.append(v)
            else:
                if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                    raise ValueError("invalid syntax")
                out += chr(v).encode()
        elif e in "01234567":
            octal = body[i - 1 : i + 2]
            if len(octal) != 3 or any(o not in "01234567" for o in octal):
                raise ValueError("invalid syntax")
            i += 2
            v = int(octal, 8)
            if v > 255:
                raise ValueError("invalid syntax")
            out.append(v)
        else:
            raise ValueError("invalid syntax")
    return _from_go_bytes(bytes(out))


def _parse_number(text: str) -> int | float | str:
    """Go's parse.newNumber followed by the "ideal constant" an interface{} argument receives: an int unless
    the text is a non-hex literal containing one of ``.eEpP``. A ``str`` result is the execution-time error
    Go raises for a constant that fits uint64 but not int; parse-time errors raise ``ValueError``."""
    if text.endswith("i"):
        raise ValueError(f"complex constant {text} is not supported")
    sign, clean = (text[0], text[1:]) if text[:1] in "+-" else ("", text)
    value: int | None = None
    try:
        if re.fullmatch(r"0_?[0-7](_?[0-7])*", clean):  # a leading 0 means octal, as in Go
            value = int(sign + clean[1:].lstrip("_").replace("_", ""), 8)
        elif not re.fullmatch(r"0[0-9_]+", clean):
            value = int(sign + clean, 0)
    except ValueError:
        value = None
    if value is not None and -(2**63) <= value < 2**64:
        return value if value < 2**63 else f"{text} overflows int"
    try:
        if clean[:2].lower() == "0x":
            f = float.fromhex(text.replace("_", "")) if "p" in clean.lower() and "__" not in clean else None
        elif clean[:2].lower() in ("0b", "0o"):
            f = None
        else:
            f = float(text)
    except ValueError:
        f = None
    if f is None or math.isinf(f) or math.isnan(f):
        raise ValueError(f"illegal number syntax: {go_quote(text)}")
    if not any(ch in text for ch in ".eEpP"):
        raise ValueError(f"integer overflow: {go_quote(text)}")
    return f


def _char_constant(text: str) -> int:
    """strconv.UnquoteChar for a 'x' constant: the rune (or byte, for \\x and octal escapes) it denotes."""
    body = text[1:-1]
    if not body or body == "'":
        raise ValueError("invalid syntax")
    if body[0] != "\\":
        if len(body) != 1:
            raise ValueError(f"malformed character constant: {text}")
        return ord(body[0])
    if len(body) < 2:
        raise ValueError("invalid syntax")
    e = body[1]
    simple = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39}
    if e in simple:
        used, value = 2, simple[e]
    elif e in "xuU":
        width = {"x": 2, "u": 4, "U": 8}[e]
        hexpart = body[2 : 2 + width]
        if len(hexpart) != width or any(h not in "0123456789abcdefABCDEF" for h in hexpart):
            raise ValueError("invalid syntax")
        used, value = 2 + width, int(hexpart, 16)
        if e != "x" and (value > 0x10FFFF or 0xD800 <= value <= 0xDFFF):
            raise ValueError("invalid syntax")
    elif e in "01234567":
        octal = body[1:4]
        if len(octal) != 3 or any(o not in "01234567" for o in octal) or int(octal, 8) > 255:
            raise ValueError("invalid syntax")
        used, value = 4, int(octal, 8)
    else:
        raise ValueError("invalid syntax")
    if used != len(body):
        raise ValueError(f"malformed character constant: {text}")
    return value


class _Parser:
    def __init__(self, name: str, src: str) -> None:
        self.name = name
        self.src = src
        self.toks = _Lexer(src).run()
        self.i = 0
        self.vars: list[str] = ["$"]
        self.depth = 0
        self.defs: dict[str, _List] = {}

    # token helpers (Go's next/backup/peek with spaces as tokens)
    def next(self) -> _Tok:
        t = self.toks[min(self.i, len(self.toks) - 1)]
        self.i += 1
        return t

    def backup(self, k: int = 1) -> None:
        self.i -= k

    def peek(self) -> _Tok:
        return self.toks[min(self.i, len(self.toks) - 1)]

    def next_non_space(self) -> _Tok:
        t = self.next()
        while t.typ == "SPACE":
            t = self.next()
        return t

    def peek_non_space(self) -> _Tok:
        save = self.i
        t = self.next_non_space()
        self.i = save
        return t

    def errorf(self, msg: str, tok: _Tok | None = None) -> TemplateParseError:
        line = (tok or self.toks[max(0, min(self.i, len(self.toks)) - 1)]).line
        return TemplateParseError(f"template: {self.name}:{line}: {msg}")

    def unexpected(self, tok: _Tok, context: str) -> TemplateParseError:
        if tok.typ == "ERROR":
            return self.errorf(tok.val, tok)
        return self.errorf(f"unexpected {tok} in {context}", tok)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.errorf(f"template nesting deeper than {_MAX_DEPTH} levels is not supported")

    # grammar
    def parse(self) -> _List:
        root = _List([])
        while self.peek().typ != "EOF":
            if self.peek().typ == "LEFT":
                save = self.i
                self.next()
                t = self.next_non_space()
                if t.typ == "KEYWORD" and t.val == "define":
                    self.definition()
                    continue
                self.i = save
            n = self.text_or_action()
            if isinstance(n, _End | _Else):
                raise self.errorf("unexpected {{end}}" if isinstance(n, _End) else "unexpected {{else}}")
            root.nodes.append(n)
        return root

    def template_name(self, context: str) -> tuple[str, int]:
        t = self.next_non_space()
        if t.typ not in ("STRING", "RAWSTRING"):
            raise self.unexpected(t, context)
        try:
            return _unquote(t.val), t.pos
        except ValueError as e:
            raise self.errorf(str(e), t) from None

    def sub_tree(self, context: str) -> _List:
        """A define/block body: parsed with a fresh variable scope, ended by {{end}}."""
        saved = self.vars
        self.vars = ["$"]
        self.enter()
        try:
            body, end = self.item_list()
        finally:
            self.vars = saved
            self.depth -= 1
        if not isinstance(end, _End):
            raise self.errorf(f"unexpected {{{{else}}}} in {context}")
        return body

    def add_definition(self, name: str, body: _List) -> None:
        def empty(lst: _List) -> bool:
            return all(isinstance(n, _Text) and not n.text.strip() for n in lst.nodes)

        old = self.defs.get(name)
        if old is None or empty(old):
            self.defs[name] = body
        elif not empty(body):
            raise self.errorf(f"template: multiple definition of template {go_quote(name)}")

    def definition(self) -> None:
        name, _ = self.template_name("define clause")
        self.expect_right("define clause")
        self.add_definition(name, self.sub_tree("define clause"))

    def text_or_action(self) -> _Node:
        t = self.next_non_space()
        if t.typ == "TEXT":
            return _Text(t.val)
        if t.typ == "LEFT":
            return self.action()
        raise self.unexpected(t, "input")

    def action(self) -> _Node:
        t = self.next_non_space()
        if t.typ == "KEYWORD":
            if t.val == "else":
                return self.else_control(t)
            if t.val == "end":
                self.expect_right("end")
                return _End(t.pos)
            if t.val in ("if", "range", "with"):
                return self.branch(t.val, allow_else_if=t.val == "if")
            if t.val == "template":
                name, pos = self.template_name("template clause")
                pipe = None
                if self.next_non_space().typ != "RIGHT":
                    self.backup()
                    pipe = self.pipeline("template clause", "RIGHT")
                return _TemplateCall(pos, name, pipe)
            if t.val == "block":
                name, pos = self.template_name("block clause")
                pipe = self.pipeline("block clause", "RIGHT")
                self.add_definition(name, self.sub_tree("block clause"))
                return _TemplateCall(pos, name, pipe)
        self.backup()
        pipe = self.pipeline("command", "RIGHT")
        return _Action(pipe.pos, pipe)

    def expect_right(self, context: str) -> _Tok:
        t = self.next_non_space()
        if t.typ != "RIGHT":
            raise self.unexpected(t, context)
        return t

    def else_control(self, tok: _Tok) -> _Else:
        p = self.peek_non_space()
        if p.typ == "KEYWORD" and p.val == "if":
            return _Else(tok.pos)  # "{{else if": leave the "if" pending
        self.expect_right("else")
        return _Else(tok.pos)

    def branch(self, kind: str, allow_else_if: bool) -> _Branch:
        self.enter()
        mark = len(self.vars)
        try:
            pipe = self.pipeline(kind, "RIGHT")
            body, nxt = self.item_list()
            else_body: _List | None = None
            if isinstance(nxt, _Else):
                after_else = self.peek_non_space()
                if allow_else_if and after_else.typ == "KEYWORD" and after_else.val == "if":
                    self.next_non_space()
                    else_body = _List([self.branch("if", allow_else_if=True)])
                else:
                    else_body, nxt2 = self.item_list()
                    if not isinstance(nxt2, _End):
                        raise self.errorf("expected end; found {{else}}")
            return _Branch(kind, pipe.pos, pipe, body, else_body)
        finally:
            del self.vars[mark:]
            self.depth -= 1

    def item_list(self) -> tuple[_List, _Node]:
        lst = _List([])
        while self.peek_non_space().typ != "EOF":
            n = self.text_or_action()
            if isinstance(n, _End | _Else):
                return lst, n
            lst.nodes.append(n)
        raise self.errorf("unexpected EOF", self.peek())

    def pipeline(self, context: str, end: str) -> _Pipe:
        first = self.peek_non_space()
        pipe = _Pipe(first.pos, first.line, [], False, [])
        while True:
            v = self.peek_non_space()
            if v.typ != "VAR":
                break
            save = self.i
            self.next_non_space()
            nxt = self.peek_non_space()
            if nxt.typ in ("ASSIGN", "DECLARE"):
                pipe.is_assign = nxt.typ == "ASSIGN"
                self.next_non_space()
                pipe.decl.append(v.val)
                self.vars.append(v.val)
                break
            if nxt.typ == "CHARITEM" and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(v.val)
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in ("VAR", "RIGHT", "RPAREN"):
                        continue
                    raise self.errorf("range can only initialize variables")
                raise self.errorf(f"too many declarations in {context}")
            self.i = save  # "$x" is an operand, not a declaration
            break
        while True:
            t = self.next_non_space()
            if t.typ == end:
                if not pipe.cmds:
                    raise self.errorf(f"missing value for {context}", t)
                for k, c in enumerate(pipe.cmds[1:]):
                    if isinstance(c.args[0], _Bool | _Dot | _Nil | _Number | _String):
                        raise self.errorf(f"non executable command in pipeline stage {k + 2}", t)
                return pipe
            if t.typ in _OPERAND_START:
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(t, context)

    def command(self) -> _Command:
        cmd = _Command(self.peek_non_space().pos, [])
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            t = self.next()
            if t.typ == "SPACE":
                continue
            if t.typ == "ERROR":
                raise self.errorf(t.val, t)
            if t.typ in ("RIGHT", "RPAREN"):
                self.backup()
            elif t.typ != "PIPE":
                raise self.errorf(f"unexpected {t} in operand", t)
            break
        if not cmd.args:
            raise self.errorf("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == "FIELD":
            chain_pos = self.peek().pos  # Go positions the extended node at its first added field
            fields: list[str] = []
            while self.peek().typ == "FIELD":
                fields.append(self.next().val[1:])
            if isinstance(node, _Field):
                return _Field(chain_pos, node.idents + tuple(fields))
            if isinstance(node, _Variable):
                return _Variable(chain_pos, node.idents + tuple(fields))
            if isinstance(node, _Bool | _String | _Number | _Nil | _Dot):
                raise self.errorf(f"unexpected . after term {go_quote(node.go_string())}")
            return _Chain(chain_pos, node, fields)
        return node

    def term(self) -> _Node | None:
        t = self.next_non_space()
        typ = t.typ
        if typ == "ERROR":
            raise self.errorf(t.val, t)
        if typ == "IDENT":
            if t.val not in _FUNC_NAMES:
                raise self.errorf(f"function {go_quote(t.val)} not defined", t)
            return _Ident(t.pos, t.val)
        if typ == "DOT":
            return _Dot(t.pos)
        if typ == "NIL":
            return _Nil(t.pos)
        if typ == "VAR":
            name = t.val
            if name not in self.vars:
                raise self.errorf(f"undefined variable {go_quote(name)}", t)
            return _Variable(t.pos, (name,))
        if typ == "FIELD":
            return _Field(t.pos, (t.val[1:],))
        if typ == "BOOL":
            return _Bool(t.pos, t.val == "true")
        if typ == "COMPLEX":
            raise self.errorf(f"complex constant {t.val} is not supported", t)
        if typ == "NUMBER":
            try:
                return _Number(t.pos, t.val, _parse_number(t.val))
            except ValueError as e:
                raise self.errorf(str(e), t) from None
        if typ == "CHAR":
            try:
                return _Number(t.pos, t.val, _char_constant(t.val))
            except ValueError as e:
                raise self.errorf(str(e), t) from None
        if typ == "LPAREN":
            self.enter()
            try:
                pipe = self.pipeline("parenthesized pipeline", "RPAREN")
            finally:
                self.depth -= 1
            return pipe
        if typ in ("STRING", "RAWSTRING"):
            try:
                return _String(t.pos, t.val, _unquote(t.val))
            except ValueError as e:
                raise self.errorf(str(e), t) from None
        self.backup()
        return None


# ------------------------------------------------------------------------------------------------- execution


class _Missing:
    """Marks "no final argument" in a pipeline (Go's missingVal)."""


_NOFINAL: Any = _Missing()


class _FuncError(Exception):
    pass


class _Stop(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _truth(v: object) -> tuple[bool, bool]:
    """Go's isTrue: (truth, ok)."""
    if v is None or isinstance(v, GoNil):
        return False, True
    if isinstance(v, bool):
        return v, True
    if isinstance(v, int | float):
        return v != 0, True
    if isinstance(v, GoText):
        return (len(v) > 0, True) if v.go_kind == "string" else (True, True)
    if isinstance(v, str | list | tuple | GoMap):
        return len(v) > 0, True
    if isinstance(v, dict):
        return True, True  # struct values are always true
    return False, False


def _basic_kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str) and not (isinstance(v, GoText) and v.go_kind != "string"):
        return "string"
    raise _FuncError("invalid type for comparison")


def _f_eq(*args: object) -> bool:
    if len(args) < 2:
        raise _FuncError("missing argument for comparison")
    a = args[0]
    ka = _basic_kind(a)
    for b in args[1:]:
        kb = _basic_kind(b)
        if ka != kb:
            raise _FuncError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _f_lt(a: object, b: object) -> bool:
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka == "bool" or kb == "bool":
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    if ka == "string":
        return _go_bytes(str(a)) < _go_bytes(str(b))
    return a < b  # type: ignore[operator]


def _deref_type(v: object) -> str:
    """The type name after Go's indirect(): ``*ipam.Status`` -> ``ipam.Status``."""
    name = go_type_name(v)
    return name[1:] if isinstance(v, GoStruct) and v.pointer else name


def _f_len(v: object) -> int:
    if v is None:
        return 0  # a nil slice after a JSON round trip; see module docstring
    if isinstance(v, GoNil):
        if v.kind in ("slice", "map"):
            return 0
        raise _FuncError("len of nil pointer")
    if isinstance(v, GoText) and v.go_kind != "string":
        raise _FuncError(f"len of type {v.go_type}")
    if isinstance(v, str):
        return len(_go_bytes(v))
    if isinstance(v, list | tuple | GoMap):
        return len(v)
    raise _FuncError(f"len of type {_deref_type(v)}")


def _index_int(x: object, cap: int) -> int:
    if x is None:
        raise _FuncError("cannot index slice/array with nil")
    if isinstance(x, bool) or not isinstance(x, int):
        raise _FuncError(f"cannot index slice/array with type {go_type_name(x)}")
    if x < 0 or x >= cap:
        raise _FuncError(f"index out of range: {x}")
    return x


def _f_index(item: object, *indexes: object) -> object:
    if item is None:
        raise _FuncError("index of untyped nil")
    v = item
    for ix in indexes:
        if v is None:
            raise _FuncError("index of untyped nil")
        if isinstance(v, GoNil):
            if v.kind == "map":
                if not isinstance(ix, str):
                    raise _FuncError(f"value has type {go_type_name(ix)}; should be string")
                v = None
                continue
            if v.kind == "slice":
                _index_int(ix, 0)
            raise _FuncError("index of nil pointer")
        if isinstance(v, GoMap):
            if not isinstance(ix, str) or isinstance(ix, GoText):
                raise _FuncError(f"value has type {go_type_name(ix)}; should be string")
            v = v.get(ix, v.elem_zero)
        elif isinstance(v, str) and not isinstance(v, GoText):
            b = _go_bytes(v)
            v = b[_index_int(ix, len(b))]
        elif isinstance(v, list | tuple):
            v = v[_index_int(ix, len(v))]
        else:
            raise _FuncError(f"can't index item of type {_deref_type(v)}")
    return v


def _f_slice(item: object, *indexes: object) -> object:
    if item is None:
        raise _FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, GoText) or not isinstance(item, str | list | tuple | GoNil):
        raise _FuncError(f"can't slice item of type {go_type_name(item)}")
    if isinstance(item, GoNil) and item.kind != "slice":
        raise _FuncError(f"can't slice item of type {item.go_type}")
    seq: Sequence[Any] = [] if isinstance(item, GoNil) else item
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _FuncError("cannot 3-index slice a string")
        b = _go_bytes(item)
        cap = len(b)
    else:
        cap = len(seq)
    idx = [0, cap]
    for k, x in enumerate(indexes[:2]):
        if x is None:
            raise _FuncError("cannot index slice/array with nil")
        if isinstance(x, bool) or not isinstance(x, int):
            raise _FuncError(f"cannot index slice/array with type {go_type_name(x)}")
        if x < 0 or x > cap:
            raise _FuncError(f"index out of range: {x}")
        idx[k] = x
    if idx[0] > idx[1]:
        raise _FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if isinstance(item, str):
        return _from_go_bytes(b[idx[0] : idx[1]])
    go_type = item.go_type if isinstance(item, GoSlice | GoNil) else "[]interface {}"
    return GoSlice(seq[idx[0] : idx[1]], go_type=go_type)


def _printable_value(v: object) -> object:
    """Go's printableValue as used by the escaper functions: no value -> the string ``<no value>``, a
    pointer to a struct -> the struct."""
    if v is None or (isinstance(v, GoNil) and v.kind == "iface"):
        return "<no value>"
    if isinstance(v, GoStruct) and v.pointer and v.stringer is None:
        return GoStruct(v, go_type=v.go_type)
    return v


def _sprint_single(args: Sequence[object]) -> str:
    """text/template evalArgs: a lone string as is, else Sprint of the printable values."""
    if len(args) == 1 and isinstance(args[0], str) and not isinstance(args[0], GoText):
        return args[0]
    return go_sprint(*(_printable_value(a) for a in args))


def _f_html(*args: object) -> str:
    s = _sprint_single(args)
    table = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\x00": "\ufffd"}
    return "".join(table.get(c, c) for c in s)


def _f_js(*args: object) -> str:
    s = _sprint_single(args)
    out = []
    table = {
        "\\": "\\\\",
        "'": "\\'",
        '"': '\\"',
        "<": "\\u003C",
        ">": "\\u003E",
        "&": "\\u0026",
        "=": "\\u003D",
    }
    for c in s:
        o = ord(c)
        if c in table:
            out.append(table[c])
        elif o < 0x20:
            out.append(f"\\u{o:04X}")
        elif o < 0x80 or c.isprintable():
            out.append(c)
        else:
            out.append(f"\\u{o:04X}")
    return "".join(out)


def _f_urlquery(*args: object) -> str:
    s = _sprint_single(args)
    safe = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
    out = []
    for byte in _go_bytes(s):
        c = chr(byte)
        if c in safe:
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _f_call(fn: object, *args: object) -> object:
    if fn is None:
        raise _FuncError("call of nil")
    raise _FuncError(f"non-function of type {go_type_name(fn)}")  # the report holds no functions


def _f_json(v: object) -> str:
    try:
        return go_json(v)
    except ValueError:
        return ""  # weave's json func discards the error and returns string(nil)


def _f_and(*args: object) -> object:
    for a in args:
        if not _truth(a)[0]:
            return a
    return args[-1]


def _f_or(*args: object) -> object:
    for a in args:
        if _truth(a)[0]:
            return a
    return args[-1]


@dataclass(frozen=True)
class _Func:
    fn: Callable[..., object]
    fixed: int  # number of fixed parameters
    variadic: bool
    value_params: bool  # reflect.Value parameters (nil literal not assignable)
    first_string: bool = False  # printf's format parameter


_FUNCS: dict[str, _Func] = {
    "and": _Func(_f_and, 1, True, True),
    "or": _Func(_f_or, 1, True, True),
    "not": _Func(lambda v: not _truth(v)[0], 1, False, True),
    "len": _Func(_f_len, 1, False, True),
    "index": _Func(_f_index, 1, True, True),
    "slice": _Func(_f_slice, 1, True, True),
    "eq": _Func(_f_eq, 1, True, True),
    "ne": _Func(lambda a, b: not _f_eq(a, b), 2, False, True),
    "lt": _Func(_f_lt, 2, False, True),
    "le": _Func(lambda a, b: _f_lt(a, b) or _f_eq(a, b), 2, False, True),
    "gt": _Func(lambda a, b: not (_f_lt(a, b) or _f_eq(a, b)), 2, False, True),
    "ge": _Func(lambda a, b: not _f_lt(a, b), 2, False, True),
    "print": _Func(go_sprint, 0, True, False),
    "printf": _Func(go_sprintf, 1, True, False, first_string=True),
    "println": _Func(go_sprintln, 0, True, False),
    "html": _Func(_f_html, 0, True, False),
    "js": _Func(_f_js, 0, True, False),
    "urlquery": _Func(_f_urlquery, 0, True, False),
    "json": _Func(_f_json, 1, False, False),
    "call": _Func(_f_call, 1, True, True),
}


class _Exec:
    """One execution. ``node`` mirrors Go's ``state.at``: errors are reported at the last node Go would have
    recorded, which is not always the node that failed (e.g. ``(printf "%s" "x").Foo`` fails "at <"x">")."""

    def __init__(self, tmpl: Template, root: object) -> None:
        self.tmpl = tmpl
        self.vars: list[list[Any]] = [["$", root]]
        self.out: list[str] = []
        self.depth = 0
        self.node: _Node = _Dot(0)
        self.name = tmpl.name  # the (possibly {{define}}d) template being executed, for error messages

    def at(self, node: _Node) -> None:
        self.node = node

    # errors
    def fail(self, msg: str) -> _Stop:
        src = self.tmpl.text
        pos = min(max(getattr(self.node, "pos", 0), 0), len(src))
        before = src[:pos]
        nl = before.rfind("\n")
        line = 1 + before.count("\n")
        col = len(_go_bytes(before)) if nl < 0 else len(_go_bytes(before[nl + 1 :]))
        where = f"{self.tmpl.name}:{line}:{col}"
        return _Stop(f"template: {where}: executing {go_quote(self.name)} at <{self.node.go_string()}>: {msg}")

    # variables
    def var_value(self, name: str) -> object:
        for k in range(len(self.vars) - 1, -1, -1):
            if self.vars[k][0] == name:
                return self.vars[k][1]
        raise self.fail(f"undefined variable: {name}")

    def set_var(self, name: str, value: object) -> None:
        for k in range(len(self.vars) - 1, -1, -1):
            if self.vars[k][0] == name:
                self.vars[k][1] = value
                return
        raise self.fail(f"undefined variable: {name}")

    # walking
    def walk(self, dot: object, node: _Node) -> None:
        if isinstance(node, _Text):
            self.out.append(node.text)
        elif isinstance(node, _List):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, _Action):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.out.append(self.printable(val))
        elif isinstance(node, _Branch | _TemplateCall):
            self.depth += 1
            try:
                if self.depth > _MAX_DEPTH:
                    self.at(node)
                    raise self.fail(f"exceeded maximum template depth ({_MAX_DEPTH})")
                if isinstance(node, _TemplateCall):
                    self.walk_template(dot, node)
                elif node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    self.walk_if_with(dot, node)
            finally:
                self.depth -= 1
        else:  # pragma: no cover - the parser produces nothing else
            raise self.fail(f"unknown node: {node!r}")

    def walk_template(self, dot: object, node: _TemplateCall) -> None:
        self.at(node)
        body = self.tmpl.defs.get(node.name)
        if body is None:
            raise self.fail(f"template {go_quote(node.name)} not defined")
        value = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else None
        saved, saved_name = self.vars, self.name
        self.vars, self.name = [["$", value]], node.name
        try:
            self.walk(value, body)
        finally:
            self.vars, self.name = saved, saved_name

    def walk_if_with(self, dot: object, node: _Branch) -> None:
        mark = len(self.vars)
        try:
            val = self.eval_pipeline(dot, node.pipe)
            truth, ok = _truth(val)
            if not ok:
                raise self.fail(f"if/with can't use {go_value_string(val)}")
            if truth:
                self.walk(val if node.kind == "with" else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: object, node: _Branch) -> None:
        self.at(node)
        mark = len(self.vars)
        try:
            val = self.eval_pipeline(dot, node.pipe)
            inner = len(self.vars)
            items: list[tuple[object, object]]
            if val is None or (isinstance(val, GoNil) and val.kind in ("slice", "map", "iface")):
                items = []
            elif isinstance(val, list | tuple):
                items = list(enumerate(val))
            elif isinstance(val, dict) and not isinstance(val, GoStruct):
                items = [(k, val[k]) for k in _sorted_keys(val)]
            else:
                shown = GoStruct(val, go_type=val.go_type) if isinstance(val, GoStruct) and val.pointer else val
                raise self.fail(f"range can't iterate over {go_value_string(shown)}")
            ndecl = len(node.pipe.decl)
            for key, elem in items:
                if ndecl > 0:
                    self.vars[len(self.vars) - 1][1] = elem
                if ndecl > 1:
                    self.vars[len(self.vars) - 2][1] = key
                self.walk(elem, node.body)
                del self.vars[inner:]
            if not items and node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def printable(self, v: object) -> str:
        """Go's printableValue + fmt.Fprint for the value of a top-level action."""
        if v is None:
            return "<no value>"
        if isinstance(v, GoNil):
            if v.kind == "iface":
                return "<no value>"
            return go_value_string(v)
        if isinstance(v, GoStruct) and v.pointer and v.stringer is None:
            # printableValue dereferences a pointer before printing: {...}, not &{...}
            v = GoStruct(v, go_type=v.go_type)
        return go_value_string(v)

    # evaluation
    def eval_pipeline(self, dot: object, pipe: _Pipe) -> object:
        self.at(pipe)
        value: object = _NOFINAL
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.vars.append([name, value])
        return value

    def not_a_function(self, args: list[_Node], final: object) -> None:
        if len(args) > 1 or final is not _NOFINAL:
            raise self.fail(f"can't give argument to non-function {args[0].go_string()}")

    def eval_command(self, dot: object, cmd: _Command, final: object) -> object:
        first = cmd.args[0]
        if isinstance(first, _Field):
            self.at(first)
            return self.eval_field_chain(dot, dot, list(first.idents), cmd.args, final)
        if isinstance(first, _Chain):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, _Ident):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, _Pipe):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, _Variable):
            return self.eval_variable(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, _Bool):
            return first.value
        if isinstance(first, _Dot):
            return dot
        if isinstance(first, _Nil):
            raise self.fail("nil is not a command")
        if isinstance(first, _Number):
            return self.number(first)
        if isinstance(first, _String):
            return first.text
        raise self.fail(f"can't evaluate command {first.go_string()}")  # pragma: no cover

    def number(self, node: _Number) -> int | float:
        if isinstance(node.value, str):  # a uint64 constant too large for Go's int
            raise self.fail(node.value)
        return node.value

    def eval_chain(self, dot: object, chain: _Chain, args: list[_Node] | None, final: object) -> object:
        self.at(chain)
        if isinstance(chain.node, _Nil):
            raise self.fail(f"indirection through explicit nil in {chain.go_string()}")
        recv = self.eval_arg(dot, chain.node)
        return self.eval_field_chain(dot, recv, chain.fields, args, final)

    def eval_variable(self, dot: object, node: _Variable, args: list[_Node] | None, final: object) -> object:
        self.at(node)
        value = self.var_value(node.idents[0])
        if len(node.idents) == 1:
            self.not_a_function(args or [node], final)
            return value
        return self.eval_field_chain(dot, value, list(node.idents[1:]), args, final)

    def eval_field_chain(
        self, dot: object, recv: object, idents: list[str], args: list[_Node] | None, final: object
    ) -> object:
        for name in idents[:-1]:
            recv = self.eval_field(name, None, _NOFINAL, recv)
        return self.eval_field(idents[-1], args, final, recv)

    def eval_field(self, name: str, args: list[_Node] | None, final: object, recv: object) -> object:
        if recv is None:
            return None  # Go: a field of "no value" is again no value (missingkey=default)
        has_args = (args is not None and len(args) > 1) or final is not _NOFINAL
        typ = go_type_name(recv)
        if name == "String" and _stringer(recv) is not None:
            if has_args:
                raise self.fail("wrong number of args for String: want 0 got 1")
            return _stringer(recv)
        if isinstance(recv, GoNil):
            if recv.kind == "map":
                if has_args:
                    raise self.fail(f"{name} is not a method but has arguments")
                return None
            if recv.kind in ("ptr", "iface"):
                raise self.fail(f"nil pointer evaluating {typ}.{name}")
            raise self.fail(f"can't evaluate field {name} in type {typ}")
        if isinstance(recv, GoMap):
            if has_args:
                raise self.fail(f"{name} is not a method but has arguments")
            return recv.get(name)
        if isinstance(recv, dict) and name in recv:
            if has_args:
                raise self.fail(f"{name} has arguments but cannot be invoked as function")
            return recv[name]
        raise self.fail(f"can't evaluate field {name} in type {typ}")

    def eval_arg(self, dot: object, node: _Node) -> object:
        self.at(node)
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _Field):
            return self.eval_field_chain(dot, dot, list(node.idents), [node], _NOFINAL)
        if isinstance(node, _Variable):
            return self.eval_variable(dot, node, None, _NOFINAL)
        if isinstance(node, _Pipe):
            return self.eval_pipeline(dot, node)
        if isinstance(node, _Ident):
            return self.eval_function(dot, node, node, None, _NOFINAL)
        if isinstance(node, _Chain):
            return self.eval_chain(dot, node, None, _NOFINAL)
        if isinstance(node, _Bool):
            return node.value
        if isinstance(node, _Number):
            return self.number(node)
        if isinstance(node, _String):
            return node.text
        raise self.fail(f"can't handle {node.go_string()} for arg")  # pragma: no cover

    def eval_function(self, dot: object, ident: _Ident, at: _Node, args: list[_Node] | None, final: object) -> object:
        self.at(ident)
        spec = _FUNCS[ident.name]
        arg_nodes = (args or [ident])[1:]
        nargs = len(arg_nodes) + (0 if final is _NOFINAL else 1)
        if spec.variadic:
            if nargs < spec.fixed:
                want = f"want at least {spec.fixed} got {len(arg_nodes)}"
                raise self.fail(f"wrong number of args for {ident.name}: {want}")
        elif nargs != spec.fixed:
            raise self.fail(f"wrong number of args for {ident.name}: want {spec.fixed} got {nargs}")
        values: list[object] = []
        for k, a in enumerate(arg_nodes):
            if spec.first_string and k == 0:
                if isinstance(a, _Number | _Bool):
                    self.at(a)
                    raise self.fail(f"expected string; found {a.go_string()}")
                if isinstance(a, _Nil):
                    self.at(a)
                    raise self.fail("cannot assign nil to string")
                v = self.eval_arg(dot, a)
                if not _is_go_string(v):
                    raise self.fail(f"wrong type for value; expected string; got {go_type_name(v)}")
                values.append(str(v))
                continue
            values.append(self.eval_arg(dot, a))
        if final is not _NOFINAL:
            if spec.first_string and not values and not _is_go_string(final):
                raise self.fail(f"wrong type for value; expected string; got {go_type_name(final)}")
            values.append(final)
        try:
            return spec.fn(*values)
        except _FuncError as e:
            self.at(at)
            raise self.fail(f"error calling {ident.name}: {e}") from None


class Template:
    """A parsed template. ``Template(text)`` raises :class:`TemplateParseError`; ``execute`` raises
    :class:`TemplateExecError` (with ``partial_output``)."""

    def __init__(self, text: str, name: str = "format") -> None:
        self.text = text
        self.name = name
        try:
            parser = _Parser(name, text)
            self.root = parser.parse()
        except RecursionError:
            raise TemplateParseError(f"template: {name}: template nesting too deep") from None
        self.defs: dict[str, _List] = parser.defs

    def execute(self, data: object) -> str:
        state = _Exec(self, data)
        try:
            state.walk(data, self.root)
        except _Stop as e:
            raise TemplateExecError(e.message, "".join(state.out)) from None
        except RecursionError:
            raise TemplateExecError(f"template: {self.name}: data nested too deeply", "".join(state.out)) from None
        return "".join(state.out)


def execute(text: str, data: object, name: str = "format") -> str:
    """Parse and execute ``text`` over ``data``; raises only :class:`TemplateError` subclasses."""
    return Template(text, name).execute(data)
