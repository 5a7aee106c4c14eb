"""Who may use the console: the Host check for every request, token and same origin for actions.

The console listens on 127.0.0.1, but any web page the user opens can still send requests
there. So:

- every request must name a local host (or the one `--host` allowed) in `Host`, which
  also defeats DNS rebinding (evil.example resolving to 127.0.0.1 keeps its own name);
- every POST must carry the start-up token, in the `X-Ddcicd-Token` header or in the
  cookie set by opening the printed `/?token=...` URL (SameSite=Strict, HttpOnly);
- a POST with an `Origin` must come from the console's own origin; one without an Origin
  (curl, scripts) must send the token in the header, which a browser form cannot do.
"""
from __future__ import annotations

import hmac
import secrets
from typing import Awaitable, Callable

from aiohttp import web

TOKEN_HEADER = "X-Ddcicd-Token"
TOKEN_COOKIE = "ddcicd_token"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if ":" in host_header else host_header


def _matches(token: str, candidate: str | None) -> bool:
    return candidate is not None and hmac.compare_digest(token.encode(), candidate.encode())


def has_token(request: web.Request, token: str) -> bool:
    return _matches(token, request.headers.get(TOKEN_HEADER)) or _matches(token, request.cookies.get(TOKEN_COOKIE))


def guard(token: str, extra_hosts: frozenset[str] = frozenset()) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """aiohttp middleware enforcing the rules in the module docstring."""
    allowed = LOCAL_HOSTS | extra_hosts

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if _hostname(host) not in allowed:
            raise web.HTTPForbidden(text=f"refused: Host {host!r} is not this console's address")
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"http://{host}":
                raise web.HTTPForbidden(text=f"refused: cross-origin request from {origin!r}")
            if origin is None and not _matches(token, request.headers.get(TOKEN_HEADER)):
                raise web.HTTPForbidden(text=f"refused: a request without Origin must send the {TOKEN_HEADER} header")
            if not has_token(request, token):
                raise web.HTTPForbidden(text="refused: missing or wrong token; open the URL `ddcicd console` printed")
        elif "token" in request.query:
            if not _matches(token, request.query["token"]):
                raise web.HTTPForbidden(text="refused: wrong token; open the URL `ddcicd console` printed")
            rest = {key: value for key, value in request.query.items() if key != "token"}
            response = web.HTTPFound(request.rel_url.with_query(rest))
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
            raise response
        return await handler(request)

    return middleware
