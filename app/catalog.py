"""What can be used: architectures, their characters, shared assets, and options unavailable right now (with why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from app.characters import Character, DescriptionMemo, list_characters
from app.errors import UserFacingError
from app.settings import Settings
from runtimes.environments import EnvSpec
from runtimes.manifest import Manifest
from runtimes.registry import adapter_class


class Catalog:
    def __init__(self, settings: Settings, specs: Dict[str, EnvSpec], manifests: Dict[str, Manifest]) -> None:
        self.settings, self.specs, self.manifests = settings, specs, manifests
        self._descriptions: Dict[str, DescriptionMemo] = {}

    def architectures(self) -> List[Dict[str, Any]]:
        return [
            {
                "id": name,
                "name": manifest.display_name,
                "capabilities": list(manifest.capabilities),
                "needs_text": manifest.needs_text,
                "needs_audio": manifest.needs_audio,
                "reference": manifest.to_dict()["reference"],
                "zero_shot": manifest.zero_shot,
                "licence": manifest.licence,
                "watermark": manifest.watermark,
                "stems": list(manifest.stems),
                "options": manifest.to_dict()["options"],
                "unavailable": self.unavailable_options(name, None),
            }
            for name, manifest in self.manifests.items()
        ]

    def _asset_files(self, name: str) -> List[Path]:
        path = self.settings.assets_dir / name
        return [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path] if path.is_file() else []

    def unavailable_options(self, architecture: str, character_id: Optional[str]) -> Dict[str, str]:
        """Options (``"name"``) and choices (``"name=value"``) that cannot be used now, with why: shared
        assets that are missing, and what the character's folder lacks (e.g. a cluster model)."""
        manifest = self.manifest(architecture)
        gaps = {option: "needs assets/%s, which is missing (%s)" % (asset.name, asset.source)
                for asset in manifest.assets if asset.needed_for and not self._asset_files(asset.name)
                for option in asset.needed_for.split(",")}
        if character_id:
            try:
                gaps.update(self.character(architecture, character_id).info.unavailable)
            except UserFacingError:
                pass  # an unknown character has no gaps of its own; generating with it says what is wrong
        return gaps

    def assets(self) -> List[Dict[str, Any]]:
        """Every architecture's shared assets: present or missing, and their size on disk."""
        rows = []
        for name, manifest in self.manifests.items():
            for asset in manifest.assets:
                files = self._asset_files(asset.name)
                rows.append({
                    "architecture": name, "asset": asset.name, "what": asset.label, "present": bool(files),
                    "size_mb": round(sum(p.stat().st_size for p in files) / (1 << 20), 1),
                    "needed_for": asset.needed_for or "every job", "get_it_from": asset.source,
                })
        return rows

    def manifest(self, architecture: str) -> Manifest:
        try:
            return self.manifests[architecture]
        except KeyError:
            raise UserFacingError(
                "unknown architecture %r (available: %s)" % (architecture, ", ".join(self.manifests) or "none")
            ) from None

    def characters(self, architecture: str) -> List[Character]:
        manifest = self.manifest(architecture)
        memo = self._descriptions.get(architecture)
        if memo is None:
            memo = self._descriptions[architecture] = DescriptionMemo(adapter_class(self.specs[architecture]).describe)
        return list_characters(manifest, self.settings.characters_dir, memo)

    def character(self, architecture: str, character_id: str) -> Character:
        characters = self.characters(architecture)
        for character in characters:
            if character.id == character_id or character.label == character_id:
                return character
        raise UserFacingError(
            "unknown character %r for %s (available: %s)"
            % (character_id, architecture, ", ".join(c.id for c in characters) or "none")
        )
