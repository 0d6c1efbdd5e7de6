"""The README's table of supported standards against what the server
announces: every disco#info feature of the server is in the table, and
every feature the table names is announced, so neither can drift from the
other."""
import os
import re

import pytest

from hearth_env import SRCDIR
from xmpp_client import Client

DISCO_INFO = "http://jabber.org/protocol/disco#info"


def readme_features():
    """{feature: specification} from the last column of the table under
    "### Supported standards"."""
    with open(os.path.join(SRCDIR, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("### Supported standards", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows, "no table under ### Supported standards"
    features = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5, f"a row of five columns expected: {row}"
        assert cells[2] in ("complete", "partial"), f"status must be complete or partial: {row}"
        assert re.fullmatch(r"\d+\.\d+\.\d+", cells[3]), f"since must be a release: {row}"
        for feature in re.findall(r"`([^`]+)`", cells[4]):
            features[feature] = cells[0]
    return features


@pytest.mark.parametrize("storage_driver", ["sqlite"], indirect=True)
def test_readme_feature_table_matches_disco_info(server):
    c = Client(server, "alice@localhost", "pw-secret", register=True).connect()
    try:
        answer = c.iq(f"<iq type='get' to='{server.domain}'><query xmlns='{DISCO_INFO}'/></iq>")
        assert answer["type"] == "result", answer
        announced = {f.get("var") for f in answer.xml.iter(f"{{{DISCO_INFO}}}feature")}
    finally:
        c.disconnect()
    listed = readme_features()
    assert announced - set(listed) == set(), "announced in disco#info, missing from the README table"
    assert set(listed) - announced == set(), "in the README table, not announced in disco#info"
