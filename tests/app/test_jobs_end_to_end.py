"""Jobs, history, batch and the job API, used as a script would: gradio_client, plain HTTP, the openai package."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

import httpx
import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import AppServer, start_app, wait_until

SIGNATURES = Path(__file__).with_name("api_signatures.json")


@pytest.fixture(scope="module")
def client(app_server: AppServer) -> Client:
    return Client(app_server.url, verbose=False)


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000.0
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path


def job_state(client: Client, job_id: str) -> str:
    return str(client.predict(job_id, api_name="/job")["state"])


def signatures(client: Client) -> Dict[str, List[List[Any]]]:
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    return {name: [[p["parameter_name"], p["parameter_has_default"], p["parameter_default"]] for p in spec["parameters"]]
            for name, spec in sorted(endpoints.items())}


def test_endpoint_signatures_are_pinned(client: Client) -> None:
    """A change to a named endpoint's parameters (name, order, default) must be made on purpose: regenerate the
    file with VOICEGEN_UPDATE_API_SIGNATURES=1 and say so in the README."""
    current = signatures(client)
    if os.environ.get("VOICEGEN_UPDATE_API_SIGNATURES"):
        lines = ["  %s: %s" % (json.dumps(name), json.dumps(parameters)) for name, parameters in current.items()]
        SIGNATURES.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    assert current == json.loads(SIGNATURES.read_text())


def test_the_short_call_form(client: Client) -> None:
    path, info = client.predict("piper", "joe", "Hello", api_name="/generate")
    assert re.fullmatch(r"[0-9a-f]{32}", info["job_id"]) and info["job_id"] in Path(path).name
    audio, rate = soundfile.read(path)
    assert rate == 22050 and len(audio) > 0.2 * rate
    record = client.predict(info["job_id"], api_name="/job")
    assert record["state"] == "succeeded" and {"queue_wait_s", "generate_s", "post_s", "encode_s"} <= set(record["timings_s"])


def test_submit_then_follow_the_job_into_history(client: Client) -> None:
    submitted = client.predict("piper", "joe", "A durable job.", None, {"length_scale": 1.2}, "mp3", api_name="/submit")
    job_id = submitted["job_id"]
    assert submitted["state"] in ("queued", "running", "succeeded")
    assert wait_until(lambda: job_state(client, job_id) == "succeeded", 60)
    assert job_id in [row["job_id"] for row in client.predict("durable", api_name="/history")]
    assert client.predict("no such words", api_name="/history") == []
    audio, record = client.predict(job_id, api_name="/history_item")
    assert Path(audio).read_bytes()[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")  # an mp3
    provenance = record["provenance"]
    assert provenance["options"]["length_scale"] == 1.2 and provenance["output_format"] == "mp3"
    assert re.fullmatch(r"[0-9a-f]{64}", provenance["model_files"]["builtin:joe"])
    assert re.fullmatch(r"\d+\.\d+\.\d+(\+g[0-9a-f]{12})?", provenance["app_version"])  # the commit, in a checkout
    assert record["request"]["output_format"] == "mp3" and record["file_kept"]
    flac = client.predict(job_id, "flac24", api_name="/export")  # from the lossless master, not the mp3
    exported, rate = soundfile.read(flac)
    info = soundfile.info(flac)
    assert info.subtype == "PCM_24" and rate == 22050 and abs(len(exported) / rate - record["duration_s"]) < 0.01
    assert "deleted" in client.predict(job_id, api_name="/delete_history_item")
    with pytest.raises(AppError, match="no job"):
        client.predict(job_id, api_name="/job")


def test_regenerate_makes_a_new_take_with_edited_settings(client: Client) -> None:
    _, info = client.predict("piper", "joe", "First take.", api_name="/generate")
    again = client.predict(info["job_id"], {"text": "Second take."}, api_name="/regenerate")
    assert again["job_id"] != info["job_id"]
    assert wait_until(lambda: job_state(client, again["job_id"]) == "succeeded", 60)
    _, record = client.predict(again["job_id"], api_name="/history_item")
    assert record["text"] == "Second take." and record["request"]["use_cache"] is False and not record["cached"]
    with pytest.raises(AppError, match="no setting 'colour'"):
        client.predict(info["job_id"], {"colour": "red"}, api_name="/regenerate")


def test_other_sessions_see_nothing_of_mine(client: Client, app_server: AppServer) -> None:
    _, info = client.predict("piper", "joe", "Private words.", api_name="/generate")
    stranger = Client(app_server.url, verbose=False)
    assert stranger.predict(api_name="/history") == []
    for endpoint in ("/job", "/history_item", "/delete_history_item", "/retry_job", "/cancel_job"):
        with pytest.raises(AppError, match="no job"):
            stranger.predict(info["job_id"], api_name=endpoint)
    with pytest.raises(AppError, match="no job"):
        stranger.predict(info["job_id"], "wav", api_name="/export")
    # the output's name carries the job's random id: the name without it (all a guess could know) is nothing
    real = app_server.data_dir / "outputs"
    [mine] = [p for p in real.rglob("*.wav") if info["job_id"] in p.name]
    guessed = mine.with_name(mine.name.replace("-" + info["job_id"], ""))
    answer = httpx.get(app_server.url + "gradio_api/file=" + str(guessed))
    assert answer.status_code in (403, 404)


def test_cancel_a_queued_and_a_running_job(client: Client, tone: Path) -> None:
    slow = [client.predict("fake", "plain", "", handle_file(str(tone)), {"sleep_s": 30}, api_name="/submit")["job_id"] for _ in range(3)]
    assert wait_until(lambda: [job_state(client, j) for j in slow] == ["running", "running", "queued"], 30)
    status = client.predict(slow[2], api_name="/job")
    assert status["queue_position"] == 1 and "queued" in status["message"]
    assert "cancelling" in client.predict(slow[2], api_name="/cancel_job")
    assert job_state(client, slow[2]) == "cancelled"
    for job_id in slow[:2]:
        client.predict(job_id, api_name="/cancel_job")
    assert wait_until(lambda: all(job_state(client, j) == "cancelled" for j in slow), 30)
    with pytest.raises(AppError, match="already ended"):
        client.predict(slow[0], api_name="/cancel_job")


def test_a_failed_job_can_be_retried(client: Client, tone: Path) -> None:
    with pytest.raises(AppError):
        client.predict("fake", "plain", "", handle_file(str(tone)), {"mode": "bad_request"}, api_name="/generate")
    [failed] = client.predict(None, "fake", "failed", api_name="/history")[:1]
    assert failed["error"]
    retried = client.predict(failed["job_id"], api_name="/retry_job")
    assert retried["job_id"] == failed["job_id"]
    assert wait_until(lambda: job_state(client, failed["job_id"]) == "failed", 30)
    assert client.predict(failed["job_id"], api_name="/job")["attempts"] == 2
    with pytest.raises(AppError, match="only a failed, cancelled or interrupted job"):
        _, done = client.predict("piper", "joe", "Fine.", api_name="/generate")
        client.predict(done["job_id"], api_name="/retry_job")


def test_a_batch_of_fifty_lines_with_two_bad_ones(client: Client) -> None:
    lines = ["Line number %d." % i for i in range(1, 51)]
    lines[9] = lines[29] = "\x01\x02"  # nothing to say once control characters are removed
    archive_path, manifest = client.predict("piper", "joe", "\n".join(lines), api_name="/batch")
    assert [item["state"] for item in manifest].count("failed") == 2
    assert manifest[9]["error"] and "needs text" in manifest[9]["error"] and manifest[29]["state"] == "failed"
    with zipfile.ZipFile(archive_path) as archive:
        names = archive.namelist()
        assert len([n for n in names if n.endswith(".wav")]) == 48
        listed = json.loads(archive.read("manifest.json"))["items"]
        assert [i["file"] for i in listed] == [i["file"] for i in manifest]
        assert archive.read("manifest.csv").decode().splitlines()[0].startswith("item,text,input,file,state,error")
        first = soundfile.read(io.BytesIO(archive.read(manifest[0]["file"])))[0]
        assert len(first) > 0.3 * 22050
    batch_ids = {row["batch_id"] for row in client.predict("Line number", api_name="/history")}
    assert len(batch_ids) == 1 and None not in batch_ids


def test_a_batch_of_recordings_with_a_bad_one(client: Client, tone: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "notes.wav"
    garbage.write_bytes(b"this is not audio at all")
    archive_path, manifest = client.predict("fake", "plain", None, [handle_file(str(tone)), handle_file(str(garbage))],
                                            {"gain": 0.5}, "flac", api_name="/batch")
    assert [(item["input"], item["state"]) for item in manifest] == [("tone.wav", "succeeded"), ("notes.wav", "failed")]
    assert "not a readable audio file" in manifest[1]["error"] and "/" not in manifest[1]["error"]  # no server path
    with zipfile.ZipFile(archive_path) as archive:
        converted, rate = soundfile.read(io.BytesIO(archive.read(manifest[0]["file"])))
    assert manifest[0]["file"].endswith(".flac") and rate == 16000 and abs(len(converted) - 16000) < 200  # the input's second


def test_http_conversion_and_job_routes(app_server: AppServer, tone: Path) -> None:
    answer = httpx.post(app_server.url + "v1/audio/conversion", files={"file": ("tone.wav", tone.read_bytes(), "audio/wav")},
                        data={"model": "fake", "voice": "plain", "options": json.dumps({"gain": 0.5}), "response_format": "flac"},
                        timeout=60)
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/flac"
    audio, rate = soundfile.read(io.BytesIO(answer.content))
    assert rate == 16000 and abs(len(audio) - 16000) < 200
    status = httpx.get(app_server.url + "v1/jobs/" + answer.headers["x-job-id"]).json()
    assert status["state"] == "succeeded" and status["architecture"] == "fake"
    bad = httpx.post(app_server.url + "v1/audio/conversion", files={"file": ("x.wav", b"not audio", "audio/wav")},
                     data={"model": "fake", "options": "{\"gain\": 9}"}, timeout=60)
    assert bad.status_code == 400 and "gain" in bad.json()["error"]["message"]
    assert httpx.get(app_server.url + "v1/jobs/" + "0" * 32).status_code == 404


def test_without_logins_a_client_is_its_address(client: Client, app_server: AppServer) -> None:
    """Issue 17, defect 8: HTTP requests (each its own session) and gradio_client sessions from one address are one
    client for quotas and turns, not a new one per request."""
    from tests.app.test_strangers import job_clients

    ids = [httpx.post(app_server.url + "v1/audio/speech", json={"model": "piper", "input": "Turn %d." % index, "cache": False},
                      timeout=60).headers["x-job-id"] for index in range(2)]
    ids.append(client.predict("piper", "joe", "From a script.", api_name="/submit")["job_id"])
    assert job_clients(app_server, ids) == {"addr:127.0.0.1"}


def test_the_openai_client_with_hard_coded_names(app_server: AppServer) -> None:
    import openai

    api = openai.OpenAI(base_url=app_server.url + "v1", api_key="not-needed")
    speech = api.audio.speech.create(model="tts-1", voice="alloy", input="Hello from the OpenAI client.", response_format="wav")
    audio, rate = soundfile.read(io.BytesIO(speech.content))
    assert rate == 22050 and len(audio) > 0.5 * rate
    with api.audio.speech.with_streaming_response.create(model="tts-1-hd", voice="nova", input="Streamed.",
                                                         response_format="flac") as response:
        streamed = b"".join(response.iter_bytes())
    assert streamed[:4] == b"fLaC"
    models = {m.id: m for m in api.models.list().data}
    assert {"piper", "tts-1", "tts-1-hd"} <= set(models) and getattr(models["tts-1"], "alias_of", None) == "piper"
    with pytest.raises(openai.BadRequestError, match="unknown character 'nobody'"):
        api.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")  # type: ignore[arg-type]


ONE_AT_A_TIME = {"VOICEGEN_PREWARM": "", "VOICEGEN_MAX_JOBS_PER_ARCHITECTURE": "1"}


def a_running_and_a_queued_job(app: AppServer, tone: Path, running_s: float) -> Tuple[Client, str, str]:
    """On an app started with ONE_AT_A_TIME: a fake job sleeping ``running_s`` and one waiting behind it."""
    client = Client(app.url, verbose=False)
    running = client.predict("fake", "plain", "", handle_file(str(tone)), {"sleep_s": running_s}, api_name="/submit")["job_id"]
    queued = client.predict("fake", "plain", "", handle_file(str(tone)), {"gain": 0.5}, api_name="/submit")["job_id"]
    assert wait_until(lambda: job_state(client, running) == "running" and job_state(client, queued) == "queued", 30)
    return client, running, queued


def test_sigkill_with_jobs_in_flight_then_restart(tmp_path: Path, tone: Path) -> None:
    data = tmp_path / "data"
    env = ONE_AT_A_TIME
    app = start_app(data, extra_env=env)
    try:
        _, running, queued = a_running_and_a_queued_job(app, tone, 60)
        app.process.send_signal(signal.SIGKILL)
        app.process.wait(10)
    finally:
        app.stop()
    again = start_app(data, extra_env=env)
    try:
        assert any("1 interrupted" in line and "1 queued again" in line for line in again.log)

        def status(job_id: str) -> Dict[str, Any]:
            return dict(httpx.get(again.url + "v1/jobs/" + job_id).json())

        assert status(running)["state"] == "interrupted" and "Retry" in status(running)["error"]
        assert wait_until(lambda: status(queued)["state"] == "succeeded", 60)  # its input recording was kept
        assert status(queued)["file"]
    finally:
        again.stop()


@pytest.mark.parametrize("same_port", [True, False], ids=["launched twice", "on another port"])
def test_a_second_app_on_the_same_data_folder_leaves_the_first_alone(tmp_path: Path, tone: Path, same_port: bool) -> None:
    """Launching twice is common (a second click). Two apps over one data folder share one job database:
    the second's start-up recovery would mark the first's running job interrupted and run its queued
    job a second time. The second launch names the first and stops before touching anything."""
    import subprocess
    import sys
    import time

    from tests.conftest import PROJECT_ROOT, TEST_SPECS, built_envs_dir, free_port

    data = tmp_path / "data"
    env = ONE_AT_A_TIME
    first = start_app(data, extra_env=env)
    try:
        client, running, queued = a_running_and_a_queued_job(first, tone, 8)
        port = first.url.rstrip("/").rsplit(":", 1)[1] if same_port else str(free_port())
        started = time.monotonic()
        paths = {"VOICEGEN_ENVS_DIR": str(built_envs_dir()), "VOICEGEN_EXTRA_SPEC_DIRS": str(TEST_SPECS)}
        second = subprocess.run([sys.executable, "-m", "app", "serve", "--no-browser", "--port", port, "--data-dir", str(data)],
                                cwd=str(PROJECT_ROOT), capture_output=True, text=True, timeout=120, env=dict(os.environ, **paths, **env))
        said = second.stdout + second.stderr
        assert second.returncode == 0 and "already running on this data folder" in said and first.url in said, said
        assert time.monotonic() - started < 15, said  # it stopped before loading the app
        assert "Jobs from the last run" not in said
        assert job_state(client, running) == "running"  # not marked interrupted under the first app
        assert wait_until(lambda: job_state(client, running) == "succeeded" and job_state(client, queued) == "succeeded", 60)
        assert client.predict(queued, api_name="/job")["attempts"] == 1  # run once, by the first app
    finally:
        first.stop()
