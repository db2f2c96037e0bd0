"""The web view of the mesh: a page served by the router, live over server-sent events.

Every router knows the gossiped topology, the IPAM ring and the DNS entries of the whole cluster, so one page on
any host shows all of it: peers and their links (with this host's links in detail: state, datapath, encryption,
MTU, why a link is on the sleeve), throughput per connection from the datapath counters, the IPAM ring, DNS
entries, this host's containers and a timeline of what changed.

Modules: ``model`` (pure: the report and a few extras become one JSON-ready snapshot), ``events`` (pure: two
snapshots in a row become timeline entries), ``rates`` (pure: byte counters become throughput), ``hub`` (asyncio:
one snapshot per tick shared by every viewer, bounded queues, slow viewers dropped), ``static/`` (the page:
plain HTML, CSS and JavaScript, no build step, nothing fetched from elsewhere). The routes are in
:mod:`weavenet.api.ui_routes`; the daemon's side (what the router knows beyond its report) in
:mod:`weavenet.daemon.ui_source`.

The page and its event stream change nothing: they are GET routes over values the router builds anyway.
"""
