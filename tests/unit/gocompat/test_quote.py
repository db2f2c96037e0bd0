"""strconv.Quote / QuoteToASCII: the one quoting behind ``%q``, template error texts and the handshake's
``strconv.ParseUint: parsing "..."`` messages."""

from __future__ import annotations

import pytest

from weavenet.core.features import parse_bool, parse_uint
from weavenet.errors import HandshakeError
from weavenet.gocompat import go_quote


def test_quote_escapes_as_go() -> None:
    assert go_quote('a"b\\c\n\x00é\u2028') == '"a\\"b\\\\c\\n\\x00é\\u2028"'
    assert go_quote("") == '""'
    assert go_quote("\a\b\f\r\t\v\x7f\x1b") == '"\\a\\b\\f\\r\\t\\v\\x7f\\x1b"'
    assert go_quote("\u00ad\ufeff\U000e0001") == '"\\u00ad\\ufeff\\U000e0001"'  # format characters
    assert go_quote("\U0001f600 ok") == '"\U0001f600 ok"'  # printable, kept as is


def test_quote_to_ascii() -> None:
    assert go_quote("é\U0001f600~", ascii_only=True) == '"\\u00e9\\U0001f600~"'


def test_invalid_utf8_bytes_are_quoted_byte_by_byte() -> None:
    """Bytes decoded with ``surrogateescape`` print as Go prints the invalid bytes themselves; an encoded
    surrogate (bytes ED A0 80, invalid UTF-8 in Go) prints the same whichever way Python holds it."""
    assert go_quote(b"a\x80\xffz".decode("utf-8", "surrogateescape")) == '"a\\x80\\xffz"'
    raw = b"\xed\xa0\x80".decode("utf-8", "surrogateescape")
    assert go_quote(raw) == go_quote("\ud800") == '"\\xed\\xa0\\x80"'


def test_handshake_errors_quote_with_it() -> None:
    with pytest.raises(HandshakeError, match=r'^strconv\.ParseUint: parsing "1\\n": invalid syntax$'):
        parse_uint("1\n", 12)
    with pytest.raises(HandshakeError, match=r'^strconv\.ParseBool: parsing "\\xed\\xa0\\x80": invalid syntax$'):
        parse_bool("\ud800")
