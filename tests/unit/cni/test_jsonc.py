"""``weavenet.cni.jsonc`` must be ``json``, only cheaper to import: same values, same output, same errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.cni import jsonc

values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=120, deadline=None)
@given(values, st.sampled_from([None, 4]))
def test_dumps_is_jsons_and_loads_reads_it_back(value: object, indent: int | None) -> None:
    text = jsonc.dumps(value, indent=indent)
    assert text == json.dumps(value, indent=indent)
    assert jsonc.loads(text) == json.loads(text)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=40), values.map(json.dumps).map(lambda t: t[: len(t) // 2] + " x")))
def test_loads_of_anything_is_jsons_verdict(text: str) -> None:
    def refuse(name: str) -> None:
        raise ValueError(name)  # json accepts NaN and Infinity; they are not JSON, and we refuse them

    try:
        expected: object = ("ok", json.loads(text, parse_constant=refuse))
    except (ValueError, RecursionError) as e:
        expected = ("error", ValueError if isinstance(e, ValueError) else type(e))
    try:
        got: object = ("ok", jsonc.loads(text))
    except (ValueError, RecursionError) as e:
        got = ("error", ValueError if isinstance(e, ValueError) else type(e))
    assert got == expected


def test_no_nan_and_clear_errors() -> None:
    for bad in ("NaN", "[Infinity]", '{"a": -Infinity}'):
        with pytest.raises(ValueError, match="not valid JSON"):
            jsonc.loads(bad)
    with pytest.raises(ValueError, match="Expecting ':' delimiter"):
        jsonc.loads('{"a" 1}')
    with pytest.raises(ValueError, match="Extra data"):
        jsonc.loads("[1] [2]")
    with pytest.raises(ValueError):
        jsonc.dumps(float("nan"))
    with pytest.raises(TypeError):
        jsonc.dumps({1: 2})
    with pytest.raises(TypeError):
        jsonc.dumps(object())


def test_importing_it_imports_neither_json_nor_re() -> None:
    code = "import weavenet.cni.jsonc as j; j.loads(j.dumps([1])); print(sorted({'json', 're'} & {*sys.modules}))"
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.strip() == "[]"
