"""What the model manager fetches when a person or a catalogue names a URL: public addresses only by default
(never the machine itself, its network or cloud metadata), each redirect hop checked again, no change of
scheme, no credentials carried to another host, a catalogue body of bounded size. Real local servers; the
operator's setting allows their networks where a test needs them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import pytest

from models.errors import CatalogueError, UrlRefusedError
from models.manager import MAX_CATALOGUE_BYTES, ModelManager
from runtimes.adapters.rvc import RvcAdapter
from tests.models.hub_server import Fault, Hub, start_hub
from tests.models.test_downloads import character, finished, hf_file, nothing_left

LOOPBACK = ("127.0.0.0/8", "::1")


@pytest.fixture
def hubs() -> Iterator[List[Tuple[Hub, Any]]]:
    started: List[Tuple[Hub, Any]] = []
    yield started
    for _, server in started:
        server.shutdown()
        server.server_close()


def hub_at(hubs: List[Tuple[Hub, Any]], address: str = "127.0.0.1", name: str = "") -> Hub:
    hub, server = start_hub(address, name or None)
    hubs.append((hub, server))
    return hub


def manager(tmp_path: Path, entries: Sequence[Dict[str, Any]] = (), hf_endpoint: str = "",
            allowed: Sequence[str] = ()) -> ModelManager:
    data = tmp_path / "data"
    (data / "catalogues").mkdir(parents=True, exist_ok=True)
    (data / "catalogues" / "test.json").write_text(json.dumps({"format": "voicegen-catalogue", "version": 1,
                                                               "entries": list(entries)}))
    return ModelManager(data, {"rvc": RvcAdapter.describe}, hf_endpoint=hf_endpoint or None, timeout_s=5,
                        allow_private_urls=allowed)


@pytest.mark.parametrize("url, named", [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[fe80::1]/c.json", "fe80::1 is a link-local address"),
    ("http://10.1.2.3/c.json", "10.1.2.3 is a private address"),
    ("http://172.16.0.9/c.json", "172.16.0.9 is a private address"),
    ("http://192.168.1.1/c.json", "192.168.1.1 is a private address"),
    ("http://[fd00::1]/c.json", "fd00::1 is a private address"),
    ("http://0.0.0.0:1/c.json", "0.0.0.0 is an unspecified address"),
    ("http://[::1]:1/c.json", "::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]:1/c.json", "::ffff:127.0.0.1 is a loopback address"),
    ("http://127.0.0.1:1/c.json", "127.0.0.1 is a loopback address"),
    ("http://localhost:1/c.json", "localhost resolves to "),
])
def test_the_default_refuses_internal_addresses_by_name(tmp_path: Path, url: str, named: str) -> None:
    models = manager(tmp_path)
    with pytest.raises(UrlRefusedError) as refused:
        models.refresh_from_url(url)
    message = str(refused.value)
    assert message.startswith(url.split("/c.json")[0].split("/latest")[0]) and named in message, message
    assert "a loopback address" in message if "localhost" in url else True
    assert "only public addresses" in message and "allow_private_urls" in message


def test_the_default_refuses_a_local_catalogue_and_local_model_files_before_any_request(tmp_path: Path,
                                                                                    hubs: List[Tuple[Hub, Any]]) -> None:
    hub = hub_at(hubs)
    catalogue = hub.put_url("catalogue.json", b"{}")
    hub.put_hf("someone/voices", "model.pth", b"m" * 1000)
    model_url = hub.put_url("model.pth", b"m" * 1000)
    models = manager(tmp_path, [character("From Hub", [hf_file("someone/voices", "model.pth")]),
                                character("From Url", [{"source": "url", "url": model_url, "save_as": "model.pth"}]),
                                character("From Drive", [{"source": "gdrive", "url": model_url, "save_as": "model.pth"}])],
                     hf_endpoint=hub.url)
    with pytest.raises(UrlRefusedError, match="127.0.0.1 is a loopback address"):
        models.refresh_from_url(catalogue)
    for name in ("From Hub", "From Url", "From Drive"):
        models.download(name)
        summary = finished(models, "rvc/" + name)
        assert summary["state"] == "failed", summary
        assert summary["error"].startswith("model.pth: http://127.0.0.1:") and "127.0.0.1 is a loopback address" in summary["error"]
    assert hub.requests == [] and nothing_left(models)


def test_an_allowed_network_is_fetched(tmp_path: Path, hubs: List[Tuple[Hub, Any]]) -> None:
    hub = hub_at(hubs)
    catalogue = hub.put_url("mirror.json", json.dumps({"format": "voicegen-catalogue", "version": 1, "entries": [
        character("Mirrored", [hf_file("someone/voices", "model.pth")])]}).encode())
    assert manager(tmp_path, allowed=["127.0.0.1"]).refresh_from_url(catalogue)["entries"] == 1
    with pytest.raises(ValueError, match="allow_private_urls: 'mirror.lan' is not a network"):
        manager(tmp_path, allowed=["mirror.lan"])


def test_a_redirect_to_an_address_not_allowed_is_refused_at_every_hop(tmp_path: Path, hubs: List[Tuple[Hub, Any]]) -> None:
    """Only 127.0.0.1 is allowed; the second server listens on 127.0.0.2 (loopback too, not allowed). urllib's
    redirects are checked by the fetcher, gdown's (requests inside gdown) where the connection is opened."""
    allowed, other = hub_at(hubs, "127.0.0.1"), hub_at(hubs, "127.0.0.2")
    data = b"x" * 5000
    other.put_url("model.pth", data)
    for name in ("catalogue.json", "model.pth", "drive.pth"):
        allowed.faults["/files/" + name] = Fault(redirect_to=other.url + "/files/" + name)
    other.put_url("catalogue.json", b"{}")
    other.put_url("drive.pth", data)
    models = manager(tmp_path, [character("Url", [{"source": "url", "url": allowed.url + "/files/model.pth", "save_as": "m.pth"}]),
                                character("Drive", [{"source": "gdrive", "url": allowed.url + "/files/drive.pth", "save_as": "m.pth"}])],
                     allowed=["127.0.0.1/32"])
    with pytest.raises(UrlRefusedError, match="redirected to %s.*127.0.0.2 is a loopback address" % other.url):
        models.refresh_from_url(allowed.url + "/files/catalogue.json")
    for name in ("Url", "Drive"):
        models.download(name)
        summary = finished(models, "rvc/" + name)
        assert summary["state"] == "failed" and "127.0.0.2" in summary["error"] and "loopback" in summary["error"], summary
        assert "allow_private_urls" in summary["error"]
    assert other.requests == [] and nothing_left(models)


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1:1/model.pth", "gopher://127.0.0.1:1/x"])
def test_a_redirect_to_another_scheme_is_refused(tmp_path: Path, hubs: List[Tuple[Hub, Any]], location: str) -> None:
    hub = hub_at(hubs)
    hub.faults["/files/model.pth"] = Fault(redirect_to=location)
    hub.faults["/files/catalogue.json"] = Fault(redirect_to=location)
    models = manager(tmp_path, [character("Elsewhere", [{"source": "url", "url": hub.url + "/files/model.pth", "save_as": "m.pth"}])],
                     allowed=LOOPBACK)
    scheme = location.split(":")[0]
    with pytest.raises(UrlRefusedError, match="redirected to %s:.*from http to %s is not followed" % (scheme, scheme)):
        models.refresh_from_url(hub.url + "/files/catalogue.json")
    models.download("Elsewhere")
    summary = finished(models, "rvc/Elsewhere")
    assert summary["state"] == "failed" and "from http to %s is not followed" % scheme in summary["error"], summary


