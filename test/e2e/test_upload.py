"""HTTP file upload (XEP-0363; components/upload/): slots asked for over
XMPP by real slixmpp clients (its xep_0363 plugin PUTs with aiohttp over
TLS), files fetched over HTTPS byte for byte, and every refusal: wrong
size or type, someone else's or an expired slot, a file over the limit,
quotas, an upload cut halfway, a slow client, and strangers (a component,
a client before login)."""
import hashlib
import http.client
import os
import socket
import subprocess
import ssl
import time

import pytest

from hearth_env import BUILDDIR, Server, free_port, log_size, wait_for, wait_log
from testcomp import Component
from xmpp_client import Client, ClientError

NS = "urn:xmpp:http:upload:0"
DOMAIN = "upload.localhost"


def start_upload(server, **settings):
    """hearth-upload on the server's Env, once it has bound its name."""
    env = server.env
    mark = log_size(server.router.log)
    up = env.start("upload", addr=("127.0.0.1", server.upload_port))
    server.wait_router_log(f" bound {DOMAIN}", mark, daemon=up)
    server.upload = up
    return up


@pytest.fixture
def server(hearth_env, request):
    settings = getattr(request, "param", {})
    port = free_port()
    s = Server(hearth_env, **{"upload.listen-tls": f"127.0.0.1:{port}", **settings}).start()
    s.upload_port = port
    start_upload(s)
    # aiohttp (slixmpp's PUT) and this file's GETs check the certificate
    os.environ["SSL_CERT_FILE"] = s.cert_path
    return s


def client(server, name, **kw):
    c = Client(server, f"{name}@localhost", f"pw-{name}", register=True, **kw).connect()
    c.xmpp.register_plugin("xep_0363")
    return c


@pytest.fixture
def alice(server):
    c = client(server, "alice")
    yield c
    c.disconnect()


@pytest.fixture
def bob(server):
    c = client(server, "bob")
    yield c
    c.disconnect()


