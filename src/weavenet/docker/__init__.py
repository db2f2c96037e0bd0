"""Docker integration: the API proxy, the event watcher and the network plugin (Weave's proxy/ and plugin/).

Pure decision logic (``weave_cidr``, ``rewrite``, ``hostname``, ``hosts_file``, ``endpoints``) has no I/O; the
asyncio parts (``api``, ``proxy``, ``events``, ``attacher``, ``plugin``, ``service``) drive it.
"""
