"""Audio bytes for a take that arrives in pieces: each piece encoded as it comes, for a chunked HTTP answer.

``wav`` is 16-bit PCM behind a header whose sizes say "until the stream ends" (0xFFFFFFFF, as streaming servers
write it); ``pcm`` is the same samples with no header (OpenAI's ``pcm``); the compressed formats (mp3, opus, ogg,
flac) come from libsndfile writing into a buffer whose new bytes go out after each piece. Samples are converted
by libsndfile in every case, so a streamed ``wav`` holds exactly the samples of the stored ``wav``.
"""

from __future__ import annotations

import io
import struct
from typing import Optional

import numpy as np
import soundfile

from pipeline.audio_io import OUTPUT_FORMATS, output_sample_rate, pcm16
from pipeline.dsp import resample

__all__ = ["MEDIA_TYPES", "PCM_RATE_HZ", "StreamEncoder", "pcm16", "wav_header"]
STREAMING_SIZE = 0xFFFFFFFF
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg",
               "ogg": "audio/ogg"}
PCM_RATE_HZ = 24000
"""OpenAI's ``pcm`` is 24 kHz 16-bit little-endian mono: clients play it at that rate."""


def wav_header(sample_rate: int) -> bytes:
    """A PCM16 mono RIFF header for a stream of unknown length."""
    byte_rate = sample_rate * 2
    return (b"RIFF" + struct.pack("<I", STREAMING_SIZE) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, byte_rate, 2, 16)
            + b"data" + struct.pack("<I", STREAMING_SIZE))


class _Appended(io.BytesIO):
    """A buffer libsndfile writes into; ``new_bytes`` hands over what was appended since the last call (an encoder that
    seeks back to finish a header has already sent that part: a stream cannot take it back)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def new_bytes(self) -> bytes:
        data = self.getbuffer()[self.sent:].tobytes()
        self.sent += len(data)
        return data


class StreamEncoder:
    """One take's pieces (float32 mono at ``sample_rate``) to ``response_format`` bytes."""

    def __init__(self, response_format: str, sample_rate: int) -> None:
        self.format = response_format
        self.sample_rate = sample_rate
        self.out_rate = output_sample_rate(response_format, sample_rate) if response_format in OUTPUT_FORMATS else sample_rate
        self.buffer = _Appended()
        if response_format in ("wav", "pcm"):
            container, subtype = "RAW", "PCM_16"
        else:
            container, subtype = OUTPUT_FORMATS[response_format][:2]
        self.file: Optional[soundfile.SoundFile] = soundfile.SoundFile(
            self.buffer, "w", samplerate=self.out_rate, channels=1, format=container, subtype=subtype)
        self.started = False

    def encode(self, audio: np.ndarray) -> bytes:
        assert self.file is not None
        head = b""
        if not self.started:
            self.started = True
            head = wav_header(self.out_rate) if self.format == "wav" else b""
        if self.out_rate != self.sample_rate:  # Opus takes only some rates (pieces are sentences: their edges are pauses)
            audio = resample(audio, self.sample_rate, self.out_rate)
        self.file.write(np.asarray(audio, dtype=np.float32))
        return head + self.buffer.new_bytes()

    def close(self) -> bytes:
        if self.file is None:
            return b""
        head = b"" if self.started or self.format != "wav" else wav_header(self.out_rate)
        self.started = True
        self.file.close()
        self.file = None
        return head + self.buffer.new_bytes()
