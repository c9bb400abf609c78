"""Per-model sampler defaults: the manifest recommends a sampler per task and per method; a request
gets them field by field, echoes what was used, and /v1/models shows them."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from conftest import make_api_manifest
from server.api.schemas import VideoCreateRequest
from server.api.validation import normalize_request
from server.samplers import SamplerOptions, TaskSamplerDefaults, resolve_sampler
from server.settings import Settings

DEFAULTS = {
    "class_conditional": {"method": "autoregressive",
                          "methods": {"autoregressive": {"temperature": 0.5, "guidance_scale": 3.0},
                                      "maskgit": {"steps": 16, "guidance_scale": 2.0}}},
    "inpainting": {"methods": {"maskgit": {"temperature": 0.8}}},  # no method: MaskGIT stays the default
}
MANIFEST = make_api_manifest(sampler_defaults=DEFAULTS)
SAMPLERS = ["maskgit", "autoregressive"]


def sampler_of(**body):
    return normalize_request(VideoCreateRequest(**body), MANIFEST, Settings(), new_seed=lambda: 1).to_dict()["sampler"]


def test_resolution_order_is_request_then_model_then_built_in():
    task = TaskSamplerDefaults.model_validate(DEFAULTS["class_conditional"])
    assert resolve_sampler({}, task, SAMPLERS) == SamplerOptions("autoregressive", temperature=0.5, guidance_scale=3.0)
    assert resolve_sampler({"temperature": 0.7}, task, SAMPLERS) == SamplerOptions(
        "autoregressive", temperature=0.7, guidance_scale=3.0)
    # naming only a method gets that method's recommendation for the task
    assert resolve_sampler({"method": "maskgit"}, task, SAMPLERS) == SamplerOptions("maskgit", steps=16, guidance_scale=2.0)
    # no recommendation: built-in defaults, MaskGIT first when the model has it
    assert resolve_sampler({}, None, SAMPLERS) == SamplerOptions()
    assert resolve_sampler({}, None, ["autoregressive"]) == SamplerOptions("autoregressive")


def test_a_request_without_sampler_fields_gets_the_models_values_and_echoes_them():
    assert sampler_of(task="class_conditional", class_label=3) == {
        "method": "autoregressive", "steps": 12, "temperature": 0.5, "choice_temperature": 4.5,
        "guidance_scale": 3.0, "top_k": None}
    assert sampler_of(task="class_conditional", class_label=3, sampler={"method": "maskgit"})["steps"] == 16
    assert sampler_of(task="class_conditional", class_label=3, sampler={"guidance_scale": 0})["guidance_scale"] == 0.0
    inpaint = sampler_of(task="inpainting", input_video="AAAA", mask={"preset": "center"})
    assert inpaint["method"] == "maskgit" and inpaint["temperature"] == 0.8
    # a task the manifest says nothing of: built-in defaults
    assert sampler_of(task="frame_prediction", input_video="AAAA") == {
        "method": "maskgit", "steps": 12, "temperature": 1.0, "choice_temperature": 4.5,
        "guidance_scale": 0.0, "top_k": None}


def test_the_steps_limit_applies_to_the_models_values_too():
    from server.api.errors import APIError

    with pytest.raises(APIError) as err:
        normalize_request(VideoCreateRequest(task="class_conditional", class_label=0, sampler={"method": "maskgit"}),
                          MANIFEST, Settings(max_steps=8))
    assert err.value.param == "sampler.steps"


@pytest.mark.parametrize("bad", [
    {"frame_prediction_typo": {"method": "maskgit"}},
    {"class_conditional": {"method": "diffusion"}},
    {"class_conditional": {"methods": {"diffusion": {}}}},
    {"class_conditional": {"methods": {"maskgit": {"steps": 0}}}},
    {"class_conditional": {"methods": {"maskgit": {"stepz": 3}}}},
])
def test_the_manifest_refuses_defaults_it_cannot_serve(bad):
    with pytest.raises(ValidationError):
        make_api_manifest(sampler_defaults=bad)


def test_the_manifest_refuses_a_method_the_model_lacks():
    with pytest.raises(ValidationError):
        make_api_manifest(samplers=["maskgit"], sampler_defaults={"class_conditional": {"method": "autoregressive"}})


async def test_models_endpoint_shows_the_defaults(make_api):
    from conftest import FakeRuntime

    async with make_api(runtime=FakeRuntime([MANIFEST])) as api:
        card = (await api.client.get("/v1/models")).json()["data"][0]
        cg = card["sampler_defaults"]["class_conditional"]
        assert cg["method"] == "autoregressive"
        assert cg["methods"]["autoregressive"]["guidance_scale"] == 3.0 and cg["methods"]["maskgit"]["steps"] == 16
        assert card["sampler_defaults"]["frame_prediction"]["method"] == "maskgit"
        job = (await api.client.post("/v1/videos", json={"task": "class_conditional", "class_label": 1})).json()
        assert job["request"]["sampler"] == {"method": "autoregressive", **{
            k: v for k, v in cg["methods"]["autoregressive"].items() if k != "method"}}
