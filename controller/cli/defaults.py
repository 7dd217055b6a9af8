"""The embedded default: two test hosts and one live migration, for `domig demo`."""

DEMO_HOSTS = """
apiVersion: domig.dev/v1alpha1
kind: HypervisorHost
metadata: {name: host-a}
spec:
  driver: test
  uri: test:///default
  test:
    linkMiBps: 1000
    domains:
      - {name: web, memoryMiB: 4096, dirtyRateMiBps: 150}
---
apiVersion: domig.dev/v1alpha1
kind: HypervisorHost
metadata: {name: host-b}
spec:
  driver: test
  uri: test:///default
  test: {linkMiBps: 1000}
"""

DEMO_MIGRATION = """
apiVersion: domig.dev/v1alpha1
kind: DomainMigration
metadata: {name: web-to-b}
spec:
  domain: web
  source: host-a
  destination: host-b
  flags: [live, persistDest, undefineSource]
  params: {bandwidth: 800, downtime: 300}
"""
