"""A plain HTTP speech route on the same server, shaped like OpenAI's ``POST /v1/audio/speech``, for
clients that want audio bytes back without Gradio's request cycle (~0.15 s here)."""

from __future__ import annotations

import base64
import logging
import secrets
from typing import Any, Dict, Literal, Optional, Tuple

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from app.actions import Workstation
from app.errors import UserFacingError
from app.public_errors import redact, unexpected

logger = logging.getLogger(__name__)
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg", "ogg": "audio/ogg"}


class SpeechRequest(BaseModel):
    model: str = Field("piper", description="architecture id (see /v1/models)")
    input: str = Field(..., description="the text to speak")
    voice: Optional[str] = Field(None, description="character id; default: the architecture's first")
    response_format: Literal["wav", "flac", "mp3", "opus", "ogg"] = "wav"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    cache: bool = Field(True, description="answer an identical earlier request from the cache")
    speak_with: Optional[Dict[str, Any]] = Field(
        None, description="for a conversion model: the TTS that speaks the input first ({architecture, character, options}); "
        "default: the default voice")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


def _authorised(request: Request, auth: Optional[Tuple[str, str]]) -> bool:
    if auth is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    expected = "%s:%s" % auth
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value).decode()
        except ValueError:
            return False
    elif scheme.lower() != "bearer":
        return False
    return secrets.compare_digest(value, expected)


def add_http_routes(app: FastAPI, station: Workstation, auth: Optional[Tuple[str, str]]) -> None:
    def speech(body: SpeechRequest, request: Request) -> Response:
        if not _authorised(request, auth):
            return _error(401, "this server needs credentials: HTTP Basic, or 'Bearer user:password'")
        try:
            manifest = station.manifest(body.model)
            characters = station.characters(body.model)
            voice_id = body.voice or (characters[0].id if characters else "")
            options, postprocess = {}, {}
            if any(option.name == "length_scale" for option in manifest.options):
                options["length_scale"] = 1.0 / body.speed  # the model's own tempo sounds better than a stretch
            elif body.speed != 1.0:
                postprocess["speed"] = body.speed
            generation = station.generate(
                body.model, voice_id, text=body.input, options=options, output_format=body.response_format,
                postprocess=postprocess, use_cache=body.cache, speak_with=body.speak_with,
            )
        except UserFacingError as exc:
            return _error(400, redact(str(exc)))
        except Exception as exc:  # the boundary to a remote client: log it whole, answer with its id
            return _error(500, unexpected(exc, "/v1/audio/speech", logger))
        return Response(generation.path.read_bytes(), media_type=MEDIA_TYPES[body.response_format])

    def models(request: Request) -> Response:
        if not _authorised(request, auth):
            return _error(401, "this server needs credentials")
        data = [{"id": a["id"], "object": "model", "name": a["name"], "capabilities": a["capabilities"]} for a in station.architectures()]
        return JSONResponse({"object": "list", "data": data})

    # Put ours first: Gradio's own routes include catch-alls that would otherwise answer.
    routes = [
        APIRoute("/v1/audio/speech", speech, methods=["POST"], response_class=Response),
        APIRoute("/v1/models", models, methods=["GET"], response_class=Response),
    ]
    for route in reversed(routes):
        app.router.routes.insert(0, route)
