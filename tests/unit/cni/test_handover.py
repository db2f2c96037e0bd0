"""The hand-over of a plugin execution to the CNI service: the wire format (pure), and the executable against a
real service process in the calling process's namespaces.

The service runs here on an abstract socket of a name of its own per test; the router address is a unix socket
nobody listens on and the namespaces do not exist, so no execution gets as far as the router or a link (as in
``test_main.py``; ``tests/integration/test_cni.py`` runs them for real, handed over and not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from weavenet.cni import handover, install
from weavenet.cni.client import service_address
from weavenet.daemon.cni_service import command

CONF = json.dumps({"cniVersion": "1.0.0", "name": "weave", "type": "weave-net"}).encode()


# -- the wire format -----------------------------------------------------------------------------------------------


def test_a_request_round_trips() -> None:
    env = {b"CNI_COMMAND": b"ADD", b"CNI_ARGS": b"IgnoreUnknown=1;K8S_POD_NAME=a=b", b"EMPTY": b""}
    req = handover.decode(handover.encode(b"/opt/cni/bin/weave-net", env, 0o027))
    assert (req.argv0, req.env, req.umask) == (b"/opt/cni/bin/weave-net", env, 0o027)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not a weavenet CNI request"),
        (b"GET / HTTP/1.1\r\n", "not a weavenet CNI request"),
        (handover.MAGIC + b"22", "no executable name"),
        (handover.MAGIC + b"9\0weave-net", "bad umask"),
        (handover.MAGIC + b"7777\0weave-net", "bad umask"),
        (handover.MAGIC + b"22\0", "empty executable name"),
        (handover.MAGIC + b"22\0weave-net\0NOEQUALS", "bad environment entry"),
        (handover.MAGIC + b"22\0weave-net\0=value", "bad environment entry"),
    ],
)
def test_bad_requests_say_what_is_wrong(data: bytes, why: str) -> None:
    with pytest.raises(handover.BadRequest, match=why):
        handover.decode(data)


def test_replies() -> None:
    assert handover.parse_reply(handover.exit_reply(0)) == 0
    assert handover.parse_reply(handover.exit_reply(1)) == 1
    assert handover.parse_reply(handover.refused_reply("not root")) == "not root"
    for bad in (b"", b"exit x", b"exit 300", b"hello"):
        with pytest.raises(handover.BadRequest):
            handover.parse_reply(bad)


def test_service_addresses() -> None:
    assert service_address(b"@weavenet-cni") == b"\0weavenet-cni"
    assert service_address(b"/run/weave/cni.sock") == b"/run/weave/cni.sock"
    assert service_address(b"off") is None and service_address(b"") is None


# -- the executable and a real service ---------------------------------------------------------------------------------


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    exe = tmp_path / "bin" / "weave-net"
    exe.parent.mkdir()
    exe.write_text(install.script())
    exe.chmod(0o755)
    return exe


@pytest.fixture
def service() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A service as the router starts it: its pipe on standard input, its log on standard error."""
    name = f"@weavenet-cni-test-{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.Popen(command(name), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"listening\n"
    with proc:  # closes the pipes (the service ends with its standard input) and waits
        yield name, proc


def exec_plugin(
    exe: Path, tmp_path: Path, service: str, command: str = "ADD", **env: str
) -> subprocess.CompletedProcess[bytes]:
    full = {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c0ffee1234",
        "CNI_NETNS": str(tmp_path / "no-such-netns"),
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(tmp_path),
        "WEAVE_HTTP_ADDR": str(tmp_path / "no-router.sock"),
        "WEAVE_CNI_STATE_DIR": str(tmp_path / "cni-state"),
        "WEAVE_CNI_SERVICE": service,
        **env,
    }
    return subprocess.run([str(exe)], input=CONF, env=full, capture_output=True, timeout=60, cwd=tmp_path)


def test_a_handed_over_execution_answers_as_the_plugin(
    plugin: Path, tmp_path: Path, service: tuple[str, subprocess.Popen[bytes]]
) -> None:
    name, _ = service
    for cmd, code in (("VERSION", None), ("ADD", 4), ("BOGUS", 4)):
        here = exec_plugin(plugin, tmp_path, "off", cmd)
        there = exec_plugin(plugin, tmp_path, name, cmd)
        assert (there.returncode, there.stdout) == (here.returncode, here.stdout), cmd
        assert b"not handed" not in there.stderr and b"not handed" not in here.stderr
        if code is not None:
            assert json.loads(there.stdout)["code"] == code


