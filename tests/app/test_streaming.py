"""Speech that streams: ``POST /v1/audio/speech`` sends each sentence as it is made, through a real HTTP client (httpx,
and the official ``openai`` client), against the app started as the launcher does, with Piper's real voice."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import httpx
import numpy as np
import pytest
import soundfile

from tests.conftest import AppServer, start_app, wait_until

FIVE_SENTENCES = " ".join([
    "The first sentence of this paragraph is spoken while the others wait.",
    "A second sentence follows it, about as long as the first one was.",
    "Then comes a third sentence, which is also of a similar length.",
    "The fourth sentence keeps the pattern going for one more line.",
    "And the fifth sentence closes the paragraph at the very end.",
])
WAV_HEADER_BYTES = 44


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    app = start_app(tmp_path_factory.mktemp("app-data"))
    httpx.post(app.url + "v1/audio/speech", json={"input": "Warm up.", "stream": False}, timeout=120)  # worker started, voice loaded
    yield app
    app.stop()


def stream_speech(server: AppServer, body: dict) -> Tuple[httpx.Response, List[Tuple[float, bytes]], float]:
    """The answer's chunks with the time each arrived (from the request), and the time of the whole answer."""
    chunks: List[Tuple[float, bytes]] = []
    started = time.perf_counter()
    with httpx.stream("POST", server.url + "v1/audio/speech", json=body, timeout=120) as response:
        for chunk in response.iter_bytes():
            chunks.append((time.perf_counter() - started, chunk))
    return response, chunks, time.perf_counter() - started


def wav_samples(data: bytes) -> Tuple[np.ndarray, int]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[36:40] == b"data", "not a streaming wav header"
    rate = struct.unpack("<I", data[24:28])[0]
    return np.frombuffer(data[WAV_HEADER_BYTES:], dtype="<i2"), rate


def stored_take(server: AppServer, job_id: str) -> Path:
    status = httpx.get(server.url + "v1/jobs/" + job_id, timeout=30).json()
    assert status["state"] == "succeeded", status
    [path] = list(server.data_dir.rglob(status["file"]))
    return path


def test_the_first_sentence_arrives_long_before_the_rest_and_the_pieces_are_the_stored_take(server: AppServer) -> None:
    response, chunks, total_s = stream_speech(server, {"input": FIVE_SENTENCES, "voice": "joe", "cache": False})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    assert response.headers.get("transfer-encoding") == "chunked" and "content-length" not in response.headers
    processing = json.loads(response.headers["x-streamed-processing"])
    assert processing["whole_take"] == [] and "loudness" in processing["incremental"]
    data = b"".join(chunk for _, chunk in chunks)
    first_audio_s = next(at for at, received in _cumulative(chunks) if received > WAV_HEADER_BYTES)
    # one sentence of five made and sent: the first audio comes in well under half the whole answer's time
    assert first_audio_s < 0.45 * total_s, "first audio after %.2f s of %.2f s" % (first_audio_s, total_s)
    samples, rate = wav_samples(data)
    stored, stored_rate = soundfile.read(stored_take(server, response.headers["x-job-id"]), dtype="int16")
    assert rate == stored_rate == 22050
    np.testing.assert_array_equal(samples, stored)  # what was heard is what history keeps
    assert samples.size > 10 * rate  # five sentences


def _cumulative(chunks: List[Tuple[float, bytes]]) -> Iterator[Tuple[float, int]]:
    """(arrival time, bytes received so far) per chunk."""
    received = 0
    for at, chunk in chunks:
        received += len(chunk)
        yield at, received


def test_a_client_that_goes_away_cancels_the_job(server: AppServer) -> None:
    long_text = " ".join([FIVE_SENTENCES] * 8)
    with httpx.stream("POST", server.url + "v1/audio/speech", json={"input": long_text, "cache": False}, timeout=120) as response:
        job_id = response.headers["x-job-id"]
        next(response.iter_bytes())  # the first piece is here: the job is running
    # the connection closed with most of the text unspoken
    def state() -> str:
        return str(httpx.get(server.url + "v1/jobs/" + job_id, timeout=30).json()["state"])

    assert wait_until(lambda: state() == "cancelled", 30), "the job went on: %s" % state()


