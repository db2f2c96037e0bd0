"""text/template's parser (Go 1.15): items into the parse tree, with Go's parse errors and line numbers."""

from __future__ import annotations

import math
import re

from weavenet.gocompat._errors import TemplateParseError
from weavenet.gocompat._lexer import _Lexer, _Tok
from weavenet.gocompat._nodes import (
    _Action,
    _Bool,
    _Branch,
    _Chain,
    _Command,
    _Dot,
    _Else,
    _End,
    _Field,
    _Ident,
    _List,
    _Nil,
    _Node,
    _Number,
    _Pipe,
    _String,
    _TemplateCall,
    _Text,
    _Variable,
)
from weavenet.gocompat._quote import _char_constant, _unquote, go_quote

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
