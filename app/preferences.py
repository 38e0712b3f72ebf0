"""Saved choices everyone shares: a character's option defaults and the processing presets (on a shared server the
UI lets only the operator save them). Written atomically: a reader never sees half a file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from app.catalog import Catalog
from app.errors import UserFacingError
from pipeline.atomic_file import write_text_atomic
from pipeline.processing import PostOptions, PreOptions, PresetStore


class Preferences:
    def __init__(self, presets_dir: Path, catalog: Catalog, preset_store: PresetStore) -> None:
        self.presets_dir, self.catalog, self.preset_store = presets_dir, catalog, preset_store

    def _defaults_path(self, architecture: str, character_id: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._ -]", "_", character_id).strip(". ") or "_"
        return self.presets_dir / "characters" / architecture / (safe + ".json")

    def character_defaults(self, architecture: str, character_id: str) -> Dict[str, Any]:
        """Options saved for this character (e.g. an RVC voice's pitch shift); the manifest's defaults for the rest."""
        try:
            saved = json.loads(self._defaults_path(architecture, character_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        known = {option.name for option in self.catalog.manifest(architecture).options}
        return {name: value for name, value in saved.items() if name in known} if isinstance(saved, dict) else {}

    def save_character_defaults(self, architecture: str, character_id: str, options: Optional[Dict[str, Any]]) -> str:
        manifest = self.catalog.manifest(architecture)
        character = self.catalog.character(architecture, character_id)
        try:
            resolved = manifest.resolve_options(options or {})
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
        changed = {option.name: resolved[option.name] for option in manifest.options if resolved[option.name] != option.default}
        write_text_atomic(self._defaults_path(architecture, character.id), json.dumps(changed, indent=1))
        return "saved %d option(s) as %s / %s's defaults" % (len(changed), architecture, character.id)

    def default_processing(self) -> Dict[str, Dict[str, Any]]:
        return {"preprocess": PreOptions().to_dict(), "postprocess": PostOptions().to_dict()}

    def presets(self) -> List[str]:
        return self.preset_store.names()

    def save_preset(self, name: str, preprocess: Optional[Dict[str, Any]], postprocess: Optional[Dict[str, Any]]) -> str:
        try:
            self.preset_store.save(name, PreOptions.from_dict(preprocess), PostOptions.from_dict(postprocess))
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
        return "saved preset %r" % name

    def load_preset(self, name: str) -> Dict[str, Dict[str, Any]]:
        try:
            pre, post = self.preset_store.load(name)
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
        return {"preprocess": pre.to_dict(), "postprocess": post.to_dict()}
