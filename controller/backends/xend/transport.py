"""Talking HTTP to one xend: its address, a session, and xend's ways of saying no.

URIs: ``xend+http://host:port`` or ``http://host:port`` (port 8000 if left out), and
``xend+unix:///path/to/socket``. The keys ``username`` and ``password`` of the host's credentials
(a Secret's, never the URI's: the resource model refuses a password there) are sent as HTTP basic
auth and never shown: every message names the xend by ``Endpoint.shown``, which has neither.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import aiohttp

from controller.api.enums import Reason
from controller.backends.protocol import BackendError, Credentials
from controller.backends.xend import sxp

DEFAULT_PORT = 8000
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
# xend answers op=migrate only when the migration is over; that may take hours.
NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10)


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # where requests go; "http://localhost" over a unix socket
    socket: str | None
    shown: str  # for messages: no user, no password
    auth: str | None = field(default=None, repr=False)  # an Authorization header

    @property
    def key(self) -> tuple[str, str | None]:
        return self.base_url, self.socket


def parse_uri(uri: str, credentials: Credentials | None = None) -> Endpoint:
    parsed = urlsplit(uri)
    scheme = parsed.scheme.lower()
    user = credentials.get("username") if credentials else None
    password = credentials.get("password") if credentials else None
    try:
        port = parsed.port
    except ValueError as exc:
        raise BackendError(f"not a xend URI: {_without_userinfo(uri)} ({exc})", Reason.InvalidSpec) from None
    auth = aiohttp.encode_basic_auth(user, password or "") if user else None
    if scheme == "xend+unix":
        if not parsed.path:
            raise BackendError("a xend+unix URI needs a socket path: xend+unix:///path/to/socket", Reason.InvalidSpec)
        return Endpoint("http://localhost", parsed.path, f"xend+unix://{parsed.path}", auth)
    if scheme in ("http", "xend+http"):
        if not parsed.hostname:
            raise BackendError(f"a xend URI needs a host: {_without_userinfo(uri)}", Reason.InvalidSpec)
        host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
        base = f"http://{host}:{port or DEFAULT_PORT}"
        return Endpoint(base, None, base, auth)
    raise BackendError(
        f"not a xend URI: {_without_userinfo(uri)} (expected xend+http://host:port, http://host:port or"
        " xend+unix:///path)",
        Reason.InvalidSpec,
    )


def _without_userinfo(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


class ConnectionLost(BackendError):
    """The request may have reached xend, but no answer came back: what xend did is unknown."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Reason.HostUnreachable)


class XendClient:
    """One session to one xend, shared by every connection the driver opens to it."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self.endpoint.socket is not None:
                connector = aiohttp.UnixConnector(path=self.endpoint.socket)
            else:
                connector = aiohttp.TCPConnector()
            headers = {"Authorization": self.endpoint.auth} if self.endpoint.auth else None
            self._session = aiohttp.ClientSession(base_url=self.endpoint.base_url, connector=connector, headers=headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, path: str, detail: bool = True) -> tuple[int, str]:
        params = {"detail": "1"} if detail else None
        return await self._request("GET", path, params=params)

    async def post(self, path: str, form: Mapping[str, str], wait: bool = False) -> tuple[int, str]:
        return await self._request("POST", path, data=dict(form), limits=NO_TIMEOUT if wait else DEFAULT_TIMEOUT)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        limits: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    ) -> tuple[int, str]:
        shown = self.endpoint.shown
        try:
            async with self._open().request(method, path, params=params, data=data, timeout=limits) as reply:
                return reply.status, await reply.text(errors="replace")
        except aiohttp.ClientConnectorError as exc:
            # asyncio words its own strerror ("Connect call failed ..."); the system's says why.
            errno = exc.os_error.errno
            why = os.strerror(errno) if errno else exc.os_error.strerror or str(exc)
            raise BackendError(f"cannot reach xend at {shown}: {why}", Reason.HostUnreachable) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            raise ConnectionLost(f"lost the connection to xend at {shown}: {exc}") from None
        except TimeoutError:
            raise ConnectionLost(f"xend at {shown} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"xend at {shown}: {type(exc).__name__}: {exc}") from None


def domain_path(name: str) -> str:
    return "/xend/domain/" + quote(name, safe="")


class XendSaidNo(BackendError):
    """xend answered, and its answer was an error; ``xend_message`` is its own words."""

    def __init__(self, message: str, xend_message: str, reason: Reason | None = None) -> None:
        super().__init__(message, reason)
        self.xend_message = xend_message


def check(status: int, body: str, what: str, missing: str | None = None) -> None:
    """libvirt's xend_req(): an error is >= 300, 202 saying "failed", or xend.err in a 2xx body."""
    if status == 404 and missing is not None:
        raise XendSaidNo(missing, missing, Reason.DomainNotFound)
    error = sxp.error_text(body) if "xend.err" in body else None
    said: str | None = None
    if status >= 300:
        said = error or _plain(body) or f"HTTP {status}"
    elif status == 202 and "failed" in body:
        said = error or _plain(body)
    elif error is not None:
        said = error
    if said is not None:
        raise XendSaidNo(f"{what}: {said}", said)


def _plain(body: str) -> str:
    text = " ".join(body.split())
    return text[:300]
