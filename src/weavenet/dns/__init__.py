"""weaveDNS: names of containers, gossiped to every peer and answered over DNS on every host.

``entries``/``wire``/``nameserver`` hold the cluster's records and their gossip (pure), ``query`` decides answers
(pure), ``server`` runs it on UDP and TCP sockets and forwards the rest upstream (asyncio).
"""
