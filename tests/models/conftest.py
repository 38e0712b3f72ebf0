"""Fixtures of the model manager's tests: a stand-in Hugging Face hub on loopback (``hub_server.py``)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.models.hub_server import Hub, start_hub


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub, server = start_hub()
    yield hub
    server.shutdown()
    server.server_close()
