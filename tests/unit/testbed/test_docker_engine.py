"""Pure parts of the per-host Docker engine rig: the image's root filesystem, names and addresses."""

from __future__ import annotations

import io
import tarfile

import pytest

from weavenet.testbed import docker_engine


def test_bridge_addresses_differ_per_host_and_stay_in_range() -> None:
    assert docker_engine.bridge_cidr(1) == "172.18.1.1/24"
    assert docker_engine.bridge_cidr(2) != docker_engine.bridge_cidr(1)
    with pytest.raises(ValueError):
        docker_engine.bridge_cidr(0)


def test_cgroup_parent_names_cannot_match_another_prefix() -> None:
    assert docker_engine.cgroup_parent("wnt", "h1") == "wnt-h1-docker"
    # the cleanup pattern for prefix wnt must not take wnt2's engines
    assert not docker_engine._engine_cgroups("wntzzz-nonexistent")


@pytest.mark.skipif(docker_engine.busybox_path() is None, reason="needs busybox-static")
def test_rootfs_has_busybox_and_an_applet_link_for_the_shell_and_tools() -> None:
    busybox = docker_engine.busybox_path()
    assert busybox is not None
    data = docker_engine.rootfs_tar(busybox)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode & 0o111
    for applet in ("bin/sh", "bin/ping", "bin/cat", "bin/hostname"):
        assert members[applet].issym() and members[applet].linkname == "/bin/busybox"
    assert members["tmp"].mode == 0o1777
    assert "etc/passwd" in members
