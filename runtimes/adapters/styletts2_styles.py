"""The established app's (Hay Say's) precomputed StyleTTS 2 styles, shipped with the project.

Hay Say offered, for each of its multi-speaker StyleTTS 2 models, a style vector per character and trait
("Twilight Sparkle", "Neutral 1"): what that character sounds like in that mood, so the model speaks as them
without a reference recording. Its list (Apache-2.0 data, ``styletts_2.precomputed_styles.json`` of
hydrusbeta/hay_say_ui) is converted once into ``styletts2_styles.json`` beside this module: per model, the
names it is known by (its catalogue name and its checkpoint's upstream file name) and its styles. A character
folder is matched by its catalogue name first (the model manager's record, else the folder's name), then by
its checkpoint's file name, so a model installed from the catalogue and one a person downloaded themselves
both find their styles, offline, with nothing written into the folder.

    python -m runtimes.adapters.styletts2_styles HAY_SAY_CATALOGUE_FOLDER   # rewrites styletts2_styles.json

Standard library only (the app's process reads it to list a model's speakers).
"""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence

DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "styletts2_styles.json")
RECORD_FILE = ".voicegen-model.json"
"""What the model manager writes into a folder it installed: its catalogue entry's name among the rest."""
STYLE_SIZE = 256
"""128 acoustic (timbre) + 128 prosodic values: what StyleTTS 2's two style encoders give for a reference."""
SIGNIFICANT_DIGITS = 5
"""The source's vectors carry 4-8 significant digits; 5 keeps every one within 1e-5 relative."""


@lru_cache(maxsize=1)
def _models() -> List[Dict[str, Any]]:
    with open(DATA_FILE, encoding="utf-8") as handle:
        data = json.load(handle)
    return list(data["models"])


def _catalogue_name(folder: str) -> str:
    try:
        with open(os.path.join(folder, RECORD_FILE), encoding="utf-8") as handle:
            name = json.load(handle).get("name")
    except (OSError, ValueError, AttributeError):
        return ""
    return name if isinstance(name, str) else ""


def find(folder: str, checkpoint: str) -> Optional[Dict[str, Any]]:
    """The shipped model whose styles fit the character in ``folder`` (checkpoint ``checkpoint``), or None:
    ``{"name", "checkpoints", "styles": {character: {trait: [256 floats]}}}``."""
    names = [n for n in (_catalogue_name(folder), os.path.basename(os.path.normpath(folder))) if n]
    models = _models()
    for name in names:
        for model in models:
            if model["name"] == name:
                return model
    file_name = os.path.basename(checkpoint)
    return next((model for model in models if file_name in model["checkpoints"]), None)


def speakers(model: Dict[str, Any]) -> List[str]:
    return sorted(model["styles"])


def traits() -> List[str]:
    """Every trait any shipped character has, sorted ("Neutral 1" is one every character has)."""
    return sorted({trait for model in _models() for character in model["styles"].values() for trait in character})


def style(model: Dict[str, Any], character: str, trait: str) -> List[float]:
    """The style vector of ``character`` in ``trait``; ValueError naming what there is otherwise."""
    styles = model["styles"]
    if character not in styles:
        raise ValueError("no precomputed style for the character %r (this model has: %s)" % (character, ", ".join(sorted(styles))))
    if trait not in styles[character]:
        raise ValueError("%s has no precomputed style %r (there are: %s)" % (character, trait, ", ".join(sorted(styles[character]))))
    return list(styles[character][trait])


def convert(styles_path: str, characters_path: str) -> Dict[str, Any]:
    """Hay Say's style list and its character list -> the shipped data (checkpoint names from the files' URLs:
    its list saves one model's checkpoint under another's name, the URL's name is each model's own)."""
    with open(styles_path, encoding="utf-8") as handle:
        source = json.load(handle)
    with open(characters_path, encoding="utf-8") as handle:
        catalogue = {entry["Model Name"]: entry for entry in json.load(handle)}
    models = []
    for item in source:
        name = item["Model"]
        files = catalogue.get(name, {}).get("Files", [])
        checkpoints = sorted({f["URL"].rsplit("/", 1)[-1] for f in files if f["URL"].endswith(".pth")})
        styles: Dict[str, Dict[str, List[float]]] = {}
        for character in item["Characters"]:
            traits_of = styles.setdefault(character["Character"], {})
            for trait in character["Pre-computed Styles"]:
                vector = [float("%.*g" % (SIGNIFICANT_DIGITS, value)) for value in trait["Style Vector"]]
                if len(vector) != STYLE_SIZE:
                    raise ValueError("%s / %s / %s: %d values, not %d"
                                     % (name, character["Character"], trait["Trait"], len(vector), STYLE_SIZE))
                traits_of[trait["Trait"]] = vector
        models.append({"name": name, "checkpoints": checkpoints, "styles": styles})
    return {"source": "hydrusbeta/hay_say_ui architectures/styletts_2/precomputed_styles.json (Apache-2.0)", "models": models}


def main(argv: Sequence[str]) -> int:
    folder = argv[0] if argv else os.path.join("..", "shared", "reference", "hay-say-catalogues")
    data = convert(os.path.join(folder, "styletts_2.precomputed_styles.json"), os.path.join(folder, "styletts_2.character_models.json"))
    with open(DATA_FILE, "w", encoding="utf-8") as handle:
        json.dump(data, handle, separators=(",", ":"), ensure_ascii=False)
        handle.write("\n")
    print("wrote %s: %d models" % (DATA_FILE, len(data["models"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
