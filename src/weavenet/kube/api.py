"""The Kubernetes API as Kubernetes mode uses it, through lightkube (see docs/kubernetes.md for the choice).

:class:`KubeAPI` wraps an asynchronous lightkube client made from the pod's service account (its token, which
lightkube reads again when it is rotated, its CA certificate and ``KUBERNETES_SERVICE_HOST``/``_PORT``) and
offers the few calls Weave's ``kube-utils`` makes: the node list, the ConfigMap ``kube-system/weave-net`` (get,
create, replace with optimistic locking), the node's ``NetworkUnavailable`` condition, the server's version.
Every failure, whatever lightkube or the transport raised (an HTTP error, a connection refused, a body that is
not JSON or not the object asked for), comes out as one :class:`KubeError` whose message is one line and whose
``code`` is the HTTP status (0 when there was no answer), so callers decide on ``code`` alone: 404 absent, 409
a conflict, 410 a resource version too old.

:class:`Reflector` is the list+watch loop (client-go's reflector): list, hand the whole set over, watch from the
list's ``resourceVersion``, hand each event over; a ``410 Gone`` (in the answer or as an ``ERROR`` event) lists
again at once; any other failure is logged, counted and retried after a back-off that doubles up to a limit,
reset once a list succeeds. It never raises: a bad answer costs a retry, never the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from weavenet.errors import ConfigError, WeavenetError
from weavenet.kube.peers import FIELD_MANAGER

if TYPE_CHECKING:
    from lightkube import AsyncClient
    from lightkube.config.kubeconfig import KubeConfig, SingleConfig

log = logging.getLogger("weavenet.kube")

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
TIMEOUT = 10.0  # every request but a watch's stream
WATCH_TIMEOUT = (300, 600)  # a watch is ended by the server after this many seconds (random), then resumed
BACKOFF = (1.0, 30.0)


class KubeError(WeavenetError):
    """A call to the API failed: ``code`` is the HTTP status, 0 when no answer came (or none that made sense)."""

    def __init__(self, message: str, code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


def _one_line(text: object) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= 300 else s[:297] + "..."


def as_kube_error(doing: str, e: BaseException) -> KubeError:
    """Whatever a lightkube call raised, as one :class:`KubeError` (see the module docstring)."""
    if isinstance(e, KubeError):
        return e
    from lightkube import ApiError

    if isinstance(e, ApiError):
        st = e.status
        code = int(getattr(st, "code", 0) or (e.response.status_code if e.response is not None else 0))
        message = getattr(st, "message", "") or str(e)
        return KubeError(f"{doing}: {code} {_one_line(message)}", code, str(getattr(st, "reason", "") or ""))
    response = getattr(e, "response", None)
    code = int(getattr(response, "status_code", 0) or 0)
    what = type(e).__name__
    detail = _one_line(e) or what
    if code:
        phrase = str(getattr(response, "reason_phrase", "") or "")
        return KubeError(f"{doing}: HTTP {code} {phrase}".rstrip(), code)
    return KubeError(f"{doing}: {what}: {detail}" if detail != what else f"{doing}: {what}", 0)


def in_cluster_config(service_account: str = SERVICE_ACCOUNT) -> KubeConfig:
    """The pod's service account as lightkube's configuration; ``ConfigError`` outside a pod."""
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.core.exceptions import ConfigError as LightkubeConfigError

    for var in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        if not os.environ.get(var):
            raise ConfigError(f"not running in a Kubernetes pod: {var} is not set")
    try:
        return KubeConfig.from_service_account(service_account)
    except (LightkubeConfigError, OSError) as e:
        raise ConfigError(f"the pod's service account in {service_account} cannot be read: {e}") from e


class KubeAPI:
    """The calls Kubernetes mode makes (see the module docstring)."""

    def __init__(self, config: KubeConfig | SingleConfig, timeout: float = TIMEOUT) -> None:
        import httpx2
        from lightkube import AsyncClient

        self.client: AsyncClient = AsyncClient(
            config, timeout=httpx2.Timeout(timeout), field_manager=FIELD_MANAGER, lazy=False
        )
        self.calls = 0
        self.failures = 0

    @classmethod
    def in_cluster(cls, service_account: str = SERVICE_ACCOUNT) -> KubeAPI:
        return cls(in_cluster_config(service_account))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()

    async def call(self, doing: str, make: Callable[[], Any]) -> Any:
        """``await make()``, counted; any failure as a :class:`KubeError`."""
        self.calls += 1
        try:
            return await make()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.failures += 1
            raise as_kube_error(doing, e) from e

    # -- nodes ----------------------------------------------------------------------------------------------------

    async def nodes(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """Every node's name and its ``status.addresses`` as (type, address)."""
        from lightkube.resources.core_v1 import Node

        async def listing() -> list[Any]:
            return [n async for n in self.client.list(Node)]

        return [node_addresses(n) for n in await self.call("listing the nodes", listing)]

    async def set_network_available(self, node: str, now: float | None = None) -> None:
        """Weave's ``setNodeNetworkUnavailableFalse``: a strategic merge patch of the node's status conditions
        (merged by type), with Weave's reason and message."""
        from lightkube.resources.core_v1 import Node
        from lightkube.types import PatchType

        patch = {"status": {"conditions": [network_available_condition(time.time() if now is None else now)]}}
        await self.call(
            f"setting NetworkUnavailable=false on node {node}",
            lambda: self.client.patch(Node.Status, node, patch, patch_type=PatchType.STRATEGIC),
        )

    # -- the ConfigMap --------------------------------------------------------------------------------------------

    async def get_configmap(self, namespace: str, name: str) -> Any | None:
        """The ConfigMap, or None if there is none."""
        from lightkube.resources.core_v1 import ConfigMap

        try:
            return await self.call(
                f"reading ConfigMap {namespace}/{name}", lambda: self.client.get(ConfigMap, name, namespace=namespace)
            )
        except KubeError as e:
            if e.code == 404:
                return None
            raise

    async def create_configmap(self, namespace: str, name: str) -> Any:
        """Create it empty (``KubeError`` 409 if another writer was first)."""
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import ConfigMap

        cm = ConfigMap(metadata=ObjectMeta(name=name, namespace=namespace))
        return await self.call(f"creating ConfigMap {namespace}/{name}", lambda: self.client.create(cm))

    async def replace_configmap(self, cm: Any, annotations: dict[str, str]) -> Any:
        """``PUT`` it with these annotations at the ``resourceVersion`` it was read at: ``KubeError`` 409 if it
        changed since. Returns the server's copy."""
        meta = cm.metadata
        meta.annotations = dict(annotations)
        return await self.call(
            f"writing ConfigMap {meta.namespace}/{meta.name}",
            lambda: self.client.replace(cm, meta.name, namespace=meta.namespace),
        )


