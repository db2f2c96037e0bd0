"""The Go text/template subset behind ``weave report -f``.

The tables in ``go_golden`` are Go's own outputs (see there); they pin the emulation to Go's bytes, error
texts and error positions.
"""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weavenet.gocompat import (
    GoMap,
    GoNil,
    GoStruct,
    Template,
    TemplateError,
    TemplateExecError,
    TemplateParseError,
    execute,
    go_json,
    go_sprint,
    go_sprintf,
    go_sprintln,
    go_value_string,
)
from weavenet.gocompat._builtins import _FUNCS
from weavenet.gocompat._parser import _FUNC_NAMES
from weavenet.status import (
    DNSStatus,
    PeerStatus,
    RouterStatus,
    WeaveStatus,
    format_report,
    sample_report,
    template_view,
)

from .go_golden import GO_SPRINTF, GO_TEMPLATE_ERRORS, GO_TEMPLATE_OUTPUTS

VIEW = template_view(sample_report(encryption=True))


@pytest.mark.parametrize(("tmpl", "expected"), GO_TEMPLATE_OUTPUTS)
def test_go_template_outputs(tmpl: str, expected: str) -> None:
    assert Template(tmpl).execute(VIEW) == expected


@pytest.mark.parametrize(("tmpl", "phase", "message", "partial"), GO_TEMPLATE_ERRORS)
def test_go_template_errors(tmpl: str, phase: str, message: str, partial: str) -> None:
    with pytest.raises(TemplateError) as info:
        Template(tmpl).execute(VIEW)
    err = info.value
    assert isinstance(err, TemplateParseError if phase == "parse" else TemplateExecError)
    assert err.message == message
    assert str(err) == message
    assert "\n" not in message
    assert err.partial_output == partial


@pytest.mark.parametrize(("fmt", "args", "expected"), GO_SPRINTF)
def test_go_sprintf(fmt: str, args: list[object], expected: str) -> None:
    assert go_sprintf(fmt, *[GoMap(a) if isinstance(a, dict) else a for a in args]) == expected


# ------------------------------------------------------------------------------------------ upstream usage

UPSTREAM = sample_report()
UPSTREAM.router.nick_name = "nicknamington"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("{{.Router.Name}}", "4a:0f:f6:ec:1c:93"),
        ("{{.Router.Name}}({{.Router.NickName}})", "4a:0f:f6:ec:1c:93(nicknamington)"),
        ("{{len .Router.Peers}}", "3"),
        ("{{.IPAM.DefaultSubnet}}", "10.32.0.0/12"),
        ("{{.DNS.Domain}}", "weave.local."),
        ("{{len .DNS.Entries}}", "10"),
        ("{{.VersionCheck.Enabled}}", "true"),
        ("{{.VersionCheck.Success}}", "true"),
        ("{{.VersionCheck.NewVersion}}", ""),
        ("{{ .Version }}", "2.8.1"),
        # test/150 passes a real newline inside the argument
        ("{{range .Router.Targets}}{{.}}\n{{end}}", "192.168.48.14\n192.168.48.15\n"),
        # test/175 uses a Go string literal, whose escape is interpreted
        ('{{range .Router.Targets}}{{.}}{{"\\n"}}{{end}}', "192.168.48.14\n192.168.48.15\n"),
        # a shell-quoted '\n' reaches the template as backslash + n and is printed as such, as in Go
        ("{{range .Router.Targets}}{{.}}\\n{{end}}", "192.168.48.14\\n192.168.48.15\\n"),
    ],
)
def test_upstream_test_templates(fmt: str, expected: str) -> None:
    assert format_report(UPSTREAM, fmt) == expected


def test_json_dns_from_the_docs() -> None:
    r = WeaveStatus(dns=DNSStatus("weave.local.", ["8.8.8.8", "8.8.4.4"], "172.17.0.1:53", 1, None))
    assert format_report(r, "{{json .DNS}}") == (
        '{"Domain":"weave.local.","Upstream":["8.8.8.8","8.8.4.4"],"Address":"172.17.0.1:53","TTL":1,"Entries":null}'
    )
    assert format_report(r, "{{.DNS | json}}") == format_report(r, "{{json .DNS}}")


def test_json_of_whole_report_omits_disabled_services() -> None:
    out = format_report(WeaveStatus(version="2.8.1"), "{{json .}}")
    assert json.loads(out) == {
        "Ready": False,
        "Version": "2.8.1",
        "VersionCheck": {
            "Enabled": False,
            "Success": False,
            "NewVersion": "",
            "NextCheckAt": "0001-01-01T00:00:00Z",
        },
    }


