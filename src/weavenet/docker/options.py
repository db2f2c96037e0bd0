"""What the daemon does with its Docker options (declared in ``weavenet.config.model``): the proxy's listen
endpoints and the TLS contexts of the proxy and of its connection to the engine."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

from weavenet.config import DockerOptions, tls_files
from weavenet.docker.endpoints import default_listen, parse_endpoint


def listen_endpoints(opts: DockerOptions, environ: Mapping[str, str]) -> list[str]:
    """``-H`` normalised; none given: Weave's default (TCP when ``DOCKER_CLIENT_HOST`` is, else the socket)."""
    if opts.listen:
        return [str(parse_endpoint(a)) for a in opts.listen]
    return [str(default_listen(environ.get("DOCKER_CLIENT_HOST", "")))]


def server_ssl(opts: DockerOptions) -> ssl.SSLContext | None:
    """TLS for the proxy's TCP listeners, as dockerd's: ``--tls`` serves it, ``--tlsverify`` also checks clients."""
    if not (opts.tls or opts.tlsverify):
        return None
    ca, cert, key = tls_files(opts, os.environ)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if opts.tlsverify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(ca)
    return ctx


def upstream_ssl(api: str) -> ssl.SSLContext | None:
    """TLS to a TCP engine the way the docker CLI does it: ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``."""
    if not api.startswith(("tcp://", "https://")) or not (
        os.environ.get("DOCKER_TLS_VERIFY") or api.startswith("https")
    ):
        return None
    base = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    ctx = ssl.create_default_context(cafile=os.path.join(base, "ca.pem"))
    ctx.load_cert_chain(os.path.join(base, "cert.pem"), os.path.join(base, "key.pem"))
    ctx.check_hostname = False
    return ctx
