"""A tiny upstream resolver for tests: a few fixed names over UDP and TCP, nothing else.

    python -m tests.integration.dns_upstream --listen 127.0.0.1:5353 --name external.test.=198.51.100.7

Tests point weaveDNS at this (inside a namespace they made), never at a real resolver. ``big.test.`` has 40 TXT
records, so over UDP without EDNS its answer is truncated (TC) and the full one needs TCP. Every query received
is counted in ``queries`` (printed on SIGTERM with ``--count-file``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from dnslib import QTYPE, RCODE, RR, TXT, A, DNSRecord

BIG = "big.test."


class Upstream:
    def __init__(self, names: dict[str, str]) -> None:
        self.names = {k.lower(): v for k, v in names.items()}
        self.queries = 0

    def answer(self, data: bytes, tcp: bool) -> bytes | None:
        self.queries += 1
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return None
        reply = req.reply()
        qname = str(req.q.qname).lower()
        if qname == BIG and req.q.qtype == QTYPE.TXT:
            for i in range(40):
                reply.add_answer(RR(req.q.qname, QTYPE.TXT, rdata=TXT(f"record {i:02d} " + "x" * 30), ttl=60))
        elif qname in self.names and req.q.qtype == QTYPE.A:
            reply.add_answer(RR(req.q.qname, QTYPE.A, rdata=A(self.names[qname]), ttl=60))
        elif qname not in self.names:
            reply.header.rcode = RCODE.NXDOMAIN
        out = bytes(reply.pack())
        if not tcp and len(out) > 512:
            reply.rr = []
            reply.header.tc = 1
            out = bytes(reply.pack())
        return out


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.up.answer(data, False)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def serve(up: Upstream, host: str, port: int) -> tuple[asyncio.DatagramTransport, asyncio.Server, int]:
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(lambda: _UDP(up), local_addr=(host, port))
    bound = udp.get_extra_info("sockname")[1]

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                n = int.from_bytes(await reader.readexactly(2), "big")
                out = up.answer(await reader.readexactly(n), True)
                if out is None:
                    break
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()

    tcp = await asyncio.start_server(client, host, bound)
    return udp, tcp, bound


async def _main(args: argparse.Namespace) -> None:
    names = dict(n.split("=", 1) for n in args.name)
    host, _, port = args.listen.rpartition(":")
    up = Upstream(names)
    udp, tcp, bound = await serve(up, host, int(port))
    print(f"listening {host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    udp.close()
    tcp.close()
    if args.count_file:
        with open(args.count_file, "w") as f:
            f.write(f"{up.queries}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--name", action="append", default=[], help="NAME=IPv4 (repeatable)")
    ap.add_argument("--count-file")
    asyncio.run(_main(ap.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
