"""``python -m weavenet.daemon``: run the router in the foreground (``weave launch`` starts it detached)."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import sys

from weavenet.config import from_argv, logging_options
from weavenet.errors import ConfigError, WeavenetError


class _WeaveFormatter(logging.Formatter):
    """Weave's log line layout: ``INFO: 2016/04/06 12:30:00.123456 message``."""

    def format(self, record: logging.LogRecord) -> str:
        t = self.formatTime(record, "%Y/%m/%d %H:%M:%S")
        return f"{record.levelname}: {t}.{int((record.created % 1) * 1e6):06d} {record.getMessage()}" + (
            "\n" + self.formatException(record.exc_info) if record.exc_info else ""
        )


# The log file is rotated at this size, keeping one older file: at most about twice this in the runtime
# directory (a tmpfs on most hosts), whatever a client or a fault makes the router log.
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 1


class _RotatingLog(logging.handlers.RotatingFileHandler):
    """Rotates the log file; if stdout and stderr went to that file (``weave launch`` does that, so what
    Python itself prints lands there too), they follow it to the new file instead of growing the old one."""

    def __init__(self, path: str) -> None:
        super().__init__(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS)
        self._std_follow = [fd for fd in (1, 2) if _same_file(fd, path)]

    def doRollover(self) -> None:
        super().doRollover()
        if self.stream is not None:
            for fd in self._std_follow:
                os.dup2(self.stream.fileno(), fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def setup_logging(level: str, log_file: str | None) -> None:
    handler: logging.Handler = _RotatingLog(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(_WeaveFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warning": logging.WARNING}.get(level, getattr(logging, level.upper(), logging.INFO)))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def _amain(argv: list[str]) -> int:
    from weavenet.daemon.root import Weaver

    config = from_argv(argv)
    os.makedirs(config.run_dir, exist_ok=True)
    _profile_dumps()
    weaver = Weaver(config)  # a failure here has left nothing behind
    await weaver.start()  # a failure here is unwound: what the launch created is removed, and only that
    await weaver.run_until_stopped()
    return 0


PROFILE_DUMP_S = 10.0


def _profile_dumps() -> None:
    """With ``WEAVENET_PROFILE=DIR``, profile the daemon (cProfile) and write it to ``DIR/daemon-PID.prof``
    every 10 s: a router is often ended by a signal, and the bench reads the profile while routers idle."""
    where = os.environ.get("WEAVENET_PROFILE")
    if not where:
        return
    import cProfile

    os.makedirs(where, exist_ok=True)
    path = os.path.join(where, f"daemon-{os.getpid()}.prof")
    prof = cProfile.Profile()
    loop = asyncio.get_running_loop()

    def dump() -> None:
        prof.dump_stats(path)  # stops the profiler; it goes on below
        prof.enable()
        loop.call_later(PROFILE_DUMP_S, dump)

    prof.enable()
    loop.call_later(PROFILE_DUMP_S, dump)
    logging.getLogger("weavenet.daemon").info("profiling to %s", path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        setup_logging(*logging_options(args))
        logging.getLogger("weavenet.daemon").info("Command line options: %s", " ".join(args))
        return asyncio.run(_amain(args))
    except (ConfigError, WeavenetError) as e:
        logging.getLogger("weavenet.daemon").error("%s", e)
        print(f"weave: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
