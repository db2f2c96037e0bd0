#!/bin/sh
# The DaemonSet's policy controller (weave-npc's entry point): weave-npc's flags, from $EXTRA_ARGS and the
# container's arguments
# shellcheck disable=SC2086
exec /opt/weavenet/venv/bin/python3 -m weavenet.kube npc $EXTRA_ARGS "$@"
