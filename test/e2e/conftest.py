"""Fixtures of the e2e tests (see hearth_env.py for the machinery).

    hearth_env  an Env: a temp dir with hearth.xml (free router port, random
                password, debug log), statedir and logs; every daemon it
                started is stopped at teardown, and one that did not exit
                with status 0 fails the test.
    router      a running hearth-router of that Env: .host .port .listen
                .password .user .config_path .pid .log (path of its log)
                .log_tail() .restart() .stop()

    server      a whole Hearth for clients (hearth_env.Server): router, sm and
                c2s for domain "localhost", registration on, started.
                .port (STARTTLS) .tls_port (direct TLS) .c2s_ports[i]
                (instance c2s-(i+1) only) .cert_path .domain .env
                Options: @pytest.mark.server(c2s=2, **{"c2s.registration":
                "false"}) gives Server's arguments.

A failed test's report ends with the tails of its daemons' logs.
"""
import pytest

from hearth_env import BUILDDIR, Env, Router, Server


@pytest.fixture
def builddir():
    return BUILDDIR


@pytest.fixture
def hearth_env(tmp_path):
    env = Env(tmp_path)
    yield env
    env.stop_all()


@pytest.fixture
def router(hearth_env):
    r = hearth_env.add(Router(hearth_env))
    r.start()
    return r


@pytest.fixture
def server(request, hearth_env):
    marker = request.node.get_closest_marker("server")
    options = dict(marker.kwargs) if marker else {}
    return Server(hearth_env, **options).start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    env = getattr(item, "funcargs", {}).get("hearth_env")
    if report.failed and env is not None and env.logs:
        report.sections.append(("daemon logs", env.log_tails()))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "router_settings(dict): hearth.xml settings for the test's router")
    config.addinivalue_line(
        "markers", "server(**options): arguments of the test's Server (c2s=N, settings)")
