"""Kubernetes mode: what Weave 2.8's DaemonSet ran (``weave-kube`` and ``weave-npc``), as weavenet's.

* ``peers`` (pure): the ConfigMap ``kube-system/weave-net`` and its annotations, in the exact format Weave's
  ``kube-utils`` reads and writes, and the decisions of its reclaim protocol; the node list as peer addresses.
* ``plan`` (pure): the pod's environment (Weave's ``launch.sh`` variables) as the router's command line.
* ``api``: the Kubernetes API through lightkube (in-cluster service account), and its list+watch loop.
* ``reclaim``: the reclaim protocol over the API, taking over removed nodes' address ranges with the router's
  ``rmpeer``.
* ``launch``, ``init``: the DaemonSet's router container and its init container (``python -m weavenet.kube``).

Only this package imports lightkube (the ``kube`` extra): ``weave launch`` never loads it.
"""
