"""The DaemonSet's init container (Weave 2.8's ``prog/weave-kube/init.sh``): the host made ready for the router
and the CNI plugins installed on it.

* With network policy expected (``EXPECT_NPC`` not ``0``): ``br_netfilter`` loaded (an error is fine when it is
  built in), and nftables checked, since weavenet polices with nftables where Weave needed ``xt_set``;
* bridged traffic through netfilter (``net.bridge.bridge-nf-call-iptables=1``: kube-proxy needs it too);
* the runtime copied to the host when the image names one (``WEAVENET_RUNTIME``, e.g. ``/opt/weavenet``: the
  interpreter and the package, copied to the same path under ``HOST_ROOT``, so the plugin kubelet runs on the
  host finds them where the image has them), then ``weave setup-cni`` with Weave's places under ``HOST_ROOT``
  (``/opt/cni/bin``, or ``/home/kubernetes/bin`` where ``/opt`` cannot be written, as on GCI) and
  ``HAIRPIN_MODE``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from weavenet.errors import ConfigError

log = logging.getLogger("weavenet.kube")

BRIDGE_NF = "/proc/sys/net/bridge/bridge-nf-call-iptables"
VERSION_FILE = ".weavenet-version"


def modprobe(module: str) -> None:
    if shutil.which("modprobe") is None:
        log.info('modprobe is not installed: "%s" must be built in or loaded', module)
        return
    res = subprocess.run(["modprobe", module], capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        log.info('Ignore the error if "%s" is built-in in the kernel: %s', module, res.stderr.strip())


def check_nftables() -> None:
    res = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise ConfigError(f"nftables does not work here, so network policy cannot be enforced: {res.stderr.strip()}")


def bridge_nf() -> None:
    try:
        value = Path(BRIDGE_NF).read_text().strip()
    except OSError:
        log.warning(
            "Cannot detect bridge-nf support - network policy and iptables mode kubeproxy may not work reliably"
        )
        return
    if value != "1":
        Path(BRIDGE_NF).write_text("1\n")


def copy_runtime(runtime: str, host_root: str) -> None:
    """The image's runtime at the same path on the host, replaced whole when its version differs."""
    import weavenet

    src = Path(runtime)
    dst = Path(host_root.rstrip("/") + "/" + runtime.lstrip("/"))
    if dst.resolve() == src.resolve():
        return
    version = f"{weavenet.__version__} {weavenet.WEAVE_COMPAT_VERSION}\n"
    marker = dst / VERSION_FILE
    if marker.is_file() and marker.read_text() == version:
        return
    tmp = dst.with_name(dst.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=True)
    (tmp / VERSION_FILE).write_text(version)
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
    log.info("copied %s to the host (%s)", runtime, dst)


def init(env: Mapping[str, str], state_dir: str) -> list[str]:
    """Everything of the module docstring; returns what ``setup-cni`` wrote."""
    from weavenet.cni import install

    if env.get("EXPECT_NPC", "") != "0":
        modprobe("br_netfilter")
        check_nftables()
    bridge_nf()
    host_root = env.get("HOST_ROOT") or "/host"
    env = {**env, "HOST_ROOT": host_root}
    if env.get("WEAVENET_RUNTIME"):
        copy_runtime(env["WEAVENET_RUNTIME"], host_root)
    if not env.get("WEAVE_CNI_PLUGIN_DIR"):
        try:
            os.makedirs(f"{host_root}/opt/cni/bin", exist_ok=True)
        except OSError:
            try:
                os.makedirs(f"{host_root}/home/kubernetes/bin", exist_ok=True)
            except OSError as e:
                raise ConfigError("Failed to install the Weave CNI plugin") from e
            env["WEAVE_CNI_PLUGIN_DIR"] = f"{host_root}/home/kubernetes/bin"
    os.makedirs(f"{host_root}/etc/cni/net.d", exist_ok=True)
    return install.setup(env, state_dir)
