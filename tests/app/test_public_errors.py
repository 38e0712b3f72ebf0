"""One mapping from a failure to what a person reads (``app.public_errors.for_person``), used by Gradio and the
HTTP routes alike; the named endpoints' table (``app.ui_api``), checked without starting the app."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, List

import gradio as gr
import pytest

from app.errors import UserFacingError
from app.public_errors import for_person
from app.ui_api import PARAMETERS, RESULTS, Endpoints, api_parameters, endpoint_table
from app.ui_api_generation import GenerationEndpoints
from app.ui_api_jobs import JobEndpoints
from app.ui_api_models import ModelEndpoints
from app.ui_api_runtimes import RuntimeEndpoints
from app.ui_api_voices import VoiceEndpoints
from app.ui_errors import shown_to_person
from jobs.errors import QuotaError, UnknownJobError


def test_a_problem_the_person_can_act_on_is_its_message_without_server_paths() -> None:
    public = for_person(UserFacingError("%s/models/joe.onnx: not a model" % Path.home()), "a test")
    assert public.status == 400 and public.message == "joe.onnx: not a model"
    assert for_person(QuotaError("you have 3 jobs waiting"), "a test") == (400, "you have 3 jobs waiting")
    assert for_person(UnknownJobError("no job 'abc' in your history"), "a test") == (404, "no job 'abc' in your history")


def test_anything_else_is_logged_whole_and_named_by_its_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        public = for_person(KeyError("/srv/secret/thing"), "/v1/audio/speech")
    assert public.status == 500 and "error id" in public.message and "secret" not in public.message
    error_id = public.message.split("error id ")[1].split(")")[0]
    assert any(error_id in record.getMessage() and record.exc_info for record in caplog.records)


@pytest.mark.parametrize("failure", [UserFacingError("%s/x.wav is too short" % Path.home()), UnknownJobError("no job 'x'")])
def test_gradio_shows_what_the_mapping_gives(failure: Exception) -> None:
    def fail() -> None:
        raise failure

    with pytest.raises(gr.Error) as raised:
        shown_to_person(fail)
    assert raised.value.message == for_person(failure, "a test").message


def test_every_endpoint_parameter_and_result_has_its_hidden_component() -> None:
    kinds = (GenerationEndpoints, JobEndpoints, RuntimeEndpoints, ModelEndpoints, VoiceEndpoints)
    calls = Endpoints(*(kind.__new__(kind) for kind in kinds))
    table = endpoint_table(calls)
    assert len({endpoint.name for endpoint in table}) == len(table)
    for endpoint in table:
        fn: Callable[..., Any] = endpoint.fn
        parameters: List[str] = api_parameters(fn)
        assert set(parameters) <= set(PARAMETERS), endpoint.name
        assert "request" not in parameters and "progress" not in parameters
        assert set(endpoint.results) <= set(RESULTS), endpoint.name