def https(server, method, path, body=None, headers=None, timeout=10):
    """One HTTPS request to hearth-upload, the certificate checked:
    (status, headers as a dict of lower-case names, body)."""
    ctx = ssl.create_default_context(cafile=server.cert_path)
    conn = http.client.HTTPSConnection("localhost", server.upload_port, context=ctx,
                                       timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def slot(c, filename="photo.jpg", size=100, content_type="image/jpeg"):
    """Ask for a slot: (put url, put headers, get url), or raise ClientError."""
    ct = f" content-type='{content_type}'" if content_type else ""
    answer = c.iq(f"<iq type='get' to='{DOMAIN}'><request xmlns='{NS}' filename='{filename}' "
                  f"size='{size}'{ct}/></iq>")
    if answer["type"] == "error":
        raise ClientError(answer["error"]["condition"], answer["error"]["text"])
    s = answer.xml.find(f"{{{NS}}}slot")
    put = s.find(f"{{{NS}}}put")
    headers = {h.get("name"): h.text for h in put.findall(f"{{{NS}}}header")}
    return put.get("url"), headers, s.find(f"{{{NS}}}get").get("url")


def path_of(url):
    """https://host:port/upload/ID/NAME -> /upload/ID/NAME"""
    return "/" + url.split("/", 3)[3]


def put(server, url, data, content_type="image/jpeg", headers=None):
    h = {"Content-Type": content_type, **(headers or {})}
    return https(server, "PUT", path_of(url), body=data, headers=h)


def upload(server, c, data, filename="photo.jpg", content_type="image/jpeg"):
    """A slot and its PUT: the GET url."""
    put_url, headers, get_url = slot(c, filename, len(data), content_type)
    status, _, body = put(server, put_url, data, content_type, headers)
    assert status == 201, (status, body)
    return get_url


def test_the_domain_lists_the_service_and_its_disco_says_what_it_takes(server, alice):
    items = alice.iq("<iq type='get' to='localhost'>"
                     "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
    jids = [i.get("jid") for i in items.xml.iter("{http://jabber.org/protocol/disco#items}item")]
    assert DOMAIN in jids, jids
    info = alice.iq(f"<iq type='get' to='{DOMAIN}'>"
                    "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    q = "{http://jabber.org/protocol/disco#info}"
    identity = info.xml.find(f".//{q}identity")
    assert (identity.get("category"), identity.get("type")) == ("store", "file")
    assert NS in [f.get("var") for f in info.xml.iter(f"{q}feature")]
    fields = {f.get("var"): f.find("{jabber:x:data}value").text
              for f in info.xml.iter("{jabber:x:data}field")}
    assert fields == {"FORM_TYPE": NS, "max-file-size": str(10 * 1024 * 1024)}, fields


def test_slixmpp_uploads_and_another_user_downloads_byte_for_byte(server, alice, bob, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    f = tmp_path / "très cool.jpg"
    f.write_bytes(data)
    plugin = alice.xmpp["xep_0363"]
    # The plugin's own discovery (disco#info of every item of the domain)
    # hands asyncio.wait coroutines, which Python 3.11 refuses (slixmpp
    # 1.8.3): tell it the service found by disco, as the test above does.
    plugin.upload_service = DOMAIN
    url = alice._await(plugin.upload_file(str(f), content_type="image/jpeg"), timeout=30)
    assert url.startswith(f"https://localhost:{server.upload_port}/upload/"), url
    assert url.endswith("/tr%C3%A8s%20cool.jpg"), url
    status, headers, body = https(server, "GET", path_of(url))
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert headers["content-type"] == "image/jpeg"
    assert headers["content-length"] == str(len(data))
    assert headers["access-control-allow-origin"] == "*"
    assert headers["content-disposition"].startswith("inline; filename*=UTF-8''tr%C3%A8s%20cool.jpg")
    assert headers["etag"]
    status, headers, body = https(server, "HEAD", path_of(url))
    assert (status, headers["content-length"], body) == (200, str(len(data)), b"")


@pytest.mark.parametrize("storage_driver", ["pgsql"], indirect=True)
def test_upload_and_download_on_postgresql(storage_driver, server, alice):
    data = os.urandom(70000)
    url = upload(server, alice, data)
    assert https(server, "GET", path_of(url))[2] == data
    owner = server.env.sql("SELECT owner FROM uploads")
    assert owner == [["alice@localhost"]], owner


def test_a_put_needs_the_exact_size_and_type_and_the_slots_own_token(server, alice, bob):
    data = b"x" * 100
    put_url, headers, _ = slot(alice, size=100)
    assert put(server, put_url, data + b"y", headers=headers)[0] == 413
    assert put(server, put_url, data[:99], headers=headers)[0] == 400
    assert put(server, put_url, data, "text/html", headers)[0] == 415
    assert put(server, put_url, data)[0] == 401
    # bob's own slot's token does not open alice's slot
    _, bob_headers, _ = slot(bob, size=100)
    assert put(server, put_url, data, headers=bob_headers)[0] == 403
    assert put(server, put_url, data, headers=headers)[0] == 201
    assert put(server, put_url, data, headers=headers)[0] == 409


def test_one_connection_carries_a_put_and_then_a_get(server, alice):
    """Keep-alive after a streamed body: the connection is not closed."""
    put_url, headers, get_url = slot(alice, size=5, content_type="text/plain")
    ctx = ssl.create_default_context(cafile=server.cert_path)
    conn = http.client.HTTPSConnection("localhost", server.upload_port, context=ctx, timeout=10)
    try:
        conn.request("PUT", path_of(put_url), body=b"hello",
                     headers={"Content-Type": "text/plain", **headers})
        r = conn.getresponse()
        assert (r.status, r.getheader("Connection")) == (201, None)
        r.read()
        sock = conn.sock
        conn.request("GET", path_of(get_url))
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"hello")
        assert conn.sock is sock, "the connection was not kept"
    finally:
        conn.close()


def test_an_expired_slot_takes_no_upload(server, alice):
    put_url, headers, _ = slot(alice, size=10)
    server.env.sql("UPDATE uploads SET expires = 1")
    status, _, body = put(server, put_url, b"0123456789", headers=headers)
    assert status == 403 and b"expired" in body, (status, body)


def test_a_file_over_the_limit_gets_file_too_large_with_the_limit(server, alice):
    with pytest.raises(ClientError) as e:
        slot(alice, size=10 * 1024 * 1024 + 1)
    assert e.value.condition == "not-acceptable"
    answer = alice.iq(f"<iq type='get' to='{DOMAIN}'><request xmlns='{NS}' filename='a.bin' "
                      f"size='{10 * 1024 * 1024 + 1}'/></iq>")
    limit = answer.xml.find(f".//{{{NS}}}file-too-large/{{{NS}}}max-file-size")
    assert limit is not None and limit.text == str(10 * 1024 * 1024)


@pytest.mark.parametrize("server", [{"upload.user-quota": "1000", "upload.total-quota": "1500"}],
                         indirect=True)
def test_quotas_per_user_and_in_all(server, alice, bob):
    slot(alice, size=600)
    with pytest.raises(ClientError) as e:  # alice: 600 + 600 > 1000
        slot(alice, size=600)
    assert e.value.condition == "resource-constraint"
    slot(alice, size=400)  # exactly her 1000
    slot(bob, size=500)  # 1000 + 500: the total's 1500
    with pytest.raises(ClientError) as e:
        slot(bob, size=1)
    assert e.value.condition == "resource-constraint"


def test_bad_requests_are_refused(server, alice):
    for filename, size in (("", 10), ("a/b", 10), ("a.txt", 0), ("a.txt", "ten")):
        with pytest.raises(ClientError) as e:
            slot(alice, filename=filename, size=size)
        assert e.value.condition == "bad-request", (filename, size)
    with pytest.raises(ClientError) as e:
        slot(alice, "a.txt", 10, "nonsense")
    assert e.value.condition == "bad-request"
    # a type that would add a header of its own to the download: sent as
    # bytes, since slixmpp would write the CR LF raw and the parser make
    # them spaces
    alice.send_raw(f"<iq type='get' id='crlf' to='{DOMAIN}'><request xmlns='{NS}' "
                   "filename='a.txt' size='10' content-type='text/plain&#13;&#10;Set-Cookie: a=b'/>"
                   "</iq>")
    answer = alice.wait_iq(lambda s: s["id"] == "crlf")
    assert (answer["type"], answer["error"]["condition"]) == ("error", "bad-request"), answer
    assert server.env.sql("SELECT id FROM uploads") == []


def test_ranges_etags_and_cors(server, alice):
    data = bytes(range(256)) * 10
    url = upload(server, alice, data, "notes.txt", "text/plain")
    path = path_of(url)
    status, headers, body = https(server, "GET", path, headers={"Range": "bytes=10-19"})
    assert (status, body, headers["content-range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
    status, _, body = https(server, "GET", path, headers={"Range": "bytes=-5"})
    assert (status, body) == (206, data[-5:])
    status, _, body = https(server, "GET", path, headers={"Range": "bytes=2000-"})
    assert (status, body) == (206, data[2000:])
    status, headers, _ = https(server, "GET", path, headers={"Range": f"bytes={len(data)}-"})
    assert (status, headers["content-range"]) == (416, f"bytes */{len(data)}")
    etag = https(server, "GET", path)[1]["etag"]
    assert https(server, "GET", path, headers={"If-None-Match": etag})[:3:2] == (304, b"")
    status, headers, _ = https(server, "OPTIONS", path, headers={
        "Origin": "https://web.example", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert "PUT" in headers["access-control-allow-methods"]
    assert "Authorization" in headers["access-control-allow-headers"]


def test_a_page_is_served_as_an_attachment_that_runs_nothing(server, alice):
    url = upload(server, alice, b"<script>alert(1)</script>", "evil.html", "text/html")
    _, headers, _ = https(server, "GET", path_of(url))
    assert headers["content-disposition"].startswith("attachment;")
    assert headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in headers["content-security-policy"]


def test_an_upload_cut_halfway_leaves_nothing_and_the_slot_can_be_retried(server, alice):
    data = os.urandom(1024 * 1024)
    put_url, headers, get_url = slot(alice, size=len(data))
    ctx = ssl.create_default_context(cafile=server.cert_path)
    raw = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.upload_port)),
                          server_hostname="localhost")
    head = (f"PUT {path_of(put_url)} HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    raw.sendall(head.encode() + data[:len(data) // 2])
    tmpdir = os.path.join(server.env.statedir, "upload", "tmp")
    wait_for(lambda: os.listdir(tmpdir), "the upload under way")
    raw.close()
    wait_for(lambda: not os.listdir(tmpdir), "the partial file removed")
    assert https(server, "GET", path_of(get_url))[0] == 404
    assert put(server, put_url, data, headers=headers)[0] == 201
    assert https(server, "GET", path_of(get_url))[2] == data


@pytest.mark.parametrize("server", [{"upload.timeout": "1s"}], indirect=True)
def test_a_slow_client_is_cut_off_and_others_are_served_meanwhile(server, alice):
    url = upload(server, alice, b"hello")
    ctx = ssl.create_default_context(cafile=server.cert_path)
    slow = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.upload_port)),
                           server_hostname="localhost")
    slow.sendall(b"GET " + path_of(url).encode() + b" HTTP/1.1\r\nHost: loc")
    assert https(server, "GET", path_of(url))[2] == b"hello"
    slow.settimeout(10)
    started = time.monotonic()
    answer = slow.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 5


def test_a_deleted_account_takes_its_files_along(server, alice, bob):
    url = upload(server, bob, b"bob's photo")
    files = os.path.join(server.env.statedir, "upload")
    assert len([n for n in os.listdir(files) if n != "tmp"]) == 1
    answer = bob.iq("<iq type='set'><query xmlns='jabber:iq:register'><remove/></query></iq>")
    assert answer["type"] == "result"
    wait_for(lambda: https(server, "GET", path_of(url))[0] == 404, "the file no longer served")
    # the sweep at start removes what no row accounts for
    server.upload.restart()
    wait_for(lambda: [n for n in os.listdir(files) if n != "tmp"] == [], "the file removed")


def test_an_expired_file_is_no_longer_served_and_swept(server, alice):
    url = upload(server, alice, b"old news")
    server.env.sql("UPDATE uploads SET expires = 1")
    assert https(server, "GET", path_of(url))[0] == 404
    files = os.path.join(server.env.statedir, "upload")
    server.upload.restart()
    wait_for(lambda: server.env.sql("SELECT id FROM uploads") == [], "the row swept")
    assert [n for n in os.listdir(files) if n != "tmp"] == []


def test_a_component_gets_no_slot(server):
    """A component (or a remote server) may ask what the service is, but gets
    no slot: only the sm's routes speak for a logged-in local user."""
    with Component(BUILDDIR, server.router.listen, server.env.password, "spy", "spy.localhost",
                   logdir=server.env.logdir) as spy:
        spy.expect("ready")
        answer = spy.ask(DOMAIN, "spy.localhost", "<iq type='get' id='x1' from='who@spy.localhost' "
                         f"to='{DOMAIN}'><request xmlns='{NS}' filename='a.txt' size='10'/></iq>",
                         "x1")
        assert "not-allowed" in answer and "slot" not in answer, answer
        answer = spy.ask(DOMAIN, "spy.localhost", "<iq type='get' id='x2' from='who@spy.localhost' "
                         f"to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
                         "x2")
        assert NS in answer, answer
    assert server.env.sql("SELECT id FROM uploads") == []


def test_the_log_names_each_slot(server, alice):
    mark = log_size(server.upload.log)
    slot(alice, size=5)
    wait_log(server.upload.log, "slot ", mark)


def hearthctl(server, *args):
    return subprocess.run([os.path.join(BUILDDIR, "tools", "hearthctl"), "-c",
                           server.env.config_path, *args], capture_output=True, text=True,
                          timeout=30)


def test_hearthctl_lists_and_purges_uploads(server, alice, bob):
    first = upload(server, alice, b"one", "one.txt", "text/plain")
    upload(server, alice, b"two!", "two.txt", "text/plain")
    kept = upload(server, bob, b"bob", "bob.txt", "text/plain")
    slot(bob, "later.png", 10, "image/png")  # never uploaded
    p = hearthctl(server, "uploads")
    assert p.returncode == 0, p.stderr
    # oldest first: within one second, in any order
    rows = sorted((line.split(" ") for line in p.stdout.splitlines()), key=lambda r: r[5])
    assert [(r[1], r[2], r[5]) for r in rows] == [
        ("bob@localhost", "3", "bob.txt"), ("bob@localhost", "10", "later.png"),
        ("alice@localhost", "3", "one.txt"), ("alice@localhost", "4", "two.txt")], rows
    assert rows[1][3] == "pending" and rows[0][3].endswith("Z"), rows
    p = hearthctl(server, "uploads", "bob")
    assert sorted(line.split(" ")[5] for line in p.stdout.splitlines()) == ["bob.txt", "later.png"]
    p = hearthctl(server, "uploads", "purge", "alice@localhost")
    assert (p.returncode, p.stdout) == (0, "2 purged\n"), p
    assert https(server, "GET", path_of(first))[0] == 404
    files = os.path.join(server.env.statedir, "upload")
    assert len([n for n in os.listdir(files) if n != "tmp"]) == 1
    server.env.sql("UPDATE uploads SET expires = 1 WHERE filename = 'later.png'")
    p = hearthctl(server, "uploads", "purge", "--expired")
    assert (p.returncode, p.stdout) == (0, "1 purged\n"), p
    assert https(server, "GET", path_of(kept))[2] == b"bob"
    p = hearthctl(server, "uploads", "purge", "0" * 32)
    assert p.returncode == 1 and "no upload" in p.stderr, p
