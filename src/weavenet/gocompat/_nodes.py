"""text/template's parse tree. ``go_string`` is Go's ``Node.String()``, which error texts quote (``at <.X>``)."""

from __future__ import annotations

from dataclasses import dataclass

from weavenet.gocompat._quote import go_quote


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
