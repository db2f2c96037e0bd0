"""strconv's quoting: Quote / QuoteToASCII / QuoteRune (``%q``, error texts) and Unquote / UnquoteChar
(template string and character literals).

Printability follows Python's ``str.isprintable``, which matches Go's ``unicode.IsPrint`` (letters, marks,
numbers, punctuation, symbols and the ASCII space). A surrogate stands for bytes Go would hold as invalid
UTF-8 and is quoted byte by byte as ``\\xNN``, as Go quotes invalid bytes.
"""

from __future__ import annotations

from weavenet.gocompat._values import _from_go_bytes, _go_bytes

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


def _quote_rune(r: int, ascii_only: bool = False) -> str:
    return "'" + _quote_body(chr(r) if 0 <= r <= 0x10FFFF else "\ufffd", "'", ascii_only) + "'"


def _can_backquote(s: str) -> bool:
    for ch in s:
        o = ord(ch)
        if ch == "`" or ch == "\ufeff" or 0xD800 <= o <= 0xDFFF:
            return False
        if (o < 0x20 and ch != "\t") or o == 0x7F:
            return False
    return True


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
