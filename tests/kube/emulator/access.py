"""
SelfSubjectAccessReview (``kubectl auth can-i``): everything is allowed unless a test denies it.

The emulator has no RBAC; a test says what the caller may not do with :meth:`AccessReviews.deny`.
The request and response are the real ``authorization.k8s.io/v1`` shapes: the review comes back
(201) with ``status.allowed`` set, a ``reason`` when allowed, as the RBAC authorizer does.
"""

import copy
import dataclasses

import attrs
import kmock

from .errors import FieldCause, _invalid
from .typedefs import Body

GROUP, VERSION, PLURAL = "authorization.k8s.io", "v1", "selfsubjectaccessreviews"


@dataclasses.dataclass(frozen=True)
class Denial:
    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    namespace: str | None = None  # None: in every namespace and cluster-wide

    def covers(self, attributes: Body) -> bool:
        return (
            attributes.get("verb") == self.verb
            and attributes.get("resource") == self.resource
            and (attributes.get("group") or "") == self.group
            and (attributes.get("subresource") or "") == self.subresource
            and (self.namespace is None or (attributes.get("namespace") or "") == self.namespace)
        )


@attrs.define
class AccessReviews:
    denials: list[Denial] = attrs.field(factory=list)

    def deny(
        self, verb: str, resource: str, *, group: str = "", subresource: str = "", namespace: str | None = None
    ) -> None:
        self.denials.append(Denial(verb, resource, group, subresource, namespace))

    @staticmethod
    def matches(request: kmock.Request) -> bool:
        res = request.resource
        return (
            str(request.method.value).upper() == "POST"
            and res is not None
            and (res.group, res.version, res.plural) == (GROUP, VERSION, PLURAL)
            and request.name is None
        )

    async def serve(self, request: kmock.Request) -> kmock.Payload:
        review = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
        spec = review.get("spec") or {}
        attributes, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if (attributes is None) == (non_resource is None):
            cause = FieldCause(
                "FieldValueInvalid",
                "spec.resourceAttributes",
                'Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified',
            )
            raise _invalid("SelfSubjectAccessReview", GROUP, "", [cause])
        denied = attributes is not None and any(d.covers(attributes) for d in self.denials)
        status: Body = {"allowed": False} if denied else {"allowed": True, "reason": "emulator: no denial configured"}
        review.update({"apiVersion": f"{GROUP}/{VERSION}", "kind": "SelfSubjectAccessReview", "status": status})
        review["metadata"] = {"creationTimestamp": None}
        return kmock.Response(status=201, payload=review)
