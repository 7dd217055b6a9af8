"""Errors that xend reported to its HTTP clients."""

from __future__ import annotations


class XendError(Exception):
    """An operation failed: HTTP 500 with ``(xend.err '<message>')``."""


class XendInvalidDomain(XendError):
    """No domain by that name, id or uuid: HTTP 404."""


class ArgError(XendError):
    """A form field was missing, repeated, or not of its type (xend's Args.ArgError)."""


class VmError(XendError):
    """xend's VmError: a domain's name or configuration refused (XendDomainInfo._checkName)."""