def test_the_hub_token_is_not_carried_to_another_host(tmp_path: Path, hubs: List[Tuple[Hub, Any]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub answers HEAD itself but redirects the GET to a file host under another name: the token goes to the
    hub only."""
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    hub, files = hub_at(hubs, "127.0.0.1"), hub_at(hubs, "127.0.0.1", "localhost")
    data = b"weights" * 4000
    hub.put_hf("someone/voices", "model.pth", data)
    files.put_url("model.pth", data)
    hub.faults["/someone/voices/resolve/main/model.pth"] = Fault(redirect_to=files.url + "/files/model.pth")
    models = manager(tmp_path, [character("Token", [hf_file("someone/voices", "model.pth", sha256=hashlib.sha256(data).hexdigest())])],
                     hf_endpoint=hub.url, allowed=LOOPBACK)
    models.download("Token")
    summary = finished(models, "rvc/Token")
    assert summary["state"] == "installed", summary
    to_hub = [headers for method, path, headers in hub.requests if method == "GET" and path.endswith("model.pth")]
    assert to_hub and all(headers.get("Authorization") == "Bearer hf_secret_token" for headers in to_hub)
    [(method, _, headers)] = files.requests
    assert method == "GET" and "Authorization" not in headers, headers


@pytest.mark.parametrize("length", ["announced", "unannounced"])
def test_a_catalogue_larger_than_the_cap_is_refused(tmp_path: Path, hubs: List[Tuple[Hub, Any]], length: str) -> None:
    hub = hub_at(hubs)
    url = hub.put_url("huge.json", b" " * (MAX_CATALOGUE_BYTES + 1))
    hub.faults["/files/huge.json"] = Fault(no_length=length == "unannounced")
    models = manager(tmp_path, allowed=LOOPBACK)
    with pytest.raises(CatalogueError, match="larger than %d MB" % (MAX_CATALOGUE_BYTES >> 20)):
        models.refresh_from_url(url)
    assert not models.layout.catalogues_dir.joinpath("huge.json").exists()
