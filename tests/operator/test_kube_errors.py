"""API errors in kopf's terms: give up on what will be refused again, retry what may pass later."""

from __future__ import annotations

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from controller.operator.kube import in_kopf_terms


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
