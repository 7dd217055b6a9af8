"""Tests that run against two real libvirtd daemons (see tests/harness)."""