def test_pcm_and_server_sent_events_as_openai_sends_them(server: AppServer) -> None:
    text = "Raw samples for a player. They come at twenty four kilohertz."
    response, chunks, _ = stream_speech(server, {"input": text, "response_format": "pcm"})
    pcm = np.frombuffer(b"".join(c for _, c in chunks), dtype="<i2")
    assert response.headers["content-type"] == "audio/pcm" and 2.0 * 24000 < pcm.size < 12.0 * 24000
    assert float(np.sqrt(np.mean((pcm / 32768.0) ** 2))) > 0.02
    response, chunks, _ = stream_speech(server, {"input": text, "response_format": "pcm", "stream_format": "sse"})
    events = [json.loads(line[len("data: "):]) for line in b"".join(c for _, c in chunks).decode().splitlines() if line]
    assert events[-1] == {"type": "speech.audio.done"} and all(e["type"] == "speech.audio.delta" for e in events[:-1])
    joined = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    np.testing.assert_array_equal(np.frombuffer(joined, dtype="<i2"), pcm)  # the same take (from the cache) either way


def test_the_openai_client_reads_the_stream(server: AppServer) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "v1", api_key="not-needed")
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input="Hello from the official client.",
                                                            response_format="mp3") as response:
        data = b"".join(response.iter_bytes())
    audio, rate = soundfile.read(io.BytesIO(data))
    assert rate == 22050 and audio.size > 0.8 * rate and float(np.sqrt(np.mean(audio**2))) > 0.02


def test_errors_before_any_audio_are_json_with_a_status(server: AppServer) -> None:
    bad = httpx.post(server.url + "v1/audio/speech", json={"input": "", "model": "piper"}, timeout=30)
    assert bad.status_code == 400 and "needs text" in bad.json()["error"]["message"]
    whole = httpx.post(server.url + "v1/audio/speech", json={"input": "A whole file.", "stream": False}, timeout=60)
    assert whole.status_code == 200 and int(whole.headers["content-length"]) == len(whole.content) > WAV_HEADER_BYTES


def test_gradio_client_iterates_the_pieces_and_then_gets_the_whole_take(server: AppServer) -> None:
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    job = client.submit("piper", "joe", FIVE_SENTENCES, None, None, "wav", None, None, False, None, api_name="/generate_stream")
    outputs = list(job)
    pieces, final = outputs[:-1], outputs[-1]
    assert len(pieces) >= 4 and not any(info["final"] for _, info in pieces) and final[1]["final"], [o[1] for o in outputs]
    joined = np.concatenate([soundfile.read(path, dtype="int16")[0] for path, _ in pieces])
    whole, rate = soundfile.read(final[0], dtype="int16")
    assert rate == 22050
    np.testing.assert_array_equal(joined, whole)  # the pieces heard are the take kept
    assert final[1]["streamed"]["incremental"] and final[1]["job_id"] == pieces[0][1]["job_id"]


def test_cancelling_a_gradio_client_stream_cancels_the_job(server: AppServer) -> None:
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    job = client.submit("piper", "joe", " ".join([FIVE_SENTENCES] * 8), None, None, "wav", None, None, False, None,
                        api_name="/generate_stream")
    assert wait_until(lambda: len(job.outputs()) >= 1, 60), "no first piece"
    job_id = job.outputs()[0][1]["job_id"]
    job.cancel()

    def state() -> str:
        return str(httpx.get(server.url + "v1/jobs/" + job_id, timeout=30).json()["state"])

    assert wait_until(lambda: state() == "cancelled", 30), "the job went on: %s" % state()
