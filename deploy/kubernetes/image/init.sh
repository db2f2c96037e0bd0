#!/bin/sh
# The DaemonSet's init container (Weave 2.8's /home/weave/init.sh): the host made ready, the CNI plugins installed
exec /opt/weavenet/venv/bin/python3 -m weavenet.kube init "$@"
