"""Simulated hosts on one machine (see ``bed.py``)."""

from weavenet.testbed.bed import Container, Host, Testbed, TestbedBusy, TestbedError, cleanup_stale

__all__ = ["Container", "Host", "Testbed", "TestbedBusy", "TestbedError", "cleanup_stale"]
