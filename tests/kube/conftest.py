"""
Fixtures for tests against the emulated Kubernetes API (see the ``emulator`` package).

* ``kube_crds`` -- the CRD files to register (override it in a module/class to change).
* ``kube`` -- a fresh :class:`ApiServer` per test; ``kube_module`` -- one per module.
  Both fail the test at teardown if the emulator had internal (5xx) errors.
* ``kopf_operator`` -- a factory of in-process kopf operators (stopped at teardown)::

      async def test_it(kube, kopf_operator):
          op = await kopf_operator('tests/kube/fixtures/toy_operator.py', memo=kopf.Memo(name='A'))

* ``kopf_subprocess`` -- a factory of ``kopf run`` subprocesses (killed at teardown)::

      def test_it(kube, kopf_subprocess):
          proc = kopf_subprocess(FIXTURES / 'toy_operator.py', peering='x', priority=100)
          proc.kill()  # SIGKILL by default
"""

import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from .emulator import FIXTURES, ApiServer, HandlersSource, KopfOperator, KopfSubprocess

TOY_CRD = FIXTURES / "toy-crd.yaml"
TOY_OPERATOR = FIXTURES / "toy_operator.py"


def _check_health(api: ApiServer) -> None:
    errors = api.server_errors
    if errors:
        pytest.fail(f"The emulated API server had internal errors: {errors!r}")


@pytest.fixture(scope="module")
def kube_crds() -> list[pathlib.Path]:
    """CRD files for the ``kube``/``kube_module`` fixtures (kopf's peering CRDs are always added)."""
    return [TOY_CRD]


@pytest.fixture()
def kube(kube_crds: list[pathlib.Path]) -> Iterator[ApiServer]:
    with ApiServer(crds=kube_crds) as api:
        yield api
        _check_health(api)


@pytest.fixture(scope="module")
def kube_module(kube_crds: list[pathlib.Path]) -> Iterator[ApiServer]:
    with ApiServer(crds=kube_crds) as api:
        yield api
        _check_health(api)


KopfOperatorFactory = Callable[..., Awaitable[KopfOperator]]
KopfSubprocessFactory = Callable[..., KopfSubprocess]


@pytest.fixture()
async def kopf_operator(kube: ApiServer) -> AsyncIterator[KopfOperatorFactory]:
    """Start in-process operators against ``kube``: ``await kopf_operator(handlers, **kwargs)``."""
    operators: list[KopfOperator] = []

    async def factory(handlers: HandlersSource = TOY_OPERATOR, **kwargs: Any) -> KopfOperator:
        operator = KopfOperator(kube, handlers, **kwargs)
        operators.append(operator)
        return await operator.start()

    yield factory
    for operator in reversed(operators):
        await operator.stop()


@pytest.fixture()
def kopf_subprocess(kube: ApiServer) -> Iterator[KopfSubprocessFactory]:
    """Start ``kopf run`` subprocesses against ``kube``: ``kopf_subprocess(path, peering=..., ...)``."""
    processes: list[KopfSubprocess] = []

    def factory(handlers: str | pathlib.Path = TOY_OPERATOR, **kwargs: Any) -> KopfSubprocess:
        process = KopfSubprocess(kube, handlers, **kwargs)
        processes.append(process)
        return process.start()

    yield factory
    for process in processes:
        process.__exit__(None, None, None)
