"""API errors in kopf's terms: give up on what will be refused again, retry what may pass later."""

from __future__ import annotations

from collections.abc import Callable

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from controller.operator.kube import Kube, in_kopf_terms


@pytest.mark.parametrize(("status", "kind"), [(404, kopf.PermanentError), (422, kopf.PermanentError),
                                              (403, kopf.PermanentError), (409, kopf.TemporaryError),
                                              (500, kopf.TemporaryError), (503, kopf.TemporaryError)])  # fmt: skip
def test_the_status_decides(status: int, kind: type[Exception]) -> None:
    error = in_kopf_terms(ApiException(status=status, reason="x"), "the status of domainmigrations default/m")
    assert type(error) is kind
    assert "the status of domainmigrations default/m" in str(error)


def test_retry_after_is_honoured() -> None:
    exc = ApiException(status=429, reason="Too Many Requests")
    exc.headers = {"Retry-After": "7"}
    error = in_kopf_terms(exc, "x")
    assert isinstance(error, kopf.TemporaryError) and error.delay == 7.0


async def test_a_passing_trouble_is_asked_again_and_a_refusal_is_not() -> None:
    kube = Kube(client=None, pauses=(0, 0, 0))  # type: ignore[arg-type]  # no client is called here
    calls: list[int] = []

    def failing(statuses: list[int]) -> Callable[[], str]:
        def call() -> str:
            calls.append(1)
            if statuses:
                raise ApiException(status=statuses.pop(0), reason="x")
            return "done"

        return call

    assert await kube.call(failing([500, 503, 429])) == "done" and len(calls) == 4
    calls.clear()
    with pytest.raises(ApiException) as refused:
        await kube.call(failing([422]))
    assert refused.value.status == 422 and len(calls) == 1
    calls.clear()
    with pytest.raises(ApiException) as lasting:
        await kube.call(failing([500] * 10))
    assert lasting.value.status == 500 and len(calls) == 4  # the first try and one after each pause
