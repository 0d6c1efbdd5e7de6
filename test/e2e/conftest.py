"""Fixtures of the e2e tests (see hearth_env.py for the machinery).

    hearth_env  an Env: a temp dir with hearth.xml (free router port, random
                password, debug log), statedir and logs; every daemon it
                started is stopped at teardown, and one that did not exit
                with status 0 fails the test.
    router      a running hearth-router of that Env: .host .port .listen
                .password .user .config_path .pid .log (path of its log)
                .log_tail() .restart() .stop()

    dns         a real dnsmasq on a free loopback port (hearth_env.Dns)

    server      a whole Hearth for clients (hearth_env.Server): router, sm and
                c2s for domain "localhost", registration on, started.
                .port (STARTTLS) .tls_port (direct TLS) .c2s_ports[i]
                (instance c2s-(i+1) only) .cert_path .domain .env
                Options: @pytest.mark.server(c2s=2, **{"c2s.registration":
                "false"}) gives Server's arguments. Takes storage_driver: every
                test using it runs on SQLite and on PostgreSQL.

Storage (hearth_env.py: Env(storage=...), PgCluster):

    storage_driver  "sqlite" or "pgsql": a test (or a fixture) that stores
                data takes it and runs twice, ids [sqlite] and [pgsql]. The
                test's hearth_env then keeps its data in that driver:
                SQLite in its statedir, or a fresh database hearth_<random>
                in the session's throwaway PostgreSQL cluster (started on
                first use by test/pg-cluster, stopped at session end). The
                pgsql run is skipped, with the reason, when PostgreSQL is
                not installed. hearth_env.storage says which; hearth_env.sql(
                "SELECT ...") reads the store directly. The server fixture
                takes it, so every server test runs on both.
    database_down  for "the database stops in the middle" tests: .stop()
                stops the PostgreSQL server (pg_ctl stop -m fast: every
                connection drops), .start() starts it again (same port,
                data kept), and `with database_down():` does both around a
                block. Whatever the test does, the server runs again at
                teardown. While it is down every storage call fails with
                ST_UNAVAILABLE; after start() the daemons reconnect on their
                own, within their backoff (100 ms doubling to 5 s), so wait
                for service with a deadline of several seconds. Needs storage_driver; on sqlite the test is
                skipped (there is no server to stop).

A failed test's report ends with the tails of its daemons' logs.
"""
import contextlib

import pytest

from hearth_env import (BUILDDIR, Dns, Env, Router, Server, pg_cluster, pg_missing, random_password,
                        stop_pg_cluster)
from testcomp import Component
from xmpp_client import Client


@pytest.fixture
def dns(tmp_path):
    """A real dnsmasq on a free loopback port (hearth_env.Dns), stopped at
    teardown."""
    d = Dns(tmp_path)
    yield d
    d.stop()


@pytest.fixture
def builddir():
    return BUILDDIR


@pytest.fixture(params=["sqlite", "pgsql"], ids=["sqlite", "pgsql"])
def storage_driver(request):
    if request.param == "pgsql":
        missing = pg_missing()
        if missing:
            pytest.skip(f"PostgreSQL is not installed: {missing}")
    return request.param


@pytest.fixture
def hearth_env(request, tmp_path):
    # a test that takes storage_driver, directly or through a fixture,
    # gets an Env on that driver
    storage = "sqlite"
    if "storage_driver" in request.fixturenames:
        storage = request.getfixturevalue("storage_driver")
    env = Env(tmp_path, storage=storage)
    yield env
    env.stop_all()


class DatabaseDown:
    """Stops and starts the session's PostgreSQL server (see database_down)."""

    def __init__(self, cluster):
        self.cluster = cluster

    def stop(self):
        self.cluster.pause()

    def start(self):
        if not self.cluster.is_running:
            self.cluster.resume()

    @contextlib.contextmanager
    def __call__(self):
        self.stop()
        try:
            yield self
        finally:
            self.start()


@pytest.fixture
def database_down(hearth_env, storage_driver):
    # Only on PostgreSQL: SQLite has no server to stop (its faults are
    # test_storage_faults.py's); the sqlite variants are deselected at
    # collection (pytest_collection_modifyitems), not skipped.
    down = DatabaseDown(pg_cluster())
    yield down
    down.start()


@pytest.fixture
def router(hearth_env):
    r = hearth_env.add(Router(hearth_env))
    r.start()
    return r


@pytest.fixture
def server(request, hearth_env, storage_driver):
    marker = request.node.get_closest_marker("server")
    options = dict(marker.kwargs) if marker else {}
    return Server(hearth_env, **options).start()


# ---- for the tests of trust (test_trust_roles.py, test_direct.py) ----------------------

BOT_PASSWORD = random_password()


def bot_settings(env):
    """The tests' component account and bot's, which may bind bot.localhost."""
    return {"router.component": env.settings["router.component"][:1] + [
        {"name": "bot", "password": BOT_PASSWORD, "bind": "bot.localhost"}]}


@pytest.fixture
def trusted(hearth_env):
    """A Server for localhost (router, sm, c2s-1) whose router also knows
    bot; registration on."""
    return Server(hearth_env, **bot_settings(hearth_env)).start()


@pytest.fixture
def bot(trusted):
    comps = []

    def start(*binds, ident="bot", user="bot", password=BOT_PASSWORD):
        c = Component(BUILDDIR, trusted.router.listen, password, ident, *binds, user=user,
                      logdir=trusted.env.logdir)
        comps.append(c)
        c.expect("ready")
        return c
    yield start
    for c in comps:
        c.close()


@pytest.fixture
def users(trusted):
    made = []

    def make(name, password="pw", resource="x", register=True):
        c = Client(trusted, f"{name}@localhost", password, resource=resource,
                   register=register).connect()
        made.append(c)
        return c
    yield make
    for c in made:
        c.disconnect()


@pytest.fixture
def fake_sm(hearth_env):
    """Router and a real c2s-1, with a test component logging in with the
    sm's account for localhost in place of hearth-sm."""
    server = Server(hearth_env)
    server.router.start()
    user, password = server.router.account("sm")
    sm = Component(BUILDDIR, server.router.listen, password, "sm", "localhost shard", user=user,
                   logdir=hearth_env.logdir)
    sm.expect("ready")
    server.start_c2s(server.c2s[0])
    yield server, sm
    sm.close()


def pytest_collection_modifyitems(config, items):
    # A test that stops the database exists on PostgreSQL only.
    def is_sqlite_variant(item):
        callspec = getattr(item, "callspec", None)
        return ("database_down" in getattr(item, "fixturenames", ()) and callspec is not None
                and callspec.params.get("storage_driver") == "sqlite")
    gone = [item for item in items if is_sqlite_variant(item)]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = [item for item in items if not is_sqlite_variant(item)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    env = getattr(item, "funcargs", {}).get("hearth_env")
    if report.failed and env is not None and env.logs:
        report.sections.append(("daemon logs", env.log_tails()))


def pytest_sessionfinish(session, exitstatus):
    stop_pg_cluster()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "router_settings(dict): hearth.xml settings for the test's router")
    config.addinivalue_line(
        "markers", "server(**options): arguments of the test's Server (c2s=N, settings)")