def test_version_subcommand_template() -> None:
    """`weave version` asks for format={{ .Version }}."""
    assert format_report(WeaveStatus(version="2.8.1"), "{{ .Version }}") == "2.8.1"


# ------------------------------------------------------------------------------------------ semantics


def test_the_parser_knows_exactly_the_builtins() -> None:
    """The parser refuses unknown function names and the executor runs the known ones: the two lists agree."""
    assert frozenset(_FUNCS) == _FUNC_NAMES


def test_missing_struct_field_is_an_error_but_missing_map_key_is_no_value() -> None:
    with pytest.raises(TemplateExecError, match=r"can't evaluate field Nope in type main\.WeaveStatus"):
        format_report(UPSTREAM, "{{.Nope}}")
    assert format_report(UPSTREAM, "{{(index .Router.Connections 0).Attrs.nope}}") == "<no value>"


def test_plain_dicts_are_structs_and_none_is_no_value() -> None:
    data = {"A": {"B": [1, 2]}, "N": None}
    assert execute("{{.A.B}} {{len .A.B}} {{.N}} {{len .N}} {{range .N}}x{{else}}empty{{end}}", data) == (
        "[1 2] 2 <no value> 0 empty"
    )
    with pytest.raises(TemplateExecError, match="can't evaluate field C in type struct"):
        execute("{{.A.C}}", data)
    assert execute("{{range $k, $v := .A}}{{$k}}={{$v}}{{end}}", data) == "B=[1 2]"


def test_truthiness() -> None:
    data = {
        "Zero": 0,
        "Empty": "",
        "List": [],
        "Map": GoMap(),
        "Struct": GoStruct({}),
        "NilPtr": GoNil("ptr", "*x.T"),
        "F": 0.0,
        "T": True,
    }
    tmpl = "".join(f"{{{{if .{k}}}}}1{{{{else}}}}0{{{{end}}}}" for k in data)
    assert execute(tmpl, data) == "00001001"


def test_with_and_else_if_and_variables_scope() -> None:
    assert execute("{{with $x := .A}}{{$x}}{{.}}{{end}}", {"A": "a"}) == "aa"
    assert execute("{{if .A}}x{{else if .B}}y{{else}}z{{end}}", {"A": 0, "B": 1}) == "y"
    with pytest.raises(TemplateParseError, match='undefined variable "\\$x"'):
        Template("{{if 1}}{{$x := 1}}{{end}}{{$x}}")


def test_range_over_map_is_sorted() -> None:
    assert execute("{{range $k, $v := .}}{{$k}}{{$v}}{{end}}", GoMap({"b": 2, "a": 1, "c": 3})) == "a1b2c3"


def test_trim_markers_and_comments() -> None:
    assert execute("a  \n {{- 1 -}} \n  b", None) == "a1b"
    assert execute("a {{- /* note */ -}} b{{/* x */}}", None) == "ab"
    assert execute("{{-3}}", None) == "-3"


def test_nested_nil_pointer_message() -> None:
    with pytest.raises(TemplateExecError, match=r"nil pointer evaluating \*paxos.Status.Quorum"):
        format_report(UPSTREAM, "{{.IPAM.Paxos.Quorum}}")


def test_call_is_known_but_nothing_is_callable() -> None:
    with pytest.raises(TemplateExecError, match="non-function of type string"):
        format_report(UPSTREAM, "{{call .Version}}")


def test_go_1_15_constructs() -> None:
    """Weave 2.8 is built with Go 1.15: no break/continue, actions on one line, eq only on basic kinds."""
    with pytest.raises(TemplateParseError, match='function "break" not defined'):
        Template("{{range .}}{{break}}{{end}}")
    with pytest.raises(TemplateParseError, match="unclosed action"):
        Template("{{.A\n}}")
    with pytest.raises(TemplateExecError, match="invalid type for comparison"):
        format_report(UPSTREAM, "{{eq .IPAM .IPAM}}")
    assert execute("{{and 0 1}}", None) == "0"


def test_recursive_template_is_bounded() -> None:
    with pytest.raises(TemplateExecError, match="exceeded maximum template depth"):
        execute('{{define "r"}}{{template "r"}}{{end}}{{template "r"}}', None)


