"""Reading BoltDB / bbolt files, read-only: the key/value store Weave Net 2.8 kept its state in.

Only reading is needed (weavenet imports Weave's state once and keeps its own store), so this is a small parser
of the file format rather than a database: bytes in, a tree of buckets out, nothing written, no locks taken.

The format (bolt's file format version 2, as written by ``github.com/boltdb/bolt`` and ``go.etcd.io/bbolt``;
integers are the writer's native byte order, little-endian on every platform Weave Net shipped for):

* The file is an array of pages of ``page_size`` bytes; page *n* starts at ``n * page_size``. Every page starts
  with a 16-byte header: ``id u64, flags u16, count u16, overflow u32``. A page with ``overflow`` *k* spans
  *k* + 1 pages (a value bigger than a page). Flags: ``0x01`` branch, ``0x02`` leaf, ``0x04`` meta,
  ``0x10`` freelist.
* Pages 0 and 1 are meta pages. The meta (64 bytes after the header) is ``magic u32 = 0xED0CDAED, version u32 =
  2, page_size u32, flags u32, root bucket (root u64, sequence u64), freelist u64, pgid u64, txid u64,
  checksum u64``, the checksum being FNV-1a 64 of the 56 bytes before it. ``pgid`` is the high-water mark: no
  page at or above it is in use. Writers alternate between the two meta pages, so a reader takes the valid meta
  with the higher txid, and a torn write of one meta leaves the previous transaction readable. The page size is
  learned from meta 0, or, if meta 0 is damaged, by looking for meta 1 at 1 KiB << i (as bbolt does).
* Branch page: ``count`` elements ``pos u32, ksize u32, pgid u64``; leaf page: ``count`` elements ``flags u32,
  pos u32, ksize u32, vsize u32``. Element *i* sits at 16 + 16 *i* in the page; its key starts ``pos`` bytes
  after the element itself, and a leaf's value follows its key.
* A leaf element with flag ``0x01`` is a bucket: its value is ``root u64, sequence u64``; root 0 means an
  *inline* bucket, whose (leaf) page follows those 16 bytes inside the value. The meta's root bucket is the
  bucket of top-level buckets.
* The freelist only matters to writers and is not read.

Only meta pages carry a checksum, so every offset, size and page number read from the file is checked before
use; each page may be reached once (a loop or a shared page is corruption), and nesting is bounded. Anything
wrong raises :class:`BoltError` naming the file and what is wrong, and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from weavenet.errors import WeavenetError

__all__ = ["BoltError", "BoltFile", "Bucket", "parse"]

MAGIC = 0xED0CDAED
VERSION = 2
PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
META = struct.Struct("<IIIIQQQQQQ")  # magic, version, page size, flags, root, sequence, freelist, pgid, txid, sum
ELEMENT_SIZE = 16
BRANCH_ELEMENT = struct.Struct("<IIQ")  # pos, ksize, pgid
LEAF_ELEMENT = struct.Struct("<IIII")  # flags, pos, ksize, vsize
BUCKET_HEADER = struct.Struct("<QQ")  # root, sequence
BRANCH, LEAF, META_PAGE, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_FLAG = 0x01
MIN_PAGE_SIZE = PAGE_HEADER.size + META.size
MAX_PAGE_SIZE = 1 << 24  # bbolt looks for the second meta up to 16 MiB
MAX_NESTING = 64  # buckets within buckets; Weave uses one level

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_PAGE_TYPES = {BRANCH: "branch", LEAF: "leaf", META_PAGE: "meta", FREELIST: "freelist"}


class BoltError(WeavenetError):
    """The file is not a readable bolt database; the message names the file and the fault."""


@dataclass(frozen=True)
class Bucket:
    """One bucket: its plain key/values and its sub-buckets, in the file's (sorted) key order."""

    values: dict[bytes, bytes] = field(default_factory=dict)
    buckets: dict[bytes, Bucket] = field(default_factory=dict)
    sequence: int = 0

    def bucket(self, *path: bytes) -> Bucket | None:
        """The sub-bucket at ``path`` (names at each level), or None."""
        b: Bucket | None = self
        for name in path:
            b = b.buckets.get(name) if b is not None else None
        return b


