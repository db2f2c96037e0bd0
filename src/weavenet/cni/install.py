"""``weave setup-cni`` (and ``weave setup``): install the plugins and Weave's network configuration; ``weave reset``
removes what was installed, and nothing else.

As Weave 2.8's script: one executable, ``weave-plugin-<version>`` in the plugin directory (``/opt/cni/bin``,
``$WEAVE_CNI_PLUGIN_DIR``, under ``$HOST_ROOT``), and ``weave-net`` and ``weave-ipam`` as symbolic links to it,
each replaced atomically (a legacy copy in their place is removed first); the legacy ``10-weave.conf`` is removed;
``10-weave.conflist`` is written, with ``hairpinMode`` from ``$HAIRPIN_MODE`` (default true), only if the
configuration directory (``/etc/cni/net.d``, ``$WEAVE_CNI_CONF_DIR``) exists and has none: an administrator's
own file, or Weave's, is left alone. A directory given explicitly is created.

The executable is a small Python script, not a zipapp: its first line is the absolute path of the interpreter that
runs weavenet (``-I -S``: no environment variables, user or site directories consulted), and it puts the installed
``weavenet`` package first on its path. So it runs the very code the router and the ``weave`` command run (an
upgrade takes effect at once, no second copy goes stale) without the cost of ``site`` and of unpacking a zip at
each pod. The script runs :mod:`.client`, which hands the execution to the router's CNI service (the plugin's
modules loaded already) or runs the plugin itself when there is none. What was installed is recorded in
``cni-setup.json`` in the state directory, which ``weave reset`` reads: it removes the links only if they still
lead to our executable, the executable only if it is ours, the conflist only if it is still the one written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import weavenet
from weavenet.cni import IPAM, NET
from weavenet.errors import ConfigError

CONFLIST = "10-weave.conflist"
LEGACY_CONF = "10-weave.conf"
RECORD = "cni-setup.json"
MARKER = "# weavenet CNI plugin"
CONFLIST_TEXT = """{
    "cniVersion": "0.3.0",
    "name": "weave",
    "plugins": [
        {
            "name": "weave",
            "type": "weave-net",
            "hairpinMode": %s
        },
        {
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true
        }
    ]
}
"""


def plugin_file_name() -> str:
    """Weave's ``weave-plugin-<version>``, with the version ``weave version`` prints (2.8.1+weavenet.<ours>)."""
    return f"weave-plugin-{weavenet.WEAVE_COMPAT_VERSION}+weavenet.{weavenet.__version__}"


@dataclass(frozen=True, slots=True)
class Places:
    plugin_dir: Path
    conf_dir: Path
    conf_dir_given: bool


def places(env: Mapping[str, str], plugin_dir: str | None = None, conf_dir: str | None = None) -> Places:
    """Where to install: options, then Weave's variables, then Weave's defaults under ``$HOST_ROOT``."""
    root = env.get("HOST_ROOT", "")
    pdir = plugin_dir or env.get("WEAVE_CNI_PLUGIN_DIR") or f"{root}/opt/cni/bin"
    cdir = conf_dir or env.get("WEAVE_CNI_CONF_DIR")
    return Places(Path(pdir), Path(cdir or f"{root}/etc/cni/net.d"), bool(cdir))


def hairpin_mode(env: Mapping[str, str]) -> str:
    value = env.get("HAIRPIN_MODE", "true").strip().lower() or "true"
    if value not in ("true", "false"):
        raise ConfigError(f"HAIRPIN_MODE must be true or false, not {env['HAIRPIN_MODE']!r}")
    return value


def script(python: str | None = None) -> str:
    """The executable's text: the interpreter, the package's location, the entry."""
    root = str(Path(weavenet.__file__).resolve().parent.parent)
    python = python or sys.executable
    if not python or any(c.isspace() for c in python) or len(python) > 200:
        raise ConfigError(f"weave setup-cni: the interpreter's path {python!r} cannot be a script's #! line")
    return (
        f"#!{python} -IS\n"
        f"{MARKER} ({NET}, {IPAM}: links to this file), written by 'weave setup-cni'\n"
        "import sys\n"
        f"sys.path.insert(0, {root!r})\n"
        "from weavenet.cni.client import main\n"
        "main()\n"
    )


