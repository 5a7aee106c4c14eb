"""The console's HTTP API on a real server: reads, actions, and who may act."""
from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import quote

from workflow.console.app import STATIC

TOKEN = "test-token-0123456789"  # conftest.TOKEN
Http = Callable[..., Any]


def test_lists_state_machines_and_executions(setup: Any, console: str, http: Http, fail: Callable[..., str]) -> None:
    arn = fail()
    machines = http(console, "GET", "/api/state-machines").json()
    by_name = {machine["name"]: machine for machine in machines}
    assert by_name["flaky"]["executions"] == 1 and by_name["flaky"]["latest"]["status"] == "FAILED"
    assert by_name["waiting"]["executions"] == 0 and by_name["waiting"]["latest"] is None
    executions = http(console, "GET", f"/api/executions?stateMachineArn={quote(setup.flaky_arn)}").json()
    assert [item["executionArn"] for item in executions] == [arn]
    assert isinstance(executions[0]["startDate"], float) and executions[0]["redriveCount"] == 0


def test_execution_has_per_state_status_and_history(setup: Any, console: str, http: Http, fail: Callable[..., str]) -> None:
    arn = fail()
    description = http(console, "GET", f"/api/execution?arn={quote(arn)}").json()
    assert description["status"] == "FAILED" and description["redriveStatus"] == "REDRIVABLE"
    states = description["states"]
    assert states["Prepare"]["status"] == "succeeded"
    assert states["CallFlaky"]["status"] == "failed" and "broken is present" in states["CallFlaky"]["cause"]
    assert "FanOut" not in states
    assert json.loads(states["Prepare"]["output"])["work"] == {"items": [1, 2, 3]}
    events = http(console, "GET", f"/api/history?arn={quote(arn)}").json()["events"]
    assert events[0]["type"] == "ExecutionStarted" and events[-1]["type"] == "ExecutionFailed"
    later = http(console, "GET", f"/api/history?arn={quote(arn)}&after={events[-3]['id']}").json()["events"]
    assert [event["id"] for event in later] == [event["id"] for event in events[-2:]]


def test_graph_comes_from_the_version_the_execution_ran(setup: Any, console: str, http: Http, fail: Callable[..., str]) -> None:
    arn = fail()
    setup.engine.update_state_machine(setup.flaky_arn, {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}})
    old = http(console, "GET", f"/api/graph?arn={quote(arn)}").json()
    new = http(console, "GET", f"/api/graph?stateMachineArn={quote(setup.flaky_arn)}").json()
    assert {node["name"] for node in old["nodes"]} >= {"Prepare", "CallFlaky", "IsGood", "FanOut", "Double", "Done"}
    assert [node["name"] for node in new["nodes"]] == ["Only"]


def test_unknown_execution_is_404_json(console: str, http: Http) -> None:
    reply = http(console, "GET", "/api/execution?arn=arn:aws:states:us-east-1:000000000000:execution:flaky:nope")
    assert reply.status == 404 and "does not exist" in reply.json()["error"]


def test_start_stop_and_redrive_with_the_token(setup: Any, console: str, http: Http, fail: Callable[..., str], wait: Callable[..., dict], auth: dict[str, str]) -> None:
    started = http(console, "POST", "/api/start", {"stateMachineArn": setup.wait_arn, "input": '{"a": 1}', "name": "held"},
                      auth | {"Origin": console})  # fmt: skip
    assert started.status == 200, started.body
    arn = started.json()["executionArn"]
    assert arn.endswith(":held")
    wait(setup.engine, arn, "RUNNING")
    assert http(console, "POST", "/api/stop", {"arn": arn}, auth).status == 200
    stopped = wait(setup.engine, arn, "ABORTED")
    assert stopped["error"] == "Console.Stopped"

    failed = fail()
    setup.flag.unlink()
    assert http(console, "POST", "/api/redrive", {"arn": failed}, auth).status == 200
    done = wait(setup.engine, failed, "SUCCEEDED")
    assert done["redriveCount"] == 1
    again = http(console, "POST", "/api/redrive", {"arn": failed}, auth)
    assert again.status == 409 and "SUCCEEDED" in again.json()["error"]


