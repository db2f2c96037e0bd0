"""``python -m weavenet.kube init | launch [router options] | npc [weave-npc options]``: the DaemonSet's
containers (the image's ``/home/weave/init.sh``, ``/home/weave/launch.sh`` and weave-npc's entry point run
these). Configured by the environment as Weave's were (``weavenet.kube.plan``); a bad setting or a failed step
is one line on stderr and exit status 1."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from weavenet.errors import WeavenetError

USAGE = "usage: python -m weavenet.kube init | launch [router options] | npc [weave-npc options]"


def _logging(level: str) -> None:
    from weavenet.daemon.__main__ import setup_logging

    setup_logging(level, None)
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore"):  # one line per API request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _init() -> int:
    from weavenet.kube.init import init

    for path in init(os.environ, os.environ.get("WEAVE_STATE_DIR") or "/var/lib/weave"):
        logging.getLogger("weavenet.kube").info("installed %s", path)
    return 0


def _launch(args: list[str]) -> int:
    from weavenet.config import logging_options
    from weavenet.kube.launch import launch_router
    from weavenet.kube.plan import from_env

    k = from_env(os.environ)
    _logging(logging_options([*k.extra_args, *args])[0])
    if not k.init_container:  # an older manifest without the init container: do its work first (Weave's script)
        _init()
    try:
        return asyncio.run(launch_router(os.environ, args))
    except KeyboardInterrupt:
        return 0


def _npc(args: list[str]) -> int:
    from weavenet.kube.npc import main

    return main(args)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("init", "launch", "npc"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if args[0] == "init":
            _logging("info")
            return _init()
        if args[0] == "launch":
            return _launch(args[1:])
        return _npc(args[1:])
    except WeavenetError as e:
        logging.getLogger("weavenet.kube").error("%s", e)
        print(f"weave: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
