"""The bolt file reader: a file written by bolt itself read back exactly, meta page choice, and damaged files.

``bolt-fixture.db`` was written by github.com/boltdb/bolt v1.3.1 (what Weave Net 2.8 vendors; see
``bolt-fixture.go`` beside it) and covers what Weave's own file does not: branch pages, an overflowing value,
nested inline and non-inline buckets, an empty bucket, a bucket sequence, and two meta pages of different
transactions. Damaged files are made from it and from Weave's file, by hand and by hypothesis.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.golden.wire_vectors import VECTORS, load
from weavenet.core.codec import bolt
from weavenet.core.codec.bolt import BoltError, Bucket, parse

FIXTURE = (VECTORS / "bolt-fixture.db").read_bytes()
WEAVE = (VECTORS / "weave-2.8-weavedata.db").read_bytes()
PS = 4096


def as_json(b: Bucket) -> dict[str, Any]:
    """A bucket in the shape of bolt-fixture.json."""
    return {
        "sequence": b.sequence,
        "values_hex": {k.hex(): v.hex() for k, v in b.values.items()},
        "buckets": {k.hex(): as_json(v) for k, v in b.buckets.items()},
    }


def page_headers(data: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("<QHHI", data, p * PS) for p in range(len(data) // PS)]


def set_meta(data: bytes, page: int, **fields: int) -> bytes:
    """Change fields of a meta page and give it a valid checksum again."""
    names = ["magic", "version", "page_size", "flags", "root", "sequence", "freelist", "pgid", "txid", "checksum"]
    off = page * PS + 16
    values = dict(zip(names, bolt.META.unpack_from(data, off), strict=True))
    values.update(fields)
    raw = bytearray(bolt.META.pack(*values.values()))
    if "checksum" not in fields:
        raw[-8:] = bolt.fnv1a64(bytes(raw[:-8])).to_bytes(8, "little")
    out = bytearray(data)
    out[off : off + len(raw)] = raw
    return bytes(out)


def patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def error_of(data: bytes) -> str:
    with pytest.raises(BoltError) as info:
        parse(data, "/some/where/x.db")
    msg = str(info.value)
    assert msg.startswith("/some/where/x.db: ") and "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------------- what bolt wrote


def test_fixture_covers_branch_and_overflow_pages() -> None:
    flags = [h[1] for h in page_headers(FIXTURE)]
    assert bolt.BRANCH in flags and any(h[3] > 0 and h[1] == bolt.LEAF for h in page_headers(FIXTURE))


def test_fixture_reads_back_exactly_as_bolt_read_it() -> None:
    db = parse(FIXTURE, "fixture")
    assert (db.page_size, db.txid, db.meta_page) == (4096, 5, 1)
    assert as_json(db.root) == load("bolt-fixture")["root"]
    assert len(db.root.buckets[b"many"].values) == 106 and db.root.buckets[b"many"].values[b"key-0001"] == b"rewritten"
    assert len(db.root.bucket(b"big").values[b"overflow"]) == 10000  # type: ignore[union-attr]
    assert db.root.bucket(b"outer", b"deep", b"deeper").values == {b"leaf": b"bottom"}  # type: ignore[union-attr]
    assert db.root.bucket(b"outer", b"empty") == Bucket()
    assert db.root.bucket(b"seq").sequence == 5  # type: ignore[union-attr]
    assert db.root.bucket(b"outer", b"nothing") is None


def test_weave_file_has_one_inline_top_bucket() -> None:
    db = parse(WEAVE, "weave")
    assert (db.page_size, db.txid, db.meta_page) == (4096, 39, 1)
    assert list(db.root.buckets) == [b"top"] and not db.root.values


# ------------------------------------------------------------------------------------------------ meta pages


def test_a_damaged_newer_meta_falls_back_to_the_older_transaction() -> None:
    db = parse(patch(FIXTURE, PS + 16 + 60, b"\xff"), "fixture")  # a byte of meta 1's checksum
    assert (db.txid, db.meta_page) == (4, 0)
    many = db.root.buckets[b"many"].values
    assert len(many) == 160 and many[b"key-0001"] == b"value-0001;value-0001;"  # before transaction 5


def test_a_damaged_meta_0_still_finds_the_page_size_from_meta_1() -> None:
    db = parse(patch(FIXTURE, 16, b"\0\0\0\0"), "fixture")
    assert (db.page_size, db.txid, db.meta_page) == (4096, 5, 1)


def test_the_higher_txid_wins_whatever_its_page() -> None:
    db = parse(set_meta(FIXTURE, 0, txid=6), "fixture")
    assert (db.txid, db.meta_page) == (6, 0) and len(db.root.buckets[b"many"].values) == 160


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"checksum": 1}, "checksum mismatch"),
        ({"version": 1}, "unsupported format version 1"),
        ({"magic": 0xDEADBEEF}, "bad magic 0xdeadbeef"),
        ({"magic": 0xEDDA0CED}, "big-endian"),
        ({"page_size": 16}, "implausible page size 16"),
    ],
)
def test_both_metas_bad(change: dict[str, int], message: str) -> None:
    data = set_meta(set_meta(FIXTURE, 0, **change), 1, **change)
    assert message in error_of(data)


# ----------------------------------------------------------------------------------------------- damaged files


def test_not_a_bolt_file() -> None:
    assert "only 5 bytes" in error_of(b"hello")
    assert "both meta pages are damaged" in error_of(b"\0" * 8192)


@pytest.mark.parametrize("size", [0, 100, 4096, 4096 + 100, 8192, 16384, 20000, 6 * PS - 1])
def test_truncated_weave_file(size: int) -> None:
    msg = error_of(WEAVE[:size])
    assert any(w in msg for w in ("truncated", "only", "damaged", "no valid meta")), msg


def test_pages_above_the_high_water_mark_are_not_needed() -> None:
    assert parse(WEAVE[: 6 * PS], "w").root == parse(WEAVE, "w").root  # bolt grows files ahead of use


def test_truncated_fixture_says_so() -> None:
    assert "truncated: transaction 5 uses 19 pages of 4096 bytes but the file has 40960 bytes" in error_of(
        FIXTURE[: 10 * PS]
    )


def test_page_faults() -> None:
    root = 2  # the Weave file's root leaf page (meta 1, txid 39)
    assert "page 2 says it is page 9" in error_of(patch(WEAVE, root * PS, struct.pack("<Q", 9)))
    assert "refers to page 2 of type freelist, not a branch or leaf page" in error_of(
        patch(WEAVE, root * PS + 8, struct.pack("<H", bolt.FREELIST))
    )
    assert "unknown type 0x0003" in error_of(patch(WEAVE, root * PS + 8, struct.pack("<H", 3)))
    assert "elements do not fit" in error_of(patch(WEAVE, root * PS + 10, struct.pack("<H", 300)))
    assert "overflows (9 pages) past the high-water mark 6" in error_of(
        patch(WEAVE, root * PS + 12, struct.pack("<I", 9))
    )
    # the root bucket at a meta page, beyond the high-water mark
    assert "outside the data pages 2 to 5" in error_of(set_meta(WEAVE, 1, root=1))
    assert "outside the data pages 2 to 5" in error_of(set_meta(WEAVE, 1, root=6))


def test_element_faults() -> None:
    elem = 2 * PS + 16  # the Weave file's root page, element 0 ("top", an inline bucket)
    assert "element 0 points past the end of its page" in error_of(patch(WEAVE, elem + 4, struct.pack("<I", 5000)))
    assert "element 0 points past the end of its page" in error_of(patch(WEAVE, elem + 12, struct.pack("<I", 9000)))
    assert "bucket header is 3 bytes" in error_of(patch(WEAVE, elem + 12, struct.pack("<I", 3)))
    assert "inline bucket too short" in error_of(patch(WEAVE, elem + 12, struct.pack("<I", 20)))
    pos, ksize = struct.unpack_from("<II", WEAVE, elem + 4)
    inline = elem + pos + ksize + 16  # the inline page inside the value
    assert "inline bucket page has type 0x0001" in error_of(patch(WEAVE, inline + 8, struct.pack("<H", 1)))


def test_a_branch_page_that_loops_is_refused() -> None:
    branch = next(p for p, h in enumerate(page_headers(FIXTURE)) if h[1] == bolt.BRANCH and p >= 16)
    # point the branch's first child at the branch itself
    msg = error_of(patch(FIXTURE, branch * PS + 16 + 8, struct.pack("<Q", branch)))
    assert f"refers to page {branch}, which is already in use elsewhere in the tree" in msg


def _inline(values: dict[bytes, bytes], sub: dict[bytes, bytes]) -> bytes:
    """An inline bucket value: header (root 0) then a leaf page of plain values and sub-bucket values."""
    items = [(0, k, v) for k, v in values.items()] + [(1, k, v) for k, v in sub.items()]
    head = struct.pack("<QHHI", 0, bolt.LEAF, len(items), 0)
    elems, body = b"", b""
    for i, (flag, k, v) in enumerate(items):
        pos = 16 * (len(items) - i) + len(body)
        elems += struct.pack("<IIII", flag, pos, len(k), len(v))
        body += k + v
    return struct.pack("<QQ", 0, 0) + head + elems + body


def _file_with_top(top: bytes) -> bytes:
    """Weave's file with its whole root page replaced by one leaf holding bucket ``top`` = ``top``."""
    page = struct.pack("<QHHI", 2, bolt.LEAF, 1, 0) + struct.pack("<IIII", 1, 16, 3, len(top)) + b"top" + top
    return patch(WEAVE, 2 * PS, page + b"\0" * (PS - len(page)))


