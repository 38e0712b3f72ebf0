"""Convert the established app's (Hay Say's) catalogue files into ours; re-run when they change:

    .venv/bin/python scripts/convert_hay_say_catalogues.py ../shared/reference/hay-say-catalogues models/catalogues/hay-say.json

Every character and multi-speaker model of every architecture is kept (those this app does not run
yet are shown as "architecture not installed"); entries that cannot be converted are printed. Which of
the established app's architectures are ours, and the assets their characters need, each architecture's
manifest says (``hay_say_names``, ``Asset.hay_say_dependency``; read from ``envs/``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.catalogue import document
from models.hay_say import convert_hay_say
from runtimes.registry import discover, read_manifest

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    manifests = [read_manifest(spec) for spec in discover([ROOT / "envs"]).values()]
    entries, problems = [], []
    for path in sorted(source.glob("*_models.json")):
        if path.name.startswith("sample_architecture."):
            continue  # the established app's schema example, not models
        converted, skipped = convert_hay_say(json.loads(path.read_text(encoding="utf-8")), path.name, manifests)
        entries += converted
        problems += skipped
        print("%s: %d entries" % (path.name, len(converted)))
    target.write_text(json.dumps(document(entries), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for problem in problems:
        print("skipped:", problem)
    print("wrote %d entries to %s" % (len(entries), target))


if __name__ == "__main__":
    main()
