"""A plain HTTP speech route on the same server, shaped like OpenAI's ``POST /v1/audio/speech``, for
clients that want audio bytes back without Gradio's request cycle (~0.15 s here)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.middleware import Middleware

from app.access import Access, authenticate_header
from app.actions import Generation, Workstation
from app.aliases import Aliases
from app.errors import UserFacingError
from app.guard import HostPolicy, LoginThrottle, RequestGuard, host_name
from app.http_stream import first_word, streamed_answer
from app.identity import client_identity
from app.public_errors import for_person
from app.rate_limits import RateLimits
from app.stream_encoding import MEDIA_TYPES, PCM_RATE_HZ
from app.ui_processing import parse_json_object
from jobs.spec import JobSpec

logger = logging.getLogger(__name__)


class SpeechRequest(BaseModel):
    model: str = Field("piper", description="architecture id, or an alias such as tts-1 (see /v1/models)")
    input: str = Field(..., description="the text to speak")
    voice: Optional[str] = Field(None, description="character id; default: the architecture's first")
    response_format: Literal["wav", "pcm", "flac", "mp3", "opus", "ogg"] = "wav"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    cache: bool = Field(True, description="answer an identical earlier request from the cache")
    speak_with: Optional[Dict[str, Any]] = Field(
        None, description="for a conversion model: the TTS that speaks the input first ({architecture, character, options}); "
        "default: the default voice")
    stream: Optional[bool] = Field(
        None, description="send the audio as it is made (chunked); false: the whole file at the end; default: streamed, but for flac "
        "(a streamed FLAC cannot say its length, and common readers then take it for an endless file)")
    reference_audio: Optional[str] = Field(
        None, description="for a model that speaks in the voice of a recording (its 'reference' in /v1/models): that recording, "
        "an audio file (wav, flac, ogg, mp3) as base64")
    stream_format: Literal["audio", "sse"] = Field("audio", description="sse: OpenAI's server-sent events (base64 deltas)")


def wav_frames(data: bytes) -> bytes:
    """A 16-bit wav file's samples without its header."""
    import soundfile

    frames, _ = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    return bytes(frames[:, 0].astype("<i2").tobytes())


WHOLE_BY_DEFAULT = ("flac",)
"""Formats answered whole unless a stream is asked for."""


def reference_file(encoded: Optional[str], folder: Path) -> Optional[str]:
    """A base64 recording written to ``folder`` (the request's checks decode it as any upload); None without one."""
    if not encoded:
        return None
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise UserFacingError("reference_audio is not base64: give the recording's file bytes as base64") from None
    path = folder / "reference.audio"
    path.write_bytes(data)
    return str(path)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


def _failure(exc: BaseException, route: str) -> JSONResponse:
    """A failure as the person reads it (``app.public_errors.for_person``, the mapping Gradio uses too)."""
    public = for_person(exc, route, logger)
    return _error(public.status, public.message)


async def caller(request: Request, access: Access) -> Optional[str]:
    """The user a request authenticates as ("" when the app needs no login); None: not authorised. (The request
    guard has checked the same before the body was read: see ``app.guard``.)"""
    return authenticate_header(request.headers.get("authorization", "").encode("latin-1"), access)