def test_start_rejects_bad_input(setup: Any, console: str, http: Http, auth: dict[str, str]) -> None:
    reply = http(console, "POST", "/api/start", {"stateMachineArn": setup.wait_arn, "input": "{not json"}, auth)
    assert reply.status == 400 and "not valid JSON" in reply.json()["error"]


def test_post_without_the_token_is_refused(setup: Any, console: str, http: Http, fail: Callable[..., str]) -> None:
    arn = fail()
    for headers in ({"Origin": console}, {"Origin": console, "X-Ddcicd-Token": "wrong"}, {"Cookie": "ddcicd_token=wrong", "Origin": console}):
        reply = http(console, "POST", "/api/redrive", {"arn": arn}, headers)
        assert reply.status == 403, headers
        assert "token" in reply.body.decode()
    assert setup.engine.describe_execution(arn)["redriveCount"] == 0


def test_cross_origin_post_is_refused_even_with_the_cookie(setup: Any, console: str, http: Http, fail: Callable[..., str]) -> None:
    arn = fail()
    reply = http(console, "POST", "/api/redrive", {"arn": arn}, {"Origin": "http://evil.example", "Cookie": f"ddcicd_token={TOKEN}"})
    assert reply.status == 403 and "cross-origin" in reply.body.decode()
    assert setup.engine.describe_execution(arn)["redriveCount"] == 0


def test_cookie_without_origin_is_refused(setup: Any, console: str, http: Http) -> None:
    """A non-browser client must send the header: a cookie alone proves nothing about the sender."""
    reply = http(console, "POST", "/api/stop", {"arn": "x"}, {"Cookie": f"ddcicd_token={TOKEN}"})
    assert reply.status == 403


def test_foreign_host_header_is_refused(console: str, http: Http) -> None:
    """DNS rebinding: a page on evil.example resolved to 127.0.0.1 still sends its own Host."""
    port = console.rsplit(":", 1)[1]
    reply = http(console, "GET", "/api/state-machines", headers={"Host": f"evil.example:{port}"})
    assert reply.status == 403 and "Host" in reply.body.decode()
    assert http(console, "GET", "/api/state-machines", headers={"Host": f"localhost:{port}"}).status == 200


def test_token_url_serves_the_page_and_sets_no_cookie(console: str, http: Http) -> None:
    """Cookies ignore ports: the token must not become one (the page keeps it in sessionStorage)."""
    reply = http(console, "GET", f"/?token={TOKEN}")
    assert reply.status == 200 and b"/static/console.js" in reply.body
    assert "set-cookie" not in reply.headers and reply.headers["referrer-policy"] == "no-referrer"
    guess = http(console, "GET", "/?token=guess")
    assert guess.status == 403 and "wrong token" in guess.json()["error"]
    assert http(console, "GET", "/api/session", headers={"X-Ddcicd-Token": TOKEN}).json() == {"actions": True}
    assert http(console, "GET", "/api/session", headers={"Cookie": f"ddcicd_token={TOKEN}"}).json() == {"actions": False}
    assert http(console, "GET", "/api/session").json() == {"actions": False}


def test_page_and_static_files_are_served(console: str, http: Http) -> None:
    page = http(console, "GET", "/")
    assert page.status == 200 and b"/static/console.js" in page.body
    for name in ("console.js", "graph.js", "console.css"):
        assert http(console, "GET", f"/static/{name}").status == 200
    for name in ("index.html", "console.js", "graph.js", "console.css"):  # no CDN: nothing is fetched from elsewhere
        text = (STATIC / name).read_text()
        assert "https://" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name


def test_report_route_renders_html(setup: Any, console: str, http: Http, fail: Callable[..., str]) -> None:
    arn = fail()
    reply = http(console, "GET", f"/report?arn={quote(arn)}")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    assert b"first-try" in reply.body and b"No processing manifest" in reply.body