def test_deep_nesting_is_a_template_error() -> None:
    with pytest.raises(TemplateError):
        execute("{{" + "(" * 500 + "1" + ")" * 500 + "}}", None)
    with pytest.raises(TemplateError):
        execute("{{if 1}}" * 500 + "{{end}}" * 500, None)


# ------------------------------------------------------------------------------------------ fmt and json


def test_value_printing() -> None:
    assert go_value_string(None) == "<nil>"
    assert go_value_string([1, "a", None, True]) == "[1 a <nil> true]"
    assert go_value_string(GoMap({"b": [], "a": 1.5})) == "map[a:1.5 b:[]]"
    assert go_value_string(GoStruct({"A": 1, "B": GoNil("slice", "[]int")}, pointer=True)) == "&{1 []}"
    assert go_value_string(1e21) == "1e+21"
    assert go_value_string(float("inf")) == "+Inf"
    assert go_sprint("a", 1, 2, "b") == "a1 2b"
    assert go_sprintln("a", 1) == "a 1\n"


def test_percent_04_1f() -> None:
    assert [go_sprintf("%04.1f", x) for x in (0.0, 5.0, 33.33, 100.0, -1.5)] == [
        "00.0",
        "05.0",
        "33.3",
        "100.0",
        "-1.5",
    ]
    assert go_sprintf("%04.1f", float("nan")) == " NaN"
    assert go_sprintf("%04.1f", float("inf")) == "+Inf"


def test_go_json() -> None:
    assert go_json({"b": 1, "a": [None, True, 1.5, "<>"]}) == '{"b":1,"a":[null,true,1.5,"\\u003c\\u003e"]}'
    assert go_json(GoMap({"b": 1, "a": 2})) == '{"a":2,"b":1}'
    assert go_json(GoStruct({"A": 1, "B": ""}, omitempty=frozenset({"B"}))) == '{"A":1}'
    assert go_json({"a": [], "b": {}}, "    ") == '{\n    "a": [],\n    "b": {}\n}'
    assert go_json([1e21, 1e20, 1e-7, 0.000001, -0.0]) == "[1e+21,100000000000000000000,1e-7,0.000001,-0]"
    with pytest.raises(ValueError):
        go_json(float("nan"))
    assert execute("[{{json .}}]", float("nan")) == "[]"  # weave's json func swallows the error


# ------------------------------------------------------------------------------------------ robustness

TOKENS = [
    "{{",
    "}}",
    "{{-",
    "-}}",
    " ",
    "\n",
    ".",
    ".Router",
    ".Name",
    ".Peers",
    ".Connections",
    ".Attrs",
    ".DNS",
    ".Entries",
    ".IPAM",
    ".Paxos",
    ".Nope",
    "$",
    "$x",
    "$i",
    "$e",
    ":=",
    "=",
    ",",
    "|",
    "(",
    ")",
    "range",
    "if",
    "with",
    "else",
    "end",
    "define",
    "template",
    "block",
    "break",
    "nil",
    "true",
    '"x"',
    '"%d"',
    '"%v|%5.2f"',
    "`raw`",
    "'a'",
    "1",
    "-2",
    "3.5",
    "1e3",
    "0x1F",
    "len",
    "index",
    "printf",
    "print",
    "println",
    "json",
    "eq",
    "ne",
    "lt",
    "and",
    "or",
    "not",
    "slice",
    "html",
    "js",
    "urlquery",
    "call",
    "/*",
    "*/",
    "text",
    '"\\q"',
    "@",
]

template_like = st.lists(st.sampled_from(TOKENS), max_size=25).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_template_error(text: str) -> None:
    try:
        Template(text).execute(VIEW)
    except TemplateError as e:
        assert "\n" not in e.message


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template_like)
def test_template_like_input_only_raises_template_error(text: str) -> None:
    for data in (VIEW, sample_report().to_dict(), None):
        try:
            Template(text).execute(data)
        except TemplateError as e:
            assert "\n" not in e.message


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet=string.printable + "é😀", max_size=40),
    st.lists(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.floats(),
            st.text(max_size=10),
            st.lists(st.integers(), max_size=3),
        ),
        max_size=4,
    ),
)
def test_sprintf_never_raises(fmt: str, args: list[object]) -> None:
    assert isinstance(go_sprintf(fmt, *args), str)


def test_report_builders_feed_templates() -> None:
    r = WeaveStatus(router=RouterStatus(name="aa", peers=[PeerStatus("aa", "a")]))
    assert format_report(r, "{{range .Router.Peers}}{{.Name}}({{.NickName}}) {{.Connections}}{{end}}") == "aa(a) []"
