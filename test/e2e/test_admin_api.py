"""End-to-end tests of the sm's HTTP admin API (sm/http_api.c) with
http.client against the real router, sm and c2s, and python3-slixmpp
clients: every endpoint refuses a request without the bearer token or with
a wrong one; accounts created by the API log in, a deleted account's
session ends, the sessions list is who is online; docs/admin-api.yaml
names exactly the operations the sm serves.
"""
import http.client
import json
import os
import re
import subprocess
import urllib.parse

import pytest
import yaml

from hearth_env import SRCDIR, Server, binary, free_port, write_config, wait_for
from xmpp_client import Client, ClientError

TOKEN = "s3cret-token-for-the-tests"
PASSWORD = "correct horse"
SPEC = os.path.join(SRCDIR, "docs", "admin-api.yaml")
SOURCE = os.path.join(SRCDIR, "sm", "http_api.c")


class Api:
    def __init__(self, port):
        self.port = port

    def call(self, method, path, body=None, token=TOKEN, raw_body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = raw_body
        if body is not None:
            data = json.dumps(body)
            h["Content-Type"] = "application/json"
        try:
            conn.request(method, "/api/v1" + path, body=data, headers=h)
            r = conn.getresponse()
            text = r.read().decode()
            is_json = (r.getheader("Content-Type") or "").startswith("application/json")
            payload = json.loads(text) if text and is_json else text or None
            return r.status, payload, dict(r.getheaders())
        finally:
            conn.close()


def quoted(jid):
    return urllib.parse.quote(jid, safe="@")


@pytest.fixture
def api_server(hearth_env, tmp_path):
    token_file = tmp_path / "api-token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    port = free_port()
    server = Server(hearth_env, **{"sm.api-listen": f"127.0.0.1:{port}",
                                   "sm.api-token-file": str(token_file)}).start()
    server.api = Api(port)
    return server




def login(server, user, password=PASSWORD, **kw):
    return Client(server, f"{user}@localhost", password, **kw).connect()


def spec_operations():
    spec = yaml.safe_load(open(SPEC))
    assert spec["openapi"].startswith("3."), "an OpenAPI 3 document"
    return {(method.upper(), path) for path, item in spec["paths"].items()
            for method in item if method in ("get", "post", "put", "delete", "patch")}


def source_operations():
    """The endpoints the header of sm/http_api.c lists."""
    header = open(SOURCE).read().split("*/", 1)[0]
    return {(m, re.sub(r"\[.*\]", "", p))
            for m, p in re.findall(r"^ \*   (GET|POST|PUT|DELETE|PATCH)\s+(/\S+)", header, re.M)}


def concrete(path):
    return path.replace("{jid}", quoted("nobody@localhost"))


def test_spec_and_server_agree(api_server):
    operations = spec_operations()
    assert operations == source_operations(), "docs/admin-api.yaml and sm/http_api.c differ"
    assert len(operations) == 7
    api = api_server.api
    for method, path in operations:
        body = {"password": "x"} if method == "PUT" else {"jid": "x@localhost", "password": "y"} \
            if method == "POST" else None
        status, payload, _ = api.call(method, concrete(path), body=body)
        assert status not in (401, 405), f"{method} {path}: {status} {payload}"
        assert not (status == 404 and payload == {"error": "no such resource"}), \
            f"{method} {path} is not served"
    # and what the document does not name is not served
    for method, path in [("GET", "/nothing"), ("GET", "/users/x@localhost/roster"),
                         ("DELETE", "/stats"), ("PATCH", "/users"), ("GET", "/sessions/a/b")]:
        status, payload, _ = api.call(method, path)
        assert status in (404, 405), f"{method} {path}: {status} {payload}"
        assert "error" in payload


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN + "x", ""])
def test_every_endpoint_refuses_a_missing_or_wrong_token(api_server, token):
    api = api_server.api
    for method, path in sorted(spec_operations()):
        status, payload, headers = api.call(method, concrete(path), token=token,
                                            body={"jid": "a@localhost", "password": "b"}
                                            if method in ("POST", "PUT") else None)
        assert status == 401, f"{method} {path} with token {token!r}: {status}"
        assert headers.get("WWW-Authenticate", "").startswith("Bearer"), headers
        assert "error" in payload
    # nothing was done: no account appeared
    assert api.call("GET", "/users")[1]["users"] == []


