"""The API's pure pieces, without an app: request normalization, Range and Prefer parsing,
base64 decoding, error locations."""
from __future__ import annotations

import base64
import json

import pytest

from conftest import make_api_manifest, video_request
from server.catalogue import Catalogue
from server.api.errors import APIError, loc_to_param
from server.api.intake import decode_base64
from server.api.ranges import RangeNotSatisfiable, parse_range
from server.api.schemas import VideoCreateRequest
from server.api.validation import check_input_frames, choose_manifest, normalize_request
from server.api.views import parse_prefer_wait
from server.request import VideoRequest
from server.settings import Settings

MANIFEST = make_api_manifest()
SETTINGS = Settings()


def normalize(**body) -> dict:
    """The normalized request as the job object shows it (VideoRequest.to_dict)."""
    return normalize_request(VideoCreateRequest(**body), MANIFEST, SETTINGS, new_seed=lambda: 42).to_dict()


def test_the_normalized_request_round_trips_through_its_stored_form():
    for body in [dict(task="frame_prediction", input_video="AAAA"),
                 dict(task="class_conditional", class_label=2, sampler={"method": "autoregressive", "top_k": 5}),
                 dict(task="inpainting", input_video_id="video_1", mask={"box": [[0.1, 0.1, 0.5, 0.5]] * 16}),
                 dict(task="outpainting", input_video="AAAA", mask={"preset": "dynamic"}, output_format="gif",
                      priority="high", deadline_seconds=30)]:
        req = normalize_request(VideoCreateRequest(**body), MANIFEST, SETTINGS, new_seed=lambda: 42)
        stored = json.loads(json.dumps(req.to_dict()))
        assert VideoRequest.from_dict(stored) == req and VideoRequest.from_dict(stored).to_dict() == stored


def test_defaults_come_from_the_manifest_and_settings():
    req = normalize(task="frame_prediction", input_video="AAAA")
    assert req == {"task": "frame_prediction", "class_label": None, "mask": None, "condition_frames": 5,
                   "num_frames": 16, "size": "32x32", "fps": 8, "seed": 42,
                   "sampler": {"method": "maskgit", "steps": 12, "temperature": 1.0, "choice_temperature": 4.5,
                               "guidance_scale": 0.0, "top_k": None},
                   "priority": "normal", "deadline_seconds": 3600.0, "output_format": "mp4", "input_video_id": None, "has_input": True,
                   "previews": False, "edit_from": None}


def test_fields_a_task_does_not_use_are_normalized_away():
    req = normalize(task="class_conditional", class_label=2, input_video="AAAA", condition_frames=3,
                    mask={"preset": "center"})
    assert req["has_input"] is False and req["condition_frames"] is None and req["mask"] is None
    interp = normalize(task="frame_interpolation", input_video_id="video_1", condition_frames=3)
    assert interp["condition_frames"] is None and interp["input_video_id"] == "video_1"
    assert normalize(task="inpainting", input_video="AAAA", class_label=4, mask={"preset": "dynamic"})["class_label"] == 4


@pytest.mark.parametrize("mask,expected", [
    ({"preset": "vertical"}, {"preset": "vertical"}),
    ({"box": [0, 0, 0.5, 1]}, {"box": [0.0, 0.0, 0.5, 1.0]}),
    ({"box": [[0, 0, 0.5, 0.5]] * 4}, {"box": [[0.0, 0.0, 0.5, 0.5]] * 4}),
])
def test_masks(mask, expected):
    assert normalize(task="outpainting", input_video="AAAA", num_frames=4, mask=mask)["mask"] == expected


def test_limits_follow_the_settings():
    settings = Settings(max_num_frames=200, max_steps=100)
    req = normalize_request(VideoCreateRequest(task="class_conditional", class_label=0, num_frames=200,
                                               sampler={"steps": 100}), MANIFEST, settings).to_dict()
    assert req["num_frames"] == 200 and req["sampler"]["steps"] == 100 and 0 <= req["seed"] < 2**31
    with pytest.raises(APIError) as err:
        normalize(task="class_conditional", class_label=0, num_frames=200)
    assert err.value.status == 422 and err.value.param == "num_frames"


def test_a_model_without_maskgit_defaults_to_its_sampler():
    ar_only = make_api_manifest("ar", samplers=["autoregressive"])
    req = normalize_request(VideoCreateRequest(task="class_conditional", class_label=0), ar_only, SETTINGS).to_dict()
    assert req["sampler"]["method"] == "autoregressive"


def test_choose_manifest():
    catalogue = Catalogue({"demo": MANIFEST}, {}, "demo", "onnxruntime")
    assert choose_manifest(catalogue, None) is MANIFEST
    with pytest.raises(APIError) as err:
        choose_manifest(catalogue, "other")
    assert (err.value.status, err.value.code, err.value.param) == (404, "model_not_found", "model")


def test_input_frame_checks():
    check_input_frames(video_request(task="frame_prediction", condition_frames=5), 5)
    check_input_frames(video_request(task="inpainting", condition_frames=None), 1)
    for request, frames in [(video_request(task="frame_prediction", condition_frames=5), 4),
                            (video_request(task="frame_interpolation", condition_frames=None), 1)]:
        with pytest.raises(APIError) as err:
            check_input_frames(request, frames)
        assert err.value.param == "input_video"


@pytest.mark.parametrize("header,expected", [
    (None, None), ("bytes=0-9", (0, 9)), ("bytes=5-", (5, 99)), ("bytes=-10", (90, 99)), ("bytes=-500", (0, 99)),
    ("bytes=90-500", (90, 99)), ("bytes=9-3", None), ("bytes=0-1,4-5", None), ("items=0-1", None),
    ("bytes=a-b", None), ("bytes=-", None), ("BYTES = 1-2", (1, 2)),
])
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header,size", [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)])
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


@pytest.mark.parametrize("prefer,expected", [
    (None, None), ("wait=5", 5.0), ("respond-async, wait=10", 10.0), ("wait=100", 60.0), ("WAIT=2.5", 2.5),
    ('wait="3"', 3.0), ("handling=lenient", None), ("wait=soon", None), ("await=4", None),
])
def test_parse_prefer_wait(prefer, expected):
    assert parse_prefer_wait(prefer, 60.0) == expected


def test_decode_base64_variants():
    data = bytes(range(256)) * 3
    std = base64.b64encode(data).decode()
    assert decode_base64(std, 10_000) == data
    assert decode_base64(std.rstrip("="), 10_000) == data
    assert decode_base64(base64.urlsafe_b64encode(data).decode(), 10_000) == data
    assert decode_base64("data:video/mp4;base64," + std, 10_000) == data
    assert decode_base64("\n".join(std[i:i + 76] for i in range(0, len(std), 76)), 10_000) == data
    for bad, status in [("%%%", 400), ("data:video/mp4," + std, 400), (std, 413), ("", 400)]:
        with pytest.raises(APIError) as err:
            decode_base64(bad, 100 if status == 413 else 10_000)
        assert err.value.status == status and err.value.param == "input_video"


def test_loc_to_param():
    assert loc_to_param(("body", "sampler", "steps")) == "sampler.steps"
    assert loc_to_param(("query", "limit")) == "limit"
    assert loc_to_param(("body",)) is None
    assert loc_to_param(("mask", "box", 0, 2)) == "mask.box.0.2"
