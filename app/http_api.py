"""A plain HTTP speech route on the same server, shaped like OpenAI's ``POST /v1/audio/speech``, for
clients that want audio bytes back without Gradio's request cycle (~0.15 s here)."""

from __future__ import annotations

import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBearer
from pydantic import BaseModel, Field

from app.access import Access
from app.actions import Generation, Workstation
from app.aliases import Aliases
from app.errors import UserFacingError
from app.public_errors import redact, unexpected
from app.ui_processing import parse_json_object
from jobs.errors import JobError

logger = logging.getLogger(__name__)
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg", "ogg": "audio/ogg"}


class SpeechRequest(BaseModel):
    model: str = Field("piper", description="architecture id, or an alias such as tts-1 (see /v1/models)")
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
    aliases = Aliases(station.settings.model_aliases, station.settings.voice_aliases)

    async def authorised(request: Request) -> Optional[str]:
        return await caller(request, station.access)

    def owner_and_session(user: str) -> Tuple[str, str]:
        # each request is its own session: a /cancel from one client never reaches another's jobs
        session = "http:%s:%s" % (user, uuid.uuid4().hex)
        return ("user:%s" % user if user else session), session

    def voice_of(model: str, voice: Optional[str]) -> Tuple[str, str]:
        """(architecture, character) for a model and voice name, ours or OpenAI's (through the aliases)."""
        architecture = aliases.architecture(model)
        architecture, character = aliases.character(architecture, voice, [c.id for c in station.characters(architecture)])
        return architecture, character or ""

    def answer(generation: Generation, response_format: str) -> Response:
        return Response(generation.path.read_bytes(), media_type=MEDIA_TYPES.get(response_format, "application/octet-stream"),
                        headers={"X-Job-Id": generation.job_id})

    def speech(body: SpeechRequest, request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
            return _error(401, "this server needs credentials: HTTP Basic, or 'Bearer user:password'")
        owner, session = owner_and_session(user)
        try:
            architecture, voice_id = voice_of(body.model, body.voice)
            manifest = station.manifest(architecture)
            options, postprocess = {}, {}
            if any(option.name == "length_scale" for option in manifest.options):
                options["length_scale"] = 1.0 / body.speed  # the model's own tempo sounds better than a stretch
            elif body.speed != 1.0:
                postprocess["speed"] = body.speed
            generation = station.generate(
                architecture, voice_id, text=body.input, options=options, output_format=body.response_format,
                postprocess=postprocess, use_cache=body.cache, speak_with=body.speak_with, session=session, owner=owner,
            )
        except UserFacingError as exc:
            return _error(400, redact(str(exc)))
        except Exception as exc:  # the boundary to a remote client: log it whole, answer with its id
            return _error(500, unexpected(exc, "/v1/audio/speech", logger))
        return answer(generation, body.response_format)

    def conversion(
        request: Request,
        file: UploadFile = File(..., description="the recording to convert"),
        model: str = Form(..., description="a conversion architecture (see /v1/models)"),
        voice: Optional[str] = Form(None, description="character id; default: the architecture's first"),
        response_format: str = Form("wav"),
        options: Optional[str] = Form(None, description="JSON object of the architecture's options"),
        preprocess: Optional[str] = Form(None, description="JSON object"),
        postprocess: Optional[str] = Form(None, description="JSON object"),
        cache: bool = Form(True),
        user: Optional[str] = Depends(authorised),
    ) -> Response:
        if user is None:
            return _error(401, "this server needs credentials: HTTP Basic, or 'Bearer user:password'")
        owner, session = owner_and_session(user)
        suffix = Path(file.filename or "input.wav").suffix.lower()[:8] or ".wav"
        limit_bytes = station.settings.max_upload_mb << 20
        with tempfile.TemporaryDirectory(dir=station.settings.temp_dir) as folder:
            upload = Path(folder) / ("upload" + suffix)
            try:
                size = 0
                with upload.open("wb") as out:
                    while chunk := file.file.read(1 << 20):
                        size += len(chunk)
                        if size > limit_bytes:
                            return _error(413, "the recording is over this server's %d MB limit" % station.settings.max_upload_mb)
                        out.write(chunk)
                parsed = {name: parse_json_object(value, name) for name, value in
                          (("options", options), ("preprocess", preprocess), ("postprocess", postprocess))}
                architecture, voice_id = voice_of(model, voice)
                generation = station.generate(
                    architecture, voice_id, audio_path=str(upload), options=parsed["options"], output_format=response_format,
                    preprocess=parsed["preprocess"], postprocess=parsed["postprocess"], use_cache=cache, session=session, owner=owner,
                )
            except UserFacingError as exc:
                return _error(400, redact(str(exc)))
            except Exception as exc:  # the boundary to a remote client
                return _error(500, unexpected(exc, "/v1/audio/conversion", logger))
            return answer(generation, response_format)

    def job(job_id: str, request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
            return _error(401, "this server needs credentials")
        try:  # without logins a job id (random, 128 bits) is what proves it is yours
            return JSONResponse(station.jobs.status(job_id, "user:%s" % user if user else None))
        except JobError as exc:
            return _error(404, str(exc))

    def models(request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
            return _error(401, "this server needs credentials")
        data: List[Dict[str, Any]] = [{"id": a["id"], "object": "model", "name": a["name"], "capabilities": a["capabilities"],
                                       "owned_by": "voice-workstation"} for a in station.architectures()]
        data += [{"id": alias["id"], "object": "model", "alias_of": alias["alias_of"], "owned_by": "voice-workstation"}
                 for alias in aliases.listed()]
        return JSONResponse({"object": "list", "data": data})

    # Put ours first: Gradio's own routes include catch-alls that would otherwise answer.
    routes = [
        APIRoute("/v1/audio/speech", speech, methods=["POST"], response_class=Response),
        APIRoute("/v1/audio/conversion", conversion, methods=["POST"], response_class=Response),
        APIRoute("/v1/jobs/{job_id}", job, methods=["GET"], response_class=Response),
        APIRoute("/v1/models", models, methods=["GET"], response_class=Response),
    ]
    for route in reversed(routes):
        app.router.routes.insert(0, route)

