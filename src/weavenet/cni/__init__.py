"""Weave's CNI plugins, ``weave-net`` and ``weave-ipam`` (Weave 2.8's ``plugin/net/cni.go`` and ``plugin/ipam``).

A container runtime (kubelet through containerd or CRI-O, podman's CNI backend) executes a plugin once per pod
and command, with the request in ``CNI_*`` environment variables and the network configuration on stdin; the
result or error goes to stdout as JSON. ``weave-net`` asks the router on this host for an address
(``/ip/<containerID>``, the same ring as ``weave attach``), gives the pod a veth on the ``weave`` bridge with that
address and a default route through the bridge, and releases the address on DEL. ``weave-ipam`` only allocates,
for other plugins to delegate to.

Start-up cost is paid per pod, so the executable (:mod:`weavenet.cni.client`) imports nothing but built-in
modules and the wire format (:mod:`.handover`) and hands its execution to the router's CNI service
(:mod:`.server`), a resident process with everything below loaded whose forked worker runs it; without one it
runs the plugin itself. The plugin's entry (:mod:`weavenet.cni.main`) imports only the standard library and
these modules: the protocol (:mod:`.spec`), the configuration (:mod:`.conf`), a small HTTP client for the router
(:mod:`.router`), the pod's link set-up with ``ip`` (:mod:`.link`) and the attachment records that GC works from
(:mod:`.records`). :mod:`.install` is ``weave setup-cni``'s side.
"""

NET = "weave-net"
IPAM = "weave-ipam"
EXPOSE_IDENT = "weave:expose"  # the bridge's own address in the ring, as `weave expose` allocates it