def node_addresses(node: Any) -> tuple[str, list[tuple[str, str]]]:
    status = getattr(node, "status", None)
    addresses = getattr(status, "addresses", None) or []
    return node.metadata.name, [(a.type, a.address) for a in addresses]


def network_available_condition(now: float) -> dict[str, str]:
    """Weave's condition, field for field (``kube-utils``' nodestatus.go)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return {
        "type": "NetworkUnavailable",
        "status": "False",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
        "reason": "WeaveIsUp",
        "message": "Weave pod has set this",
    }


# -- list + watch -----------------------------------------------------------------------------------------------------


@dataclass
class WatchStats:
    """What a reflector saw (``weave status``, the tests): lists, events, relists after 410, errors by kind."""

    lists: int = 0
    events: int = 0
    relists: int = 0
    errors: int = 0
    last_error: str = ""
    synced: bool = False
    by_code: dict[int, int] = field(default_factory=dict)


class Reflector:
    """List+watch of one resource (see the module docstring). ``on_list(objects)`` gets the whole set after each
    list, ``on_event(type, object)`` each ``ADDED``/``MODIFIED``/``DELETED`` after it; both are plain callbacks
    (an exception in one is logged and counted, and the resource is listed again)."""

    def __init__(
        self,
        api: KubeAPI,
        resource: Any,
        on_list: Callable[[list[Any]], None],
        on_event: Callable[[str, Any], None],
        *,
        name: str = "",
        backoff: tuple[float, float] = BACKOFF,
        watch_timeout: tuple[int, int] = WATCH_TIMEOUT,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.resource = resource
        self.on_list = on_list
        self.on_event = on_event
        self.name = name or getattr(resource, "__name__", str(resource))
        self.backoff = backoff
        self.watch_timeout = watch_timeout
        self.rng = rng or random.Random()
        self.stats = WatchStats()
        self.synced = asyncio.Event()
        self._delay = backoff[0]

    async def run(self) -> None:
        while True:
            try:
                version = await self._list()
                self._delay = self.backoff[0]
                await self._watch(version)
            except asyncio.CancelledError:
                raise
            except KubeError as e:
                if e.code == 410:
                    self.stats.relists += 1
                    log.info("kubernetes: %s; listing again", e)
                    continue
                await self._failed(e)
            except Exception as e:  # a callback failed: the same as an answer we could not use
                await self._failed(as_kube_error(f"handling {self.name}", e))

    async def _failed(self, e: KubeError) -> None:
        st = self.stats
        st.errors += 1
        st.by_code[e.code] = st.by_code.get(e.code, 0) + 1
        st.last_error = str(e)
        delay = self._delay * (0.5 + self.rng.random() / 2)
        log.warning("kubernetes: %s (retrying in %.1fs)", e, delay)
        self._delay = min(self._delay * 2, self.backoff[1])
        await asyncio.sleep(delay)

    def _scope(self) -> dict[str, str]:
        """Namespaced resources in every namespace (lightkube would take the service account's alone)."""
        from lightkube.core.resource import NamespacedResource

        return {"namespace": "*"} if issubclass(self.resource, NamespacedResource) else {}

    async def _list(self) -> str:
        client: Any = self.api.client  # the resource is chosen at run time: no overload of list() fits
        listing = client.list(self.resource, **self._scope())

        async def run() -> list[Any]:
            return [o async for o in listing]

        objects = await self.api.call(f"listing {self.name}", run)
        version = listing.resourceVersion
        self.stats.lists += 1
        self.on_list(objects)
        self.stats.synced = True
        self.synced.set()
        return str(version)

    async def _watch(self, version: str) -> None:
        timeout = self.rng.randint(*self.watch_timeout)
        client: Any = self.api.client
        stream = client.watch(self.resource, resource_version=version, server_timeout=timeout, **self._scope())
        it = stream.__aiter__()
        doing = f"watching {self.name}"
        while True:
            self.api.calls += 1
            try:
                kind, obj = await it.__anext__()
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.api.failures += 1
                raise as_kube_error(doing, e) from e
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # BOOKMARK: nothing changed
            self.stats.events += 1
            self.on_event(kind, obj)