def _write_atomically(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _link(directory: Path, name: str, target: str) -> None:
    """``name`` -> ``target`` atomically (a temporary link renamed over it), as Weave's script does."""
    path = directory / name
    if path.exists() and not path.is_symlink():  # a legacy copy of the plugin
        path.unlink()
    if path.is_symlink() and os.readlink(path) == target:
        return
    tmp = directory / f"{name}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def setup(
    env: Mapping[str, str], state_dir: str, plugin_dir: str | None = None, conf_dir: str | None = None
) -> list[str]:
    """Install; returns what was written (for the command to print)."""
    where = places(env, plugin_dir, conf_dir)
    hairpin = hairpin_mode(env)
    text = script()
    done: list[str] = []
    try:
        where.plugin_dir.mkdir(parents=True, exist_ok=True)
        exe = where.plugin_dir / plugin_file_name()
        if not exe.exists() or exe.read_text(errors="replace") != text:
            _write_atomically(exe, text, 0o755)
            done.append(str(exe))
        for name in (NET, IPAM):
            _link(where.plugin_dir, name, exe.name)
        conflist = None
        with contextlib.suppress(FileNotFoundError):
            (where.conf_dir / LEGACY_CONF).unlink()
        if where.conf_dir_given:
            where.conf_dir.mkdir(parents=True, exist_ok=True)
        if where.conf_dir.is_dir() and not (where.conf_dir / CONFLIST).exists():
            conflist = where.conf_dir / CONFLIST
            _write_atomically(conflist, CONFLIST_TEXT % hairpin, 0o644)
            done.append(str(conflist))
    except OSError as e:
        raise ConfigError(f"weave setup-cni: {e.filename}: {e.strerror}") from e
    _remember(state_dir, exe, [where.plugin_dir / NET, where.plugin_dir / IPAM], conflist)
    return done


def _record_path(state_dir: str) -> Path:
    return Path(state_dir) / RECORD


def _installs(state_dir: str) -> list[dict[str, object]]:
    try:
        data = json.loads(_record_path(state_dir).read_text())
    except (OSError, ValueError):
        return []
    return [e for e in data.get("installed", []) if isinstance(e, dict)] if isinstance(data, dict) else []


def _remember(state_dir: str, exe: Path, links: list[Path], conflist: Path | None) -> None:
    entries = [e for e in _installs(state_dir) if e.get("plugin") != str(exe)]
    old = next((e for e in _installs(state_dir) if e.get("plugin") == str(exe)), {})
    entry: dict[str, object] = {"plugin": str(exe), "links": [str(p) for p in links]}
    if conflist is not None:
        entry["conflist"], entry["conflist_sha256"] = str(conflist), _sha(conflist)
    elif old.get("conflist"):  # written by an earlier setup-cni: still ours
        entry["conflist"], entry["conflist_sha256"] = old["conflist"], old.get("conflist_sha256")
    entries.append(entry)
    try:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        _write_atomically(_record_path(state_dir), json.dumps({"installed": entries}, indent=1) + "\n", 0o644)
    except OSError as e:
        raise ConfigError(f"weave setup-cni: recording what was installed in {state_dir}: {e.strerror}") from e


def remove(state_dir: str) -> list[str]:
    """Remove what ``setup`` recorded and is still ours; returns the paths removed."""
    removed: list[str] = []
    for entry in _installs(state_dir):
        exe = Path(str(entry.get("plugin", "")))
        links = entry.get("links", [])
        for link in links if isinstance(links, list) else []:
            p = Path(str(link))
            if p.is_symlink() and os.readlink(p) == exe.name:
                p.unlink()
                removed.append(str(p))
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if exe.is_file() and MARKER in exe.read_text().splitlines()[1]:
                exe.unlink()
                removed.append(str(exe))
        conflist = entry.get("conflist")
        if isinstance(conflist, str):
            with contextlib.suppress(OSError):
                if _sha(Path(conflist)) == entry.get("conflist_sha256"):
                    Path(conflist).unlink()
                    removed.append(conflist)
    with contextlib.suppress(FileNotFoundError):
        _record_path(state_dir).unlink()
    return removed
