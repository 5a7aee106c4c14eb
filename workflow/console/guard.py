"""Who may use the console: the Host check for every request, the token header and same
origin for actions, and the browser-side defences every response carries.

The console listens on 127.0.0.1, but any web page the user opens can still send requests
there, and so can every other local program. So:

- every request must name a local host (or one `--allow-host` allowed) in `Host`, which
  defeats DNS rebinding (evil.example resolving to 127.0.0.1 keeps its own name);
- every action (any method but GET/HEAD) must carry the start-up token in the
  `X-Ddcicd-Token` header. A custom header cannot be sent cross-origin without a CORS
  preflight, which the console never grants, so the header alone stops CSRF; a request
  whose `Origin` or `Sec-Fetch-Site` says it comes from another origin is refused too,
  and the body must be JSON;
- there is no cookie. Cookies ignore ports: a cookie for 127.0.0.1 goes to every web
  service on 127.0.0.1 (a notebook, a dev server, another user's listener), which could
  then replay it. `__Host-` cookies would pin it to the origin but need https, which a
  local console does not have. Instead the printed `/?token=...` URL serves the page, whose
  JavaScript moves the token into sessionStorage (per origin, so per port, and per tab),
  takes it out of the address bar and sends it as the header; no redirect, so the URL
  cannot be turned into an open redirect;
- every response forbids framing (clickjacking), MIME sniffing and the Referer header,
  and pages run only the console's own scripts (a Content-Security-Policy without
  'unsafe-inline'). Run reports are rendered from run data, so they get a sandboxing CSP:
  no script runs in them and they have an opaque origin, without the console's rights.
"""
from __future__ import annotations

import hmac
import json
import secrets
from typing import Awaitable, Callable

from aiohttp import web

TOKEN_HEADER = "X-Ddcicd-Token"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
REPORT_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"  # noqa: E501
REPORT_PATHS = frozenset({"/report"})
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    return secrets.token_urlsafe(24)


def refused(status: int, message: str) -> web.Response:
    """The console's error shape: {"error": message}, as JSON, for every 4xx."""
    return web.Response(text=json.dumps({"error": message}), status=status, content_type="application/json")


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if ":" in host_header else host_header


def _matches(token: str, candidate: str | None) -> bool:
    """Constant-time comparison; a header that is not valid UTF-8 (aiohttp keeps the raw
    bytes as surrogates) is simply a wrong token, not an encoding error."""
    if candidate is None:
        return False
    return hmac.compare_digest(token.encode(), candidate.encode("utf-8", "surrogateescape"))


def has_token(request: web.Request, token: str) -> bool:
    return _matches(token, request.headers.get(TOKEN_HEADER))


def _action_refusal(request: web.Request, token: str) -> web.Response | None:
    """Why an action request is refused, or None when it may go ahead."""
    host = request.headers.get("Host", "")
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"http://{host}":
        return refused(403, f"refused: cross-origin request from {origin!r}")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site != "same-origin":
        return refused(403, f"refused: the browser says this request comes from a {fetch_site} page")
    if not has_token(request, token):
        return refused(403, f"refused: missing or wrong token in the {TOKEN_HEADER} header; open the URL `ddcicd console` printed")
    if request.content_type != "application/json":
        return refused(415, f"refused: the body must be application/json, not {request.content_type!r}")
    return None


def guard(token: str, extra_hosts: frozenset[str] = frozenset()) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """aiohttp middleware enforcing the rules in the module docstring (except the response
    headers: `add_security_headers` sets those, on every response, errors included)."""
    allowed = LOCAL_HOSTS | extra_hosts

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if _hostname(host) not in allowed:
            return refused(403, f"refused: Host {host!r} is not this console's address")
        if not request.headers.get(TOKEN_HEADER, "").isascii():
            return refused(400, f"the {TOKEN_HEADER} header is not ASCII text")
        if request.method not in SAFE_METHODS:
            refusal = _action_refusal(request, token)
            if refusal is not None:
                return refusal
        elif "token" in request.query and not _matches(token, request.query["token"]):
            return refused(403, "refused: wrong token; open the URL `ddcicd console` printed")
        return await handler(request)

    return middleware


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: the headers in SECURITY_HEADERS and the page's or the
    report's Content-Security-Policy."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Content-Security-Policy"] = REPORT_POLICY if request.path in REPORT_PATHS else PAGE_POLICY