def test_nesting_is_bounded() -> None:
    value = _inline({b"k": b"v"}, {})
    for _ in range(bolt.MAX_NESTING - 1):
        value = _inline({}, {b"n": value})
    assert parse(_file_with_top(value), "w").root.bucket(b"top", *[b"n"] * (bolt.MAX_NESTING - 1)) is not None
    assert "nested deeper than 64" in error_of(_file_with_top(_inline({}, {b"n": value})))


def test_duplicate_keys_are_refused() -> None:
    assert "key b'a' appears twice" in error_of(_file_with_top(_inline({b"a": b"1"}, {b"a": _inline({}, {})})))


# ---------------------------------------------------------------------------------------------------- fuzzing

_SOURCES = st.sampled_from([(WEAVE, 6), (FIXTURE, 19)])  # and the pages in use
_KINDS = st.sampled_from(["byte"] * 4 + ["word"] * 4 + ["cut", "delete"])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A file with a few bytes or words overwritten (mostly in the pages in use), cut short or with a piece
    taken out; sometimes with its meta checksums made valid again so the damage reaches the tree."""
    source, used = draw(_SOURCES)
    data = bytearray(source)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(_KINDS)
        at = draw(st.integers(0, min(len(data), used * PS) - 1))
        if kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "word":  # an offset, size, count or page number of the structures
            width = draw(st.sampled_from([2, 4, 8]))
            value = draw(st.one_of(st.integers(0, 64), st.integers(0, (1 << (8 * width)) - 1)))
            data[at : at + width] = value.to_bytes(width, "little")[: len(data) - at]
        elif kind == "cut":
            del data[at:]
        else:
            data[at : at + draw(st.integers(1, 4096))] = b""
        if not data:
            break
    out = bytes(data)
    if draw(st.booleans()) and len(out) >= 2 * PS:  # keep the metas valid so the damage reaches the tree
        for page in (0, 1):
            if struct.unpack_from("<I", out, page * PS + 16)[0] == bolt.MAGIC:
                out = set_meta(out, page)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_damaged_files_give_a_bolt_error_or_a_tree(data: bytes) -> None:
    """Never a crash: a tree, or one BoltError line naming the file."""
    try:
        db = parse(data, "fuzz.db")
    except BoltError as e:
        assert str(e).startswith("fuzz.db: ") and "\n" not in str(e)
    else:
        assert isinstance(db.root, Bucket)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=10000))
def test_fuzz_random_bytes(data: bytes) -> None:
    with pytest.raises(BoltError):
        parse(data, "random")
