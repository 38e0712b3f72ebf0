"""The facts an architecture declares in its manifest (duration option, pauses, import pattern, names in the
established app's lists): what they mean, checked when declared, and carried whole across the wire."""

from __future__ import annotations

import json

import pytest

from runtimes.adapters.piper import PiperAdapter
from runtimes.adapters.praat import PraatAdapter
from runtimes.manifest import DurationScale, Manifest, Option
from runtimes.registry import discover, read_manifest
from tests.conftest import PROJECT_ROOT, TEST_SPECS
from tests.fakes.fake_adapter import FakeAdapter


def test_every_manifest_crosses_the_wire_with_its_facts() -> None:
    for spec in discover([PROJECT_ROOT / "envs", TEST_SPECS]).values():
        manifest = read_manifest(spec)
        assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest, spec.name


def test_a_duration_option_scales_the_length_and_takes_a_speed() -> None:
    piper, fake = PiperAdapter.manifest, FakeAdapter.manifest
    assert piper.length_factor({"length_scale": 2.0}) == 2.0 and piper.length_factor({}) == 1.0
    assert piper.pause_s({"sentence_silence_s": 0.5}) == 0.5 and fake.pause_s({}) == 0.0
    assert piper.speed_options(0.5) == {"length_scale": 2.0}
    assert fake.speed_options(2.0) == {"stretch": 0.5} and fake.length_factor({"stretch": 4.0}) == 4.0
    assert PraatAdapter.manifest.speed_options(4.0) == {"duration_factor": 0.25}
    assert fake.speed_options(0.05) == {}  # beyond the option's range: the caller stretches the result instead
    tempo = Manifest("t", "T", "1", ("tts",), True, False, options=(Option("tempo", "Tempo", "float", 1.0, 0.5, 2.0),),
                     duration_scale=DurationScale("tempo", inverse=True))
    assert tempo.length_factor({"tempo": 2.0}) == 0.5 and tempo.speed_options(1.5) == {"tempo": 1.5}


def test_a_fact_naming_an_option_the_manifest_lacks_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="names option 'speed', which it does not declare"):
        Manifest("t", "T", "1", ("tts",), True, False, duration_scale=DurationScale("speed"))
    with pytest.raises(ValueError, match="names option 'pause'"):
        Manifest("t", "T", "1", ("tts",), True, False, pause_option="pause")