def test_the_worker_takes_on_the_clients_environment(
    plugin: Path, tmp_path: Path, service: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """The message the ADD fails with names CNI_NETNS as this client's environment has it: the worker read it
    from the client, not from the service."""
    name, _ = service
    for i in range(3):
        path = tmp_path / f"not-a-netns-{i}"
        path.write_text("")
        res = exec_plugin(plugin, tmp_path, name, CNI_NETNS=str(path))
        assert json.loads(res.stdout)["msg"] == f"CNI_NETNS: {path} is not a network namespace", res.stderr


def test_nothing_listening_runs_the_plugin_here_and_says_why(plugin: Path, tmp_path: Path) -> None:
    res = exec_plugin(plugin, tmp_path, f"@weavenet-cni-test-nobody-{os.getpid()}")
    assert json.loads(res.stdout)["code"] == 4
    assert b"not handed to the CNI service at @weavenet-cni-test-nobody" in res.stderr
    assert b"Connection refused" in res.stderr


def test_off_runs_the_plugin_here_silently(plugin: Path, tmp_path: Path) -> None:
    res = exec_plugin(plugin, tmp_path, "off", "VERSION")
    assert res.returncode == 0 and res.stderr == b""


def test_only_root_may_hand_over(plugin: Path, tmp_path: Path, service: tuple[str, subprocess.Popen[bytes]]) -> None:
    """Another user is refused (the worker would act as root in namespaces of that user's choosing), and runs
    the plugin itself; the service counts and logs it."""
    name, proc = service
    with tempfile.TemporaryDirectory(prefix="wncni-") as where:  # one the other user can read
        os.chmod(where, 0o755)
        exe = Path(where) / "weave-net"
        exe.write_text(plugin.read_text())
        exe.chmod(0o755)
        res = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(exe)],
            input=CONF,
            env={"CNI_COMMAND": "VERSION", "WEAVE_CNI_SERVICE": name},
            capture_output=True,
            timeout=60,
        )
    assert res.returncode == 0 and json.loads(res.stdout)["cniVersion"] == "1.0.0"
    assert b"the service refused: the client runs as uid 65534, not root" in res.stderr
    proc.stdin.close()  # type: ignore[union-attr]
    assert proc.wait(10) == 0
    assert b"refused a request (1 so far): the client runs as uid 65534, not root" in proc.stderr.read()  # type: ignore[union-attr]


def test_root_without_its_capabilities_is_refused(
    plugin: Path, tmp_path: Path, service: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """Root in a container without CAP_SYS_ADMIN must not get it through the worker."""
    name, _ = service
    res = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", str(plugin)],
        input=CONF,
        env={"CNI_COMMAND": "VERSION", "WEAVE_CNI_SERVICE": name},
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 0 and b"the service refused: the client lacks CAP_SYS_ADMIN" in res.stderr


SQUATTER = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(b"\0" + sys.argv[1].encode()[1:])
s.listen(1)
print("listening", flush=True)
conn, _ = s.accept()
data, anc, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(64))
print(len(data), len(anc), flush=True)
"""


def test_a_name_taken_by_an_unprivileged_process_gets_nothing(plugin: Path, tmp_path: Path) -> None:
    """An abstract name is anyone's to take: the client gives its streams and namespaces only to root with
    CAP_SYS_ADMIN, and runs the plugin itself otherwise."""
    name = f"@weavenet-cni-test-squat-{os.getpid()}"
    squat = subprocess.Popen(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-c", SQUATTER, name],
        stdout=subprocess.PIPE,
    )
    with squat:
        assert squat.stdout is not None and squat.stdout.readline() == b"listening\n"
        res = exec_plugin(plugin, tmp_path, name, "VERSION")
        assert res.returncode == 0 and b"lacks CAP_SYS_ADMIN): running here" in res.stderr
        assert squat.stdout.read() == b"0 0\n"  # connected, then left: no request, no descriptors


def test_a_malformed_request_is_refused_and_the_service_goes_on(
    plugin: Path, tmp_path: Path, service: tuple[str, subprocess.Popen[bytes]]
) -> None:
    import socket

    name, proc = service
    for attach in (False, True):
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.connect(service_address(name.encode()))  # type: ignore[arg-type]
            fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(handover.N_FDS if attach else 0)]
            s.sendmsg(
                [b"hello"],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))]
                if fds
                else [],
            )
            for fd in fds:
                os.close(fd)
            reply = handover.parse_reply(s.recv(512))
        assert isinstance(reply, str) and ("descriptors" in reply or "not a weavenet CNI request" in reply)
    assert exec_plugin(plugin, tmp_path, name, "VERSION").returncode == 0
    assert proc.poll() is None


def test_a_client_that_says_nothing_holds_up_the_service_briefly(
    plugin: Path, tmp_path: Path, service: tuple[str, subprocess.Popen[bytes]]
) -> None:
    import socket

    name, _ = service
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as silent:
        silent.connect(service_address(name.encode()))  # type: ignore[arg-type]
        start = time.monotonic()
        assert exec_plugin(plugin, tmp_path, name, "VERSION").returncode == 0
        assert time.monotonic() - start < 30
        reply = handover.parse_reply(silent.recv(512))
    assert isinstance(reply, str) and "timed out" in reply


def test_the_service_ends_with_its_pipe(service: tuple[str, subprocess.Popen[bytes]]) -> None:
    _, proc = service
    proc.stdin.close()  # type: ignore[union-attr]
    assert proc.wait(10) == 0


def test_the_client_imports_only_built_in_modules_and_the_wire_format(tmp_path: Path) -> None:
    """What handing over costs each pod: no module from a file but the package's ``__init__`` and the format (and
    ``_socket``, built in or a C extension)."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(install.__file__).parents[2])!r}); before = set(sys.modules)\n"
        "from weavenet.cni import client\n"
        "print(sorted(m for m in set(sys.modules) - before if m not in sys.builtin_module_names))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(
        sorted(
            {"weavenet", "weavenet.cni", "weavenet.cni.client", "weavenet.cni.handover"}
            | ({"_socket"} - set(sys.builtin_module_names))
        )
    )
