"""
An emulated Kubernetes API server (built on kmock) and a harness to run kopf against it.

See :mod:`.emulator` for the server (:class:`.emulator.ApiServer`) and the kopf runners,
and ``conftest.py`` in this folder for the pytest fixtures.
"""
