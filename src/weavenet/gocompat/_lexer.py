"""text/template's lexer (Go 1.15): template text into items, with Go's lexing errors."""

from __future__ import annotations

from dataclasses import dataclass

from weavenet.gocompat._quote import go_quote


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
