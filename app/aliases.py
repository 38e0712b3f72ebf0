"""OpenAI's model and voice names (``tts-1``, ``alloy``, ...) that many clients hard-code, mapped through
settings to our architectures and characters."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from app.errors import UserFacingError

OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin", "cedar")


def parse_pairs(text: str, what: str) -> Dict[str, str]:
    """``"a=b,c=d"`` -> {"a": "b", "c": "d"}; a malformed item is a configuration error naming it."""
    pairs: Dict[str, str] = {}
    for item in (part.strip() for part in (text or "").split(",")):
        if not item:
            continue
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise UserFacingError("%s: %r is not name=target" % (what, item))
        pairs[name.strip()] = target.strip()
    return pairs


class Aliases:
    def __init__(self, model_aliases: str, voice_aliases: str) -> None:
        self.models = parse_pairs(model_aliases, "model_aliases")
        self.voices = parse_pairs(voice_aliases, "voice_aliases")

    def architecture(self, model: str) -> str:
        return self.models.get(model, model)

    def character(self, architecture: str, voice: Optional[str], characters: List[str]) -> Tuple[str, Optional[str]]:
        """(architecture, character) for a voice name: ours, an alias (``alloy=joe`` or ``alloy=piper:amy``), or an
        OpenAI voice not configured, which speaks with the architecture's first character."""
        if not voice or voice in characters:
            return architecture, voice or (characters[0] if characters else None)
        target = self.voices.get(voice)
        if target is not None:
            arch, sep, character = target.partition(":")
            return (arch, character) if sep else (architecture, target)
        if voice.lower() in OPENAI_VOICES:
            return architecture, characters[0] if characters else None
        return architecture, voice  # unknown: generating names the problem and the characters there are

    def listed(self) -> List[Dict[str, str]]:
        return [{"id": name, "alias_of": target} for name, target in self.models.items()]