@dataclass(frozen=True)
class BoltFile:
    """A parsed file: the bucket of top-level buckets as of transaction ``txid``."""

    page_size: int
    txid: int
    meta_page: int  # 0 or 1: the meta page the tree was read from
    root: Bucket


def fnv1a64(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclass(frozen=True)
class _Meta:
    page_size: int
    root: int
    sequence: int
    pgid: int
    txid: int


def _meta_at(data: bytes, offset: int) -> _Meta | str:
    """The meta stored in the page at ``offset``, or why it is not valid."""
    start = offset + PAGE_HEADER.size
    if len(data) < start + META.size:
        return "missing (file too short)"
    magic, version, page_size, _flags, root, seq, _freelist, pgid, txid, checksum = META.unpack_from(data, start)
    if magic != MAGIC:
        if magic == int.from_bytes(MAGIC.to_bytes(4, "little"), "big"):
            return "written on a big-endian machine (not supported)"
        return f"bad magic {magic:#010x}"
    if version != VERSION:
        return f"unsupported format version {version}"
    if fnv1a64(data[start : start + META.size - 8]) != checksum:
        return "checksum mismatch"
    if not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE:
        return f"implausible page size {page_size}"
    return _Meta(page_size, root, seq, pgid, txid)


class _Reader:
    def __init__(self, data: bytes, name: str, page_size: int, pgid: int) -> None:
        self.data = data
        self.name = name
        self.page_size = page_size
        self.pgid = pgid
        self.seen: set[int] = set()

    def fail(self, what: str) -> BoltError:
        return BoltError(f"{self.name}: {what}")

    def page(self, pgid: int, where: str) -> tuple[int, int, memoryview]:
        """``(flags, count, bytes of the page and its overflow)`` of a branch or leaf page in the file."""
        if not 2 <= pgid < self.pgid:
            raise self.fail(f"{where} refers to page {pgid}, outside the data pages 2 to {self.pgid - 1}")
        if pgid in self.seen:
            raise self.fail(f"{where} refers to page {pgid}, which is already in use elsewhere in the tree")
        self.seen.add(pgid)
        # ``parse`` checked that the file holds every page below the high-water mark, so this page is in it
        start = pgid * self.page_size
        pid, flags, count, overflow = PAGE_HEADER.unpack_from(self.data, start)
        if pid != pgid:
            raise self.fail(f"page {pgid} says it is page {pid}")
        if pgid + overflow >= self.pgid:
            raise self.fail(f"page {pgid} overflows ({overflow} pages) past the high-water mark {self.pgid}")
        end = start + (overflow + 1) * self.page_size
        if flags not in (BRANCH, LEAF):
            kind = _PAGE_TYPES.get(flags, f"unknown type {flags:#06x}")
            raise self.fail(f"{where} refers to page {pgid} of type {kind}, not a branch or leaf page")
        return flags, count, memoryview(self.data)[start:end]

    def key_value(self, buf: memoryview, i: int, where: str) -> tuple[int, bytes, bytes]:
        """Leaf element ``i``: its flags, key and value."""
        elem = PAGE_HEADER.size + i * ELEMENT_SIZE
        flags, pos, ksize, vsize = LEAF_ELEMENT.unpack_from(buf, elem)
        k = elem + pos
        if k + ksize + vsize > len(buf):
            raise self.fail(f"{where}: element {i} points past the end of its page")
        return flags, bytes(buf[k : k + ksize]), bytes(buf[k + ksize : k + ksize + vsize])

    def elements(self, buf: memoryview, count: int, where: str) -> None:
        if PAGE_HEADER.size + count * ELEMENT_SIZE > len(buf):
            raise self.fail(f"{where}: {count} elements do not fit in the page")

    def bucket(self, root: int, sequence: int, inline: memoryview | None, where: str, depth: int) -> Bucket:
        if depth > MAX_NESTING:
            raise self.fail(f"{where}: buckets nested deeper than {MAX_NESTING}")
        out = Bucket(sequence=sequence)
        # depth-first over the bucket's B+tree, keeping key order; each page is visited once (see ``page``)
        stack: list[tuple[int, int, memoryview, str]] = []
        if inline is not None:
            _pid, flags, count, _overflow = PAGE_HEADER.unpack_from(inline, 0)
            if flags != LEAF:
                raise self.fail(f"{where}: inline bucket page has type {flags:#06x}, not leaf")
            stack.append((flags, count, inline, f"{where} (inline)"))
        else:
            stack.append((*self.page(root, where), f"{where} page {root}"))
        while stack:
            flags, count, buf, here = stack.pop()
            self.elements(buf, count, here)
            if flags == BRANCH:
                children = []
                for i in range(count):
                    elem = PAGE_HEADER.size + i * ELEMENT_SIZE
                    _pos, _ksize, child = BRANCH_ELEMENT.unpack_from(buf, elem)
                    children.append((*self.page(child, f"{here} element {i}"), f"{where} page {child}"))
                stack.extend(reversed(children))
                continue
            for i in range(count):
                eflags, key, value = self.key_value(buf, i, here)
                if key in out.values or key in out.buckets:
                    raise self.fail(f"{here}: key {key!r} appears twice")
                if not eflags & BUCKET_FLAG:
                    out.values[key] = value
                    continue
                sub = f"{where}/{key.decode('utf-8', 'backslashreplace')}"
                if len(value) < BUCKET_HEADER.size:
                    raise self.fail(f"{sub}: bucket header is {len(value)} bytes, not {BUCKET_HEADER.size}")
                sub_root, sub_seq = BUCKET_HEADER.unpack_from(value, 0)
                sub_inline = None
                if sub_root == 0:
                    if len(value) < BUCKET_HEADER.size + PAGE_HEADER.size:
                        raise self.fail(f"{sub}: inline bucket too short ({len(value)} bytes)")
                    sub_inline = memoryview(value)[BUCKET_HEADER.size :]
                out.buckets[key] = self.bucket(sub_root, sub_seq, sub_inline, sub, depth + 1)
        return out


def _page_size(data: bytes, name: str) -> int:
    """Meta 0 tells the page size; if it is damaged, look for a valid meta 1 where bbolt would."""
    m0 = _meta_at(data, 0)
    if isinstance(m0, _Meta):
        return m0.page_size
    for i in range(15):
        offset = 1024 << i
        if offset >= len(data) - 1024:
            break
        m1 = _meta_at(data, offset)
        if isinstance(m1, _Meta) and m1.page_size == offset:
            return offset
    if len(data) < MIN_PAGE_SIZE:
        raise BoltError(f"{name}: not a bolt database: only {len(data)} bytes")
    raise BoltError(f"{name}: not a bolt database, or both meta pages are damaged (meta 0: {m0})")


def parse(data: bytes, name: str = "bolt file") -> BoltFile:
    """Read a whole bolt file from ``data``; ``name`` (the path) goes into every error message."""
    page_size = _page_size(data, name)
    metas = [_meta_at(data, 0), _meta_at(data, page_size)]
    valid = [(m.txid, i, m) for i, m in enumerate(metas) if isinstance(m, _Meta) and m.page_size == page_size]
    if not valid:
        raise BoltError(f"{name}: no valid meta page (meta 0: {metas[0]}; meta 1: {metas[1]})")
    txid, index, meta = max(valid, key=lambda v: v[0])
    if meta.pgid < 3:
        raise BoltError(f"{name}: transaction {txid} uses {meta.pgid} pages: no room for any data page")
    if meta.pgid * page_size > len(data):
        raise BoltError(
            f"{name}: truncated: transaction {txid} uses {meta.pgid} pages of {page_size} bytes "
            f"but the file has {len(data)} bytes"
        )
    reader = _Reader(data, name, page_size, meta.pgid)
    root = reader.bucket(meta.root, meta.sequence, None, "root bucket", 0)
    return BoltFile(page_size=page_size, txid=txid, meta_page=index, root=root)
