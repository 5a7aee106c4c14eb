"""A page served by another HTTP server on another 127.0.0.1 port, in the same browser that
opened the console's token URL, can neither obtain the token nor make the console act.

Before: the token was a host-scoped cookie, and cookies ignore ports, so every request to the
other server carried `ddcicd_token`; the console could also be framed and clicked.
"""
from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "test-token-0123456789"  # conftest.TOKEN
ATTACKER_PAGE = b"""<!doctype html><html><head><title>another local service</title></head>
<body><h1>not the console</h1><iframe name="sink" id="sink"></iframe></body></html>"""


@dataclass
class Attacker:
    """Another web service on 127.0.0.1: it serves one page and records every request it gets."""

    url: str
    seen: list[dict[str, str]] = field(default_factory=list)

    def everything_received(self) -> str:
        return "\n".join(f"{name}: {value}" for request in self.seen for name, value in request.items())


@contextlib.contextmanager
def attacker_server() -> Iterator[Attacker]:
    attacker = Attacker("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            attacker.seen.append({"path": self.path, **dict(self.headers.items())})
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(ATTACKER_PAGE)))
            self.end_headers()
            self.wfile.write(ATTACKER_PAGE)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    attacker.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield attacker
    finally:
        server.shutdown()
        server.server_close()


ATTACK = """async ([consoleUrl, arn]) => {
  const results = {stored: sessionStorage.getItem("ddcicd-token"), cookies: document.cookie};
  const body = JSON.stringify({arn});
  async function attempt(name, url, options) {
    try { const response = await fetch(url, options); results[name] = `status ${response.status} type ${response.type}`; }
    catch (error) { results[name] = `blocked: ${error.name}`; }
  }
  await attempt("readSession", `${consoleUrl}/api/session`, {credentials: "include"});
  await attempt("jsonPost", `${consoleUrl}/api/redrive`, {method: "POST", credentials: "include", body,
                headers: {"Content-Type": "application/json"}});
  await attempt("guessedHeaderPost", `${consoleUrl}/api/redrive`, {method: "POST", credentials: "include", body,
                headers: {"Content-Type": "application/json", "X-Ddcicd-Token": "guess"}});
  await attempt("simplePost", `${consoleUrl}/api/redrive`, {method: "POST", mode: "no-cors", credentials: "include", body,
                headers: {"Content-Type": "text/plain"}});
  const form = document.createElement("form");  // a classic CSRF: a form posted into a frame
  Object.assign(form, {method: "POST", action: `${consoleUrl}/api/redrive`, target: "sink", enctype: "text/plain"});
  const field = document.createElement("input");
  Object.assign(field, {name: `{"arn": "${arn}", "x": "`, value: `"}`});
  form.append(field);
  document.body.append(form);
  form.submit();
  const frame = document.createElement("iframe");  // clickjacking needs the console in a frame
  frame.id = "framed";
  frame.src = `${consoleUrl}/`;
  document.body.append(frame);
  await new Promise((resolve) => { frame.onload = resolve; setTimeout(resolve, 5000); });
  await new Promise((resolve) => setTimeout(resolve, 500));
  try { results.framedDocument = frame.contentDocument ? frame.contentDocument.URL : null; }
  catch (error) { results.framedDocument = `no access: ${error.name}`; }
  return results;
}"""


def test_a_page_on_another_local_port_gets_no_token_and_cannot_act(setup: Any, console: str, fail: Any, page: Any) -> None:
    arn = fail("target")
    page.goto(f"{console}/?token={TOKEN}")
    page.wait_for_selector("#session >> text=actions enabled")
    assert page.url == f"{console}/"  # out of the address bar (and so out of history and bookmarks)
    assert page.evaluate("sessionStorage.getItem('ddcicd-token')") == TOKEN
    assert page.context.cookies() == []  # nothing a request to another port could carry
    page.reload()  # a reload of the console in its own tab keeps the actions
    page.wait_for_selector("#session >> text=actions enabled")

    with attacker_server() as attacker:
        page.evaluate("(url) => { location.href = url; }", f"{attacker.url}/followed-from-the-console")
        page.wait_for_selector("text=not the console")
        results = page.evaluate(ATTACK, [console, arn])
        framed = [frame for frame in page.frames if frame != page.main_frame and frame.name != "sink"]

        # The browser copies this tab's sessionStorage (the console's token too) into a window
        # the page opens: the console must not take a token it did not receive in this document.
        with page.expect_popup() as opened:
            page.evaluate("(url) => window.open(url)", f"{console}/#/execution/{arn}")
        popup = opened.value
        popup.wait_for_selector("#session >> text=read-only")
        popup.wait_for_selector("h1 >> text=target")
        assert popup.is_disabled("#redrive-button")
        assert popup.evaluate("sessionStorage.getItem('ddcicd-token')") is None
        popup.close()

    received = attacker.everything_received()
    assert TOKEN not in received, received
    assert not any("Cookie" in request for request in attacker.seen)
    followed = [request for request in attacker.seen if request["path"] == "/followed-from-the-console"]
    assert len(followed) == 1 and "Referer" not in followed[0]  # Referrer-Policy: no-referrer
    assert console not in received
    assert results["stored"] is None and results["cookies"] == ""
    assert results["readSession"].startswith("blocked")  # no CORS: the answer is unreadable
    assert results["jsonPost"].startswith("blocked")  # the preflight is refused
    assert results["guessedHeaderPost"].startswith("blocked")
    # sent blind (a "simple" request needs no preflight): the console answered 403, and the answer
    # is withheld from the page (Cross-Origin-Resource-Policy: same-origin makes fetch reject)
    assert results["simplePost"] in ("status 0 type opaque", "blocked: TypeError")
    assert len(framed) == 1 and not framed[0].url.startswith(console), framed[0].url  # X-Frame-Options: DENY
    assert results["framedDocument"] in (None, "about:blank") or results["framedDocument"].startswith(("no access", "chrome-error"))
    description = setup.engine.describe_execution(arn)
    assert description["status"] == "FAILED" and description["redriveCount"] == 0  # nothing acted


def test_back_to_the_console_keeps_its_actions_a_typed_url_does_not(setup: Any, console: str, page: Any) -> None:
    page.goto(f"{console}/?token={TOKEN}")
    page.wait_for_selector("#session >> text=actions enabled")
    with attacker_server() as attacker:
        page.goto(f"{attacker.url}/elsewhere")
        page.wait_for_selector("text=not the console")
        page.go_back()  # the user's own Back button
        page.wait_for_selector("#session >> text=actions enabled")
        page.goto(f"{attacker.url}/elsewhere")
    page.goto(f"{console}/")  # opening the console anew, without the token URL: read-only
    page.wait_for_selector("#session >> text=read-only")
