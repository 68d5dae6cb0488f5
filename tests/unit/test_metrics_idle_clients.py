"""The HTTP endpoint (/metrics, /healthz, /readyz) drops a client that connects and says
nothing after metrics.REQUEST_TIMEOUT_S, and keeps answering others meanwhile: idle or slow
connections cannot pin its threads for good."""

from __future__ import annotations

import socket

from tests.helpers import http_get
from tickvault import metrics
from tickvault.settings import MetricsSettings


def test_an_idle_connection_is_closed_and_others_are_served() -> None:
    settings = MetricsSettings(host="127.0.0.1", port=0)
    with (
        metrics.serve(settings, metrics.Health()) as port,
        socket.create_connection(("127.0.0.1", port)) as idle,
    ):
        assert http_get(port, "/healthz")[0] == 200  # served while the idle one waits
        idle.settimeout(metrics.REQUEST_TIMEOUT_S * 6)
        assert idle.recv(1024) == b""  # closed by the server, not by our timeout
