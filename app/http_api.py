"""A plain HTTP speech route on the same server, shaped like OpenAI's ``POST /v1/audio/speech``, for
clients that want audio bytes back without Gradio's request cycle (~0.15 s here)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Dict, Literal, Optional

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBearer
from pydantic import BaseModel, Field

from app.access import Access
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


BASIC = HTTPBasic(auto_error=False)
BEARER = HTTPBearer(auto_error=False)


async def caller(request: Request, access: Access) -> Optional[str]:
    """The user a request authenticates as ("" when the app needs no login); None: not authorised.
    HTTP Basic through FastAPI's helper; ``Bearer user:password`` for OpenAI-style clients (their api_key)."""
    if not access.needs_login:
        return ""
    try:
        basic = await BASIC(request)
    except HTTPException:  # not base64, not ASCII, no colon: the same answer as a wrong password
        return None
    if basic is not None:
        return basic.username if access.check(basic.username, basic.password) else None
    bearer = await BEARER(request)
    if bearer is not None:
        # Starlette hands header values over as latin-1 text: back to the bytes the client sent
        user, sep, password = bearer.credentials.encode("latin-1").partition(b":")
        if sep and access.check_bytes(user, password):
            return user.decode("utf-8")
    return None


def add_http_routes(app: FastAPI, station: Workstation) -> None:
    async def authorised(request: Request) -> Optional[str]:
        return await caller(request, station.access)

    def speech(body: SpeechRequest, request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
            return _error(401, "this server needs credentials: HTTP Basic, or 'Bearer user:password'")
        # each request is its own session: a /cancel from one client never reaches another's jobs
        session = "http:%s:%s" % (user, uuid.uuid4().hex)
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
                postprocess=postprocess, use_cache=body.cache, speak_with=body.speak_with, session=session,
            )
        except UserFacingError as exc:
            return _error(400, redact(str(exc)))
        except Exception as exc:  # the boundary to a remote client: log it whole, answer with its id
            return _error(500, unexpected(exc, "/v1/audio/speech", logger))
        return Response(generation.path.read_bytes(), media_type=MEDIA_TYPES[body.response_format])

    def models(request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
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
