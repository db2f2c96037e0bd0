"""weavenet: Weave Net rebuilt in Python.

One router per host joins all hosts into a single virtual Ethernet switch for containers. The package is split
by role: ``core`` holds pure protocol machines (no sockets, no clock reads), ``aio`` the asyncio adapters that
drive them, ``host`` the Linux side effects, ``daemon`` the composition root, ``api`` the HTTP routes and ``cli``
the ``weave`` command.
"""

__version__ = "0.1.0"
# The Weave Net release whose wire protocol and behaviour we reproduce.
WEAVE_COMPAT_VERSION = "2.8.1"
