"""text/template's executor (Go 1.15) and the :class:`Template` entry point."""

from __future__ import annotations

from typing import Any

from weavenet.gocompat._builtins import _FUNCS, _FuncError, _truth
from weavenet.gocompat._errors import TemplateExecError, TemplateParseError
from weavenet.gocompat._fmt import go_value_string
from weavenet.gocompat._nodes import (
    _Action,
    _Bool,
    _Branch,
    _Chain,
    _Command,
    _Dot,
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
from weavenet.gocompat._parser import _MAX_DEPTH, _Parser
from weavenet.gocompat._quote import go_quote
from weavenet.gocompat._values import (
    GoMap,
    GoNil,
    GoStruct,
    _go_bytes,
    _is_go_string,
    _sorted_keys,
    _stringer,
    go_type_name,
)


class _Missing:
    """Marks "no final argument" in a pipeline (Go's missingVal)."""


_NOFINAL: Any = _Missing()


class _Stop(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
