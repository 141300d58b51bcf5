"""create_app runs on the services it is given (loopworks.open), and leaves them open."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

import loopworks
from loopworks.server import create_app
from loopworks.server.state import services_of


def test_the_server_runs_on_the_graph_it_is_given(tmp_path: Path) -> None:
    with loopworks.open(tmp_path / "home") as lw:
        lw.workforce.add_worker("lead", role="admin")
        token = lw.workforce.issue_api_token("lead")
        app = create_app(services=lw, api_token="operator")
        assert services_of(app) is lw
        with TestClient(app) as client:
            reply = client.get("/api/labeling/jobs", headers={"Authorization":
                                                              f"Bearer {token}"})
            assert reply.status_code == 200 and reply.json() == []
        # The app did not close services it did not open.
        lw.workforce.add_team("still-open")
