"""Go's behaviour where weave's output or input is Go's: ``text/template``, ``fmt``, ``encoding/json``,
``strconv`` quoting, ``time.Time`` printing and ``time.Duration`` parsing and printing.

Why this exists: ``weave report -f FORMAT`` hands FORMAT verbatim (curl ``--data-urlencode "format=$2"``)
to the daemon, which parses it with Go's ``text/template`` (weave 2.8.x is built with Go 1.15) and executes
it over the ``WeaveStatus`` report, with one extra function ``json``. Scripts in the wild feed it things like
``{{.Router.Name}}``, ``{{len .DNS.Entries}}`` or ``{{range .Router.Targets}}{{.}}{{"\\n"}}{{end}}``, so
the output must be what Go prints, byte for byte, for the constructs that can occur. The status texts, the
handshake's error messages and the duration flags need the same pieces of Go, so they live here once.

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

The data a template, ``fmt`` or JSON sees is described in ``_values`` (Go's nil kinds, structs versus maps,
Stringers).

Deliberate differences from Go, all in corners no script can depend on: a pointer nested inside a printed
struct shows its contents (``&{...}``) where Go prints a memory address; ``%#v`` only quotes strings;
scalars report their kind (``int``) where Go names the exact type (``uint32``) in error texts; the only
method callable as a field is a Stringer's ``String``; nesting deeper than 100 levels is refused.

The package is pure (no I/O, no clock): cores may use it. Modules: ``_values`` (value model), ``_floats`` and
``_fmt`` (fmt), ``_quote`` (strconv quoting), ``_json`` (encoding/json), ``_lexer``, ``_nodes``, ``_parser``,
``_builtins`` and ``_exec`` (text/template), ``_time`` (time.Time), ``_duration`` (time.Duration).
"""

from weavenet.gocompat._duration import SECOND, DurationError, format_duration, parse_duration, parse_seconds
from weavenet.gocompat._errors import TemplateError, TemplateExecError, TemplateParseError
from weavenet.gocompat._exec import Template, execute
from weavenet.gocompat._fmt import go_sprint, go_sprintf, go_sprintln, go_value_string
from weavenet.gocompat._json import go_json
from weavenet.gocompat._quote import go_quote
from weavenet.gocompat._time import GoTime, go_time_string
from weavenet.gocompat._values import GoMap, GoNil, GoSlice, GoStruct, GoText

__all__ = [
    "SECOND",
    "DurationError",
    "GoMap",
    "GoNil",
    "GoSlice",
    "GoStruct",
    "GoText",
    "GoTime",
    "Template",
    "TemplateError",
    "TemplateExecError",
    "TemplateParseError",
    "execute",
    "format_duration",
    "go_json",
    "go_quote",
    "go_sprint",
    "go_sprintf",
    "go_sprintln",
    "go_time_string",
    "go_value_string",
    "parse_duration",
    "parse_seconds",
]