def add_http_routes(app: FastAPI, station: Workstation) -> None:
    aliases = Aliases(station.settings.model_aliases, station.settings.voice_aliases)

    def no_credentials() -> Response:
        return _error(401, "this server needs credentials: an API key ('Bearer vgk_...'), HTTP Basic, or 'Bearer user:password'")

    async def authorised(request: Request) -> Optional[str]:
        return await caller(request, station.access)

    def owner_and_session(user: str, request: Request) -> Tuple[str, str, str]:
        """(owner, session, client): each request is its own session (a /cancel from one never reaches another's jobs);
        the client, for quotas and turns, is the login, else the address."""
        session = "http:%s:%s" % (user, uuid.uuid4().hex)
        client = client_identity(user, request.client.host if request.client else "")
        return ("user:%s" % user if user else session), session, client

    def voice_of(model: str, voice: Optional[str]) -> Tuple[str, str]:
        """(architecture, character) for a model and voice name, ours or OpenAI's (through the aliases)."""
        architecture = aliases.architecture(model)
        architecture, character = aliases.character(architecture, voice, [c.id for c in station.characters(architecture)])
        return architecture, character or ""

    def answer(generation: Generation, response_format: str) -> Response:
        data = generation.path.read_bytes()
        if response_format == "pcm":  # the stored wav's samples, headerless
            data = wav_frames(data)
        return Response(data, media_type=MEDIA_TYPES.get(response_format, "application/octet-stream"),
                        headers={"X-Job-Id": generation.job_id})

    async def speech(body: SpeechRequest, request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
            return no_credentials()
        owner, session, client = owner_and_session(user, request)
        asked = body.stream if body.stream is not None else body.response_format not in WHOLE_BY_DEFAULT
        streaming = body.stream_format == "sse" or asked
        try:
            architecture, voice_id = await asyncio.to_thread(voice_of, body.model, body.voice)
            manifest = station.manifest(architecture)
            options = manifest.speed_options(body.speed)  # the model's own tempo sounds better than a stretch
            postprocess: Dict[str, Any] = {"speed": body.speed} if not options and body.speed != 1.0 else {}
            if body.response_format == "pcm":  # kept as a wav at the rate OpenAI's pcm promises
                postprocess["sample_rate_hz"] = PCM_RATE_HZ
            stored_format = "wav" if body.response_format == "pcm" else body.response_format
            with tempfile.TemporaryDirectory(dir=station.settings.temp_dir) as folder:  # the job service keeps its own copy
                reference = reference_file(body.reference_audio, Path(folder))
                spec = JobSpec(architecture, voice_id, body.input, reference, options, stored_format, None, postprocess, body.cache,
                               body.speak_with, stream=streaming)
                job_id = await asyncio.to_thread(station.submit, spec, owner, session, None, client)
            if not streaming:
                return answer(await asyncio.to_thread(station.wait, job_id), body.response_format)
            take = station.live.open(job_id)
            take.watch(lambda: station.wait(job_id))
            await first_word(take)
        except Exception as exc:  # the boundary to a remote client: the unexpected is logged whole, answered with its id
            return _failure(exc, "/v1/audio/speech")
        return streamed_answer(station, job_id, owner, take, body.response_format, lambda exc: _failure(exc, "/v1/audio/speech"),
                               sse=body.stream_format == "sse")

    def upload_to(file: UploadFile, folder: str, name: str) -> Optional[Path]:
        """The upload written to ``folder`` (None: over the size limit)."""
        suffix = Path(file.filename or "input.wav").suffix.lower()[:8] or ".wav"
        path, size, limit_bytes = Path(folder) / (name + suffix), 0, station.settings.max_upload_mb << 20
        with path.open("wb") as out:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > limit_bytes:
                    return None
                out.write(chunk)
        return path

    def too_big() -> Response:
        return _error(413, "the upload is over this server's %d MB limit" % station.settings.max_upload_mb)

    def with_upload(file: UploadFile, name: str, route: str, use: Callable[[Path], Response]) -> Response:
        """``use`` of the upload, written to a scratch folder removed afterwards; over the size limit: 413; any failure:
        the app's error answer for ``route`` (the boundary to a remote client)."""
        with tempfile.TemporaryDirectory(dir=station.settings.temp_dir) as folder:
            try:
                upload = upload_to(file, folder, name)
                if upload is None:
                    return too_big()
                return use(upload)
            except Exception as exc:  # the boundary to a remote client
                return _failure(exc, route)

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
            return no_credentials()
        owner, session, client = owner_and_session(user, request)

        def convert(upload: Path) -> Response:
            parsed = {name: parse_json_object(value, name) for name, value in
                      (("options", options), ("preprocess", preprocess), ("postprocess", postprocess))}
            architecture, voice_id = voice_of(model, voice)
            generation = station.generate(
                architecture, voice_id, audio_path=str(upload), options=parsed["options"], output_format=response_format,
                preprocess=parsed["preprocess"], postprocess=parsed["postprocess"], use_cache=cache, session=session, owner=owner,
                client=client,
            )
            return answer(generation, response_format)

        return with_upload(file, "upload", "/v1/audio/conversion", convert)

    def covers(
        request: Request,
        file: UploadFile = File(..., description="the song"),
        model: str = Form(..., description="a conversion architecture (see /v1/models)"),
        voice: Optional[str] = Form(None, description="character (or saved voice) id; default: the architecture's first"),
        response_format: str = Form("wav"),
        options: Optional[str] = Form(None, description="JSON object of the conversion architecture's options"),
        cover: Optional[str] = Form(None, description="JSON object: separator, separator_model, separator_options, remix"),
        cache: bool = Form(True),
        user: Optional[str] = Depends(authorised),
    ) -> Response:
        """A song cover; the mix comes back, its stems from /v1/jobs/{id}/stems/{vocals|accompaniment|converted_vocals}."""
        if user is None:
            return no_credentials()
        owner, session, client = owner_and_session(user, request)

        def make_cover(song: Path) -> Response:
            architecture, voice_id = voice_of(model, voice)
            generation = station.cover(architecture, voice_id, str(song), parse_json_object(options, "options"),
                                       parse_json_object(cover, "cover"), response_format, session=session, owner=owner,
                                       use_cache=cache, client=client)
            return answer(generation, response_format)

        return with_upload(file, "song", "/v1/audio/covers", make_cover)

    def stem(job_id: str, name: str, request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
            return no_credentials()
        try:
            record = station.jobs.get(job_id, "user:%s" % user if user else None)
            stems = ((record.get("provenance") or {}).get("cover") or {}).get("stems") or {}
            if name not in stems:
                return _error(404, "job %s has no stem %r (a cover's are: %s)" % (job_id, name, ", ".join(stems) or "none: not a cover"))
            path = station.jobs.artifacts.path_for(stems[name])
            if not path.is_file():
                return _error(404, "the %s stem of job %s is no longer kept (the stems cache keeps the newest songs)" % (name, job_id))
            return Response(path.read_bytes(), media_type="audio/wav", headers={"X-Job-Id": job_id})
        except Exception as exc:  # the boundary to a remote client (no such job for this caller: 404)
            return _failure(exc, "/v1/jobs/stems")

    def save_voice(
        request: Request,
        file: UploadFile = File(..., description="3-30 s of one person speaking"),
        name: str = Form(..., description="the voice's name"),
        transcript: str = Form("", description="what the recording says (F5-TTS needs it)"),
        user: Optional[str] = Depends(authorised),
    ) -> Response:
        if user is None:
            return no_credentials()
        owner, _, _ = owner_and_session(user, request)

        def save(recording: Path) -> Response:
            saved = station.save_voice(name, str(recording), transcript, owner, "upload %s" % (file.filename or "")[:100])
            return JSONResponse(saved.to_dict(), status_code=201)

        return with_upload(file, "voice", "/v1/voices", save)

    def list_voices(request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
            return no_credentials()
        return JSONResponse({"object": "list", "data": [v.to_dict() for v in station.list_voices()]})

    def delete_voice(voice_id: str, request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
            return no_credentials()
        owner, _, _ = owner_and_session(user, request)
        try:
            return JSONResponse({"message": station.delete_voice(voice_id, owner)})
        except Exception as exc:  # the boundary to a remote client
            return _failure(exc, "/v1/voices")

    async def live(job_id: str, request: Request, response_format: str = "mp3") -> Response:
        """A take as it is made, for the page's player (``<audio src>``: no credentials to send). The job's id, random and
        given only to whoever asked for it, is what lets one follow it; a take that is not streaming is 404."""
        take = station.live.get(job_id)
        if take is None or response_format not in MEDIA_TYPES:
            return _error(404, "no take is being made under that id (or the format is unknown)")
        await first_word(take)
        # the page's player going away is not a cancel (a person may close it and keep the job): no owner to cancel for
        return streamed_answer(station, job_id, "", take, response_format, lambda exc: _failure(exc, "/live"), cancel_on_leave=False)

    def job(job_id: str, request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
            return no_credentials()
        try:  # without logins a job id (random, 128 bits) is what proves it is yours
            return JSONResponse(station.jobs.status(job_id, "user:%s" % user if user else None))
        except Exception as exc:  # the boundary to a remote client (no such job for this caller: 404)
            return _failure(exc, "/v1/jobs")

    def models(request: Request, user: Optional[str] = Depends(authorised)) -> Response:
        if user is None:
            return no_credentials()
        data: List[Dict[str, Any]] = [{"id": a["id"], "object": "model", "name": a["name"], "capabilities": a["capabilities"],
                                       "reference": a.get("reference"), "zero_shot": a.get("zero_shot"),
                                       "licence": a.get("licence"), "owned_by": "voice-workstation"} for a in station.architectures()]
        data += [{"id": alias["id"], "object": "model", "alias_of": alias["alias_of"], "owned_by": "voice-workstation"}
                 for alias in aliases.listed()]
        return JSONResponse({"object": "list", "data": data})

    # Put ours first: Gradio's own routes include catch-alls that would otherwise answer.
    routes = [
        APIRoute("/v1/audio/speech", speech, methods=["POST"], response_class=Response),
        APIRoute("/v1/audio/conversion", conversion, methods=["POST"], response_class=Response),
        APIRoute("/v1/audio/covers", covers, methods=["POST"], response_class=Response),
        APIRoute("/v1/jobs/{job_id}/stems/{name}", stem, methods=["GET"], response_class=Response),
        APIRoute("/v1/voices", save_voice, methods=["POST"], response_class=Response),
        APIRoute("/v1/voices", list_voices, methods=["GET"], response_class=Response),
        APIRoute("/v1/voices/{voice_id}", delete_voice, methods=["DELETE"], response_class=Response),
        APIRoute("/v1/jobs/{job_id}", job, methods=["GET"], response_class=Response),
        APIRoute("/v1/models", models, methods=["GET"], response_class=Response),
        APIRoute("/live/{job_id}", live, methods=["GET"], response_class=Response),
    ]
    for route in reversed(routes):
        app.router.routes.insert(0, route)



def guard_middleware(station: Workstation) -> Middleware:
    """The request guard (``app.guard``) for the server's middleware list, so it is there from the first request."""
    settings = station.settings
    hosts = HostPolicy(frozenset(host_name(h) for h in settings.trusted_hosts.split(",") if h.strip()), settings.share)
    throttle = LoginThrottle(settings.failed_login_limit, settings.failed_login_window_s)
    return Middleware(RequestGuard, access=station.access, hosts=hosts, throttle=throttle,
                      max_body_bytes=settings.max_upload_mb << 20, on_refuse=station.metrics.refused,
                      rate_limits=RateLimits(settings.rate_limit_per_min, settings.rate_limit_burst))
