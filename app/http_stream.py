"""A job's take as a chunked HTTP answer: each piece encoded and sent as the runner publishes it (``app.live``), the
first before the rest is made. A client that goes away cancels the job; so does a cancel from elsewhere end the
answer. A take that came whole (an answer from the cache, a stage that needs the whole take) goes out as it is."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any, AsyncIterator, Callable, Dict, Optional

import numpy as np
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.actions import Workstation
from app.live import LiveTake
from app.stream_encoding import MEDIA_TYPES, StreamEncoder
from pipeline.audio_io import decode

logger = logging.getLogger(__name__)
POLL_S = 0.02
"""How often a follower with nothing new looks again: on the event loop, holding no thread (a thread per waiting
follower would drain the loop's small default pool when many listen at once); 20 ms is far under a sentence."""


async def first_word(take: LiveTake) -> None:
    """Wait until the take has a piece or has ended: an answer's status and headers depend on which."""
    while not take.pieces and not take.ended:
        await asyncio.sleep(POLL_S)


def streamed_answer(station: Workstation, job_id: str, owner: str, take: LiveTake, response_format: str,
                    failure: Callable[[BaseException], JSONResponse], sse: bool = False, cancel_on_leave: bool = True) -> Response:
    """The answer once ``first_word`` returned: the error as JSON if the job failed before any audio, else the stream."""
    if take.error is not None and not take.pieces:
        return failure(take.error)
    headers = {"X-Job-Id": job_id, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # nginx: pass pieces on at once
    if take.plan:
        headers["X-Streamed-Processing"] = json.dumps(take.plan, separators=(",", ":"))
    chunks = follow(station, job_id, owner, take, response_format, cancel_on_leave)
    body = _sse(chunks) if sse else chunks
    media_type = "text/event-stream" if sse else MEDIA_TYPES.get(response_format, "application/octet-stream")
    return StreamingResponse(body, media_type=media_type, headers=headers)


async def follow(station: Workstation, job_id: str, owner: str, take: LiveTake, response_format: str,
                 cancel_on_leave: bool = True) -> AsyncIterator[bytes]:
    encoder: Optional[StreamEncoder] = None
    sent = 0
    done = False
    try:
        while True:
            ended = take.ended  # read before the pieces: a take that ended has all its pieces by then
            pieces = take.pieces[sent:]
            if not pieces and not ended:
                await asyncio.sleep(POLL_S)
                continue
            for piece in pieces:
                encoder = encoder or StreamEncoder(response_format, piece.sample_rate)
                data = encoder.encode(piece.audio)
                sent += 1
                if data:
                    yield data
            if ended and sent >= len(take.pieces):
                break
        if encoder is None and take.error is None:  # nothing streamed: the take came whole (from the cache)
            async for data in _whole(take.outcome, response_format):
                yield data
        elif encoder is not None:
            tail = encoder.close()
            if tail:
                yield tail
        if take.error is not None:  # failed or cancelled after the audio began: the answer just ends
            logger.info("stream of job %s ended early: %s", job_id, take.error)
        done = True
    finally:
        if not done and cancel_on_leave:  # the client went away (or the server is stopping): nobody wants the rest
            station.jobs.cancel(job_id, owner)


async def _whole(generation: Any, response_format: str) -> AsyncIterator[bytes]:
    """A finished take's stored result in the asked format (the raw file where it is already that format)."""
    path = getattr(generation, "path", None)
    if path is None:
        return
    if response_format in ("wav", "pcm"):
        decoded = await asyncio.to_thread(decode, path)
        encoder = StreamEncoder(response_format, decoded.sample_rate)
        yield encoder.encode(np.asarray(decoded.audio.mean(axis=0), dtype=np.float32)) + encoder.close()
    else:
        yield await asyncio.to_thread(path.read_bytes)


async def _sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """OpenAI's ``stream_format: "sse"``: each chunk a ``speech.audio.delta`` event (base64), then ``speech.audio.done``."""
    try:
        async for chunk in chunks:
            event: Dict[str, Any] = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode("ascii")}
            yield ("data: %s\n\n" % json.dumps(event)).encode("ascii")
        yield b'data: {"type": "speech.audio.done"}\n\n'
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # its own clean-up (a cancel when the client went) runs now
