"""The executable's entry: ``weave-net`` or ``weave-ipam`` by the name it was run as (Weave's one binary, two links).

Reads the request from the environment and the configuration from stdin, writes the result (or the spec's error
object) to stdout as JSON and exits 0 (or 1). Errors in the environment come first (code 4, as libcni's skeleton
checks them before the configuration), then the configuration's (6, 7, 1), then the command's own. Any other
exception is a bug: it is reported as error 999 with its one-line message, and its traceback goes to stderr,
which the runtime logs.

This module and those it imports use the standard library only: it runs once per pod and command.
"""

from __future__ import annotations

import os
import sys

from weavenet.cni import EXPOSE_IDENT, IPAM, NET, jsonc
from weavenet.cni.spec import (
    INTERNAL,
    IO_FAILURE,
    LATEST,
    SUPPORTED_VERSIONS,
    CniError,
    check_command_version,
    config_version,
    load_config,
    network_name,
    parse_env,
    version_result,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, BinaryIO


def plugin_name(argv0: str) -> str:
    return IPAM if os.path.basename(argv0).endswith(IPAM) else NET


def _reported_version(stdin: bytes) -> str:
    """The version to write errors in: the configuration's if it names one we speak, else the latest."""
    try:
        version = jsonc.loads(stdin.decode()).get("cniVersion") or "0.1.0"
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError, TypeError):
        return LATEST
    return version if version in SUPPORTED_VERSIONS else LATEST


def execute(plugin: str, env: Mapping[str, str], stdin: bytes) -> tuple[int, dict[str, Any] | None]:
    """(exit status, what to print) for one execution."""
    reported = _reported_version(stdin)
    try:
        req = parse_env(env, also_ids=(EXPOSE_IDENT,) if plugin == IPAM else ())
        if req.command == "VERSION":
            return 0, version_result(reported)
        conf = load_config(stdin)
        version = config_version(conf)
        check_command_version(req.command, version)
        name = network_name(conf)
        from weavenet.cni.plugin import Call, run

        return 0, run(Call(plugin, req, conf, version, name, stdin, env))
    except CniError as e:
        return 1, e.to_json(reported)
    except Exception as e:
        import traceback

        traceback.print_exc(file=sys.stderr)
        return 1, CniError(INTERNAL, f"internal error: {type(e).__name__}: {e}").to_json(reported)


def _read(stream: BinaryIO, command: str) -> bytes:
    if command == "VERSION" and stream.isatty():
        return b""
    return stream.read()


def respond(argv0: str, env: Mapping[str, str]) -> int:
    """One execution on this process's standard streams: reads the request, writes the answer; the exit status.
    The CNI service's worker (:mod:`.server`) calls it too, with the streams the client handed over."""
    plugin = plugin_name(argv0)
    if not env.get("CNI_COMMAND"):
        print(f"{plugin}: Weave Net's CNI plugin; CNI versions {', '.join(SUPPORTED_VERSIONS)}", file=sys.stderr)
    try:
        stdin = _read(sys.stdin.buffer, env.get("CNI_COMMAND", ""))
    except OSError as e:
        status, out = 1, CniError(IO_FAILURE, f"error reading from stdin: {e.strerror}").to_json(LATEST)
    else:
        status, out = execute(plugin, env, stdin)
    try:
        if out is not None:
            sys.stdout.write(jsonc.dumps(out, indent=4) + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # the runtime went away
        status = 1
    return status


def main(argv0: str | None = None) -> None:
    # everything is written and closed: the interpreter's finalization would only cost time
    os._exit(respond(argv0 or sys.argv[0], os.environ))


if __name__ == "__main__":
    main()
