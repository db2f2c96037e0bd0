"""``weave setup-cni`` and what ``weave reset`` removes of it (``weavenet.cni.install``), in temporary directories."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from weavenet.cni import install
from weavenet.errors import ConfigError

WEAVE_28_CONFLIST = """{
    "cniVersion": "0.3.0",
    "name": "weave",
    "plugins": [
        {
            "name": "weave",
            "type": "weave-net",
            "hairpinMode": true
        },
        {
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true
        }
    ]
}
"""  # what Weave 2.8's script writes (create_cni_config), byte for byte


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tmp_path / "bin", tmp_path / "net.d", tmp_path / "state"


def setup(dirs: tuple[Path, Path, Path], env: dict[str, str] | None = None, **kw: str) -> list[str]:
    plugin_dir, conf_dir, state = dirs
    where = kw.get("plugin_dir", str(plugin_dir)), kw.get("conf_dir", str(conf_dir))
    return install.setup(env or {}, str(state), *where)


def test_installs_as_weaves_script(dirs: tuple[Path, Path, Path]) -> None:
    plugin_dir, conf_dir, _ = dirs
    written = setup(dirs)
    exe = plugin_dir / install.plugin_file_name()
    assert exe.name == f"weave-plugin-2.8.1+weavenet.{__import__('weavenet').__version__}"
    assert written == [str(exe), str(conf_dir / "10-weave.conflist")]
    assert os.access(exe, os.X_OK)
    for name in ("weave-net", "weave-ipam"):
        assert (plugin_dir / name).is_symlink() and os.readlink(plugin_dir / name) == exe.name
    assert (conf_dir / "10-weave.conflist").read_text() == WEAVE_28_CONFLIST
    assert setup(dirs) == []  # again: nothing to write, nothing changed


def test_the_executable_runs_the_installed_package(dirs: tuple[Path, Path, Path]) -> None:
    plugin_dir, _, _ = dirs
    setup(dirs)
    head = (plugin_dir / "weave-net").read_text().splitlines()[0]
    assert head.startswith("#!/") and head.endswith(" -IS")  # an absolute interpreter, no site, no environment
    res = subprocess.run([plugin_dir / "weave-ipam"], env={"CNI_COMMAND": "VERSION"}, input=b'{"cniVersion":"0.3.0"}',
                         capture_output=True, check=False)  # fmt: skip
    assert res.returncode == 0 and json.loads(res.stdout)["cniVersion"] == "0.3.0"


def test_an_existing_conflist_and_legacy_files(dirs: tuple[Path, Path, Path]) -> None:
    plugin_dir, conf_dir, state = dirs
    plugin_dir.mkdir()
    conf_dir.mkdir()
    (plugin_dir / "weave-net").write_text("a legacy copy of weaveutil")
    (plugin_dir / "weave-ipam").symlink_to("weave-plugin-2.8.1")  # Weave 2.8's link: replaced
    (conf_dir / "10-weave.conf").write_text("{}")  # Weave <= 2.4's file: removed, as Weave does
    (conf_dir / "10-weave.conflist").write_text("{mine}")
    setup(dirs)
    assert os.readlink(plugin_dir / "weave-net") == os.readlink(plugin_dir / "weave-ipam") == install.plugin_file_name()
    assert not (conf_dir / "10-weave.conf").exists() and (conf_dir / "10-weave.conflist").read_text() == "{mine}"
    install.remove(str(state))
    assert (conf_dir / "10-weave.conflist").read_text() == "{mine}"  # not ours: kept


def test_configuration_directory_and_hairpin_mode(tmp_path: Path, dirs: tuple[Path, Path, Path]) -> None:
    # Weave writes the conflist only where a CNI configuration directory exists; one named explicitly is made
    where = install.places({"HOST_ROOT": str(tmp_path / "host")})
    assert (where.plugin_dir, where.conf_dir, where.conf_dir_given) == (
        tmp_path / "host/opt/cni/bin", tmp_path / "host/etc/cni/net.d", False
    )  # fmt: skip
    env = {"HOST_ROOT": str(tmp_path / "host"), "HAIRPIN_MODE": "false"}
    assert install.setup(env, str(tmp_path / "st")) == [str(tmp_path / "host/opt/cni/bin" / install.plugin_file_name())]
    assert not (tmp_path / "host/etc/cni/net.d").exists()
    setup(dirs, env)
    assert '"hairpinMode": false' in (dirs[1] / "10-weave.conflist").read_text()
    where = install.places({"WEAVE_CNI_PLUGIN_DIR": "/p", "WEAVE_CNI_CONF_DIR": "/c"})
    assert (str(where.plugin_dir), str(where.conf_dir), where.conf_dir_given) == ("/p", "/c", True)
    with pytest.raises(ConfigError, match="HAIRPIN_MODE must be true or false"):
        setup(dirs, {"HAIRPIN_MODE": "sometimes"})


def test_an_interpreter_a_shebang_cannot_carry() -> None:
    with pytest.raises(ConfigError, match="cannot be a script's #! line"):
        install.script("/opt/my python/bin/python3")


def test_unwritable_places_are_one_line_errors(tmp_path: Path, dirs: tuple[Path, Path, Path]) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"weave setup-cni: .*file"):
        setup(dirs, plugin_dir=str(tmp_path / "file" / "bin"))


def test_reset_removes_only_what_is_still_ours(dirs: tuple[Path, Path, Path]) -> None:
    plugin_dir, conf_dir, state = dirs
    setup(dirs)
    assert (state / "cni-setup.json").is_file()
    removed = install.remove(str(state))
    assert sorted(Path(p).name for p in removed) == sorted(
        ["weave-net", "weave-ipam", install.plugin_file_name(), "10-weave.conflist"]
    )
    assert list(plugin_dir.iterdir()) == list(conf_dir.iterdir()) == []
    assert not (state / "cni-setup.json").exists()
    # changed since: the administrator's now
    setup(dirs)
    (conf_dir / "10-weave.conflist").write_text("{edited}")
    (plugin_dir / "weave-ipam").unlink()
    (plugin_dir / "weave-ipam").symlink_to("another-ipam")
    install.remove(str(state))
    assert sorted(p.name for p in plugin_dir.iterdir()) == ["weave-ipam"]
    assert (conf_dir / "10-weave.conflist").read_text() == "{edited}"
    assert install.remove(str(state)) == []  # nothing recorded: nothing removed