def test_created_user_logs_in(api_server):
    api = api_server.api
    status, payload, _ = api.call("POST", "/users", {"jid": "ada@localhost", "password": PASSWORD})
    assert (status, payload) == (201, {"jid": "ada@localhost"})
    ada = login(api_server, "ada")
    ada.disconnect()
    status, payload, _ = api.call("POST", "/users", {"jid": "ada@localhost", "password": "other"})
    assert status == 409, payload
    assert api.call("GET", "/users")[1] == {"users": ["ada@localhost"]}
    with pytest.raises(ClientError) as e:
        login(api_server, "ada", "other")  # the 409 changed nothing
    assert e.value.condition == "not-authorized"


def test_bad_requests_get_400_with_a_json_error(api_server):
    api = api_server.api
    cases = [
        b'{"jid": "a@localhost", "password": }',
        b'{"jid": "a@localhost", "password": 5}',
        b'{"jid": "a@localhost"}',
        b'{"jid": "a@localhost", "password": "x", "jid": "b@localhost"}',
        b'{"jid": "a@localhost", "password": "x"} trailing',
        b'["a@localhost", "x"]',
        b'{"jid": "a@elsewhere.example", "password": "x"}',
        b'{"jid": "localhost", "password": "x"}',
        b'{"jid": "a@localhost/res", "password": "x"}',
        b'{"jid": "a@localhost", "password": "\xff"}',
        b'',
    ]
    for body in cases:
        status, payload, _ = api.call("POST", "/users", raw_body=body,
                                      headers={"Content-Type": "application/json"})
        assert status == 400, f"{body!r}: {status} {payload}"
        assert isinstance(payload.get("error"), str) and payload["error"], payload
    status, payload, _ = api.call("POST", "/users", raw_body=b"jid=a",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    big = json.dumps({"jid": "a@localhost", "password": "x" * 100000})
    status, _, _ = api.call("POST", "/users", raw_body=big.encode(),
                            headers={"Content-Type": "application/json"})
    assert status == 413
    assert api.call("GET", "/users?limit=0")[0] == 400
    assert api.call("GET", "/users?limit=abc")[0] == 400
    assert api.call("DELETE", "/users/" + quoted("a@elsewhere.example"))[0] == 400
    assert api.call("GET", "/users")[1]["users"] == [], "none of those created an account"


def test_password_change(api_server):
    api = api_server.api
    api.call("POST", "/users", {"jid": "bea@localhost", "password": PASSWORD})
    status, payload, _ = api.call("PUT", "/users/bea@localhost/password", {"password": "new one"})
    assert status == 204, payload
    with pytest.raises(ClientError) as e:
        login(api_server, "bea")
    assert e.value.condition == "not-authorized"
    login(api_server, "bea", "new one").disconnect()
    status, payload, _ = api.call("PUT", "/users/nobody@localhost/password", {"password": "x"})
    assert status == 404, payload
    assert api.call("PUT", "/users/bea@localhost/password", {"pw": "x"})[0] == 400


def test_deleted_user_session_ends(api_server):
    api = api_server.api
    api.call("POST", "/users", {"jid": "cid@localhost", "password": PASSWORD})
    cid = login(api_server, "cid")
    status, payload, _ = api.call("DELETE", "/users/cid@localhost")
    assert status == 204, payload
    assert cid.wait_disconnected(10), "the deleted user's stream closed"
    assert cid.stream_error == "not-authorized"
    assert api.call("GET", "/users")[1]["users"] == []
    assert api.call("DELETE", "/users/cid@localhost")[0] == 404
    with pytest.raises(ClientError):
        login(api_server, "cid")


def test_sessions_list_matches_who_is_online(api_server):
    api = api_server.api
    for user in ("dee", "eve"):
        api.call("POST", "/users", {"jid": f"{user}@localhost", "password": PASSWORD})
    dee = login(api_server, "dee")
    eve = login(api_server, "eve")
    try:
        dee.send_presence(ppriority=5)
        def listed():
            return {s["jid"]: s for s in api.call("GET", "/sessions")[1]["sessions"]}
        sessions = wait_for(lambda: (lambda s: s if s.get(dee.bound_jid, {}).get("available")
                                     else None)(listed()), what="dee's presence in the list")
        assert set(sessions) == {dee.bound_jid, eve.bound_jid}
        d = sessions[dee.bound_jid]
        assert (d["resource"], d["c2s"], d["available"], d["priority"]) == \
            (dee.bound_jid.split("/", 1)[1], "c2s-1", True, 5)
        e = sessions[eve.bound_jid]
        assert (e["available"], e["priority"], e["c2s"]) == (False, 0, "c2s-1")
        stats = api.call("GET", "/stats")[1]
        assert (stats["accounts"], stats["sessions"], stats["users_online"]) == (2, 2, 2)
        assert stats["uptime_seconds"] >= 0
        # end eve's session: her stream closes, the list follows
        status, payload, _ = api.call("DELETE", "/sessions/" + quoted(eve.bound_jid))
        assert (status, payload) == (200, {"ended": 1})
        assert eve.wait_disconnected(10)
        assert eve.stream_error == "policy-violation"
        assert set(listed()) == {dee.bound_jid}
        assert api.call("DELETE", "/sessions/eve@localhost")[0] == 404
        status, payload, _ = api.call("DELETE", "/sessions/dee@localhost")
        assert (status, payload) == (200, {"ended": 1})
        assert dee.wait_disconnected(10)
        assert listed() == {}
    finally:
        dee.disconnect()
        eve.disconnect()


def test_stats_count_messages_routed(api_server):
    api = api_server.api
    for user in ("fay", "gus"):
        api.call("POST", "/users", {"jid": f"{user}@localhost", "password": PASSWORD})
    fay, gus = login(api_server, "fay"), login(api_server, "gus")
    try:
        before = api.call("GET", "/stats")[1]["messages_routed"]
        for i in range(5):
            fay.send_message(gus.bound_jid, f"s{i}")
        for i in range(5):
            gus.wait_message(lambda m, i=i: m["body"] == f"s{i}")
        assert api.call("GET", "/stats")[1]["messages_routed"] - before == 5
    finally:
        fay.disconnect()
        gus.disconnect()


def test_users_are_listed_a_page_at_a_time(api_server):
    api = api_server.api
    names = [f"u{i}@localhost" for i in range(5)]
    for jid in names:
        assert api.call("POST", "/users", {"jid": jid, "password": "pw"})[0] == 201
    page = api.call("GET", "/users?limit=2")[1]
    assert page == {"users": names[:2], "next": names[1]}
    page = api.call("GET", f"/users?limit=2&after={quoted(page['next'])}")[1]
    assert page == {"users": names[2:4], "next": names[3]}
    page = api.call("GET", f"/users?limit=2&after={quoted(page['next'])}")[1]
    assert page == {"users": names[4:]}


def test_api_does_not_start_without_a_token_file(hearth_env, tmp_path):
    settings = dict(hearth_env.settings)
    settings["sm.api-listen"] = f"127.0.0.1:{free_port()}"
    config = write_config(str(tmp_path / "no-token.xml"), settings)
    p = subprocess.run([binary("sm"), "-c", config], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "api-token-file" in p.stderr, p.stderr
    settings["sm.api-token-file"] = str(tmp_path / "missing")
    config = write_config(str(tmp_path / "missing-token.xml"), settings)
    p = subprocess.run([binary("sm"), "-c", config], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "cannot open" in p.stderr, p.stderr
