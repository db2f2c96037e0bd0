#!/bin/sh
# The DaemonSet's router container (Weave 2.8's /home/weave/launch.sh): its environment is Weave's (IPALLOC_RANGE,
# CONN_LIMIT, EXPECT_NPC, EXTRA_ARGS, ...); the container's arguments go to the router
exec /opt/weavenet/venv/bin/python3 -m weavenet.kube launch "$@"
