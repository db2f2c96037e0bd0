"""Weave's connection status list (``weave status connections``), computed from the router core."""

from __future__ import annotations

from typing import TYPE_CHECKING

from weavenet.core.sleeve_cipher import SECRETBOX
from weavenet.gocompat import go_time_string

if TYPE_CHECKING:
    from weavenet.core.router import MeshRouter

INBOUND_FAILURE_TTL = 300.0


def connection_status(self: MeshRouter) -> list[dict[str, object]]:
    """Weave's ``LocalConnectionStatus`` list: our connections, then targets not connected."""
    out: list[dict[str, object]] = []
    for conn in self.by_peer.values():
        best = conn.best_forwarder()
        attrs: dict[str, object] | None = dict(best.attrs()) if best is not None else None
        if attrs is not None and conn.established:
            fallback = self.fallback_reason(conn, self._now)
            if fallback is not None:
                attrs["fallback"] = fallback  # rendered after the other attributes: "(fallback: ...)"
        name = attrs.get("name", "none") if attrs else "none"
        info = f"{name!s:<6} {conn.remote}"
        if self.config.password is not None:
            if conn.untrusted:
                info = f"{'encrypted':<11} {info}"
                if attrs is not None:
                    attrs["encrypted"] = True
                    cipher = self.fast_sleeve_cipher(conn)
                    if attrs.get("name") == "sleeve" and cipher != SECRETBOX:
                        attrs["cipher"] = cipher  # weavenet's fast sleeve seals with a faster AEAD than Weave's
            else:
                info = f"{'unencrypted':<11} {info}"
        state = "established" if conn.established else "pending"
        out.append(
            {
                "Address": conn.remote_tcp_addr,
                "Outbound": conn.outbound,
                "State": state,
                "Info": info,
                "Attrs": attrs,
            }
        )
    for address, target in self.maker.targets.items():
        st = target.state.value
        if st == "waiting":
            until = "never" if target.try_after is None else go_time_string(target.try_after + self.wall_offset)
            if target.last_error is None:
                out.append(_target_status(address, "waiting", "until: " + until))
            else:
                out.append(_target_status(address, "failed", f"{target.last_error}, retry: {until}"))
        elif st == "attempting":
            if target.last_error is None:
                out.append(_target_status(address, "connecting", ""))
            else:
                out.append(_target_status(address, "retrying", target.last_error))
    now = self._now
    for failure in self.inbound_failures:
        if now - failure.at < INBOUND_FAILURE_TTL:
            out.append(
                {
                    "Address": failure.address,
                    "Outbound": False,
                    "State": "failed",
                    "Info": failure.error,
                    "Attrs": None,
                }
            )
    return out


def _target_status(address: str, state: str, info: str) -> dict[str, object]:
    return {"Address": address, "Outbound": True, "State": state, "Info": info, "Attrs": None}
