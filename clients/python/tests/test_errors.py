"""Error responses of the live server become the right exception, with the server's fields."""
from __future__ import annotations

import httpx
import pytest
from live_servers import API_KEY, FAST, SLOW

from kinetoscope_client import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    KinetoscopeError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)


def test_unknown_id_is_not_found_with_the_servers_fields(client):
    with pytest.raises(NotFoundError) as caught:
        client.videos.retrieve("video_doesnotexist")
    error = caught.value
    assert isinstance(error, APIStatusError) and isinstance(error, KinetoscopeError)
    assert error.status_code == 404
    assert error.code == "video_not_found" and error.type == "not_found_error" and error.param == "video_id"
    assert error.body["error"]["message"] == error.message
    assert error.request_id  # X-Request-ID
    assert "404" in str(error) and error.request_id in str(error)


@pytest.mark.parametrize("call", [
    lambda c: c.videos.cancel("video_nope"),
    lambda c: c.videos.delete("video_nope"),
    lambda c: c.videos.download_content("video_nope"),
    lambda c: list(c.videos.stream_events("video_nope")),
    lambda c: c.models.retrieve("no-such-model"),
    lambda c: c.videos.retrieve("../models"),  # quoted as one path segment, not a route change
])
def test_every_method_maps_unknown_ids_to_not_found(client, call):
    with pytest.raises(NotFoundError):
        call(client)


@pytest.mark.parametrize("fields, param", [
    ({"size": "7x7"}, "size"),
    ({"sampler": {"steps": 0}}, "sampler.steps"),
    ({"priority": "urgent"}, "priority"),
])
def test_invalid_field_is_unprocessable_and_not_retried(server, fields, param):
    sent: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [sent.append]}) as http, \
            Client(server.url, api_key=API_KEY, http_client=http) as c:
        with pytest.raises(UnprocessableEntityError) as caught:
            c.videos.create(**{**FAST, **fields})
    assert caught.value.status_code == 422 and caught.value.param == param
    assert len(sent) == 1


def test_missing_or_wrong_api_key_is_an_authentication_error(server, monkeypatch):
    monkeypatch.delenv("KINETOSCOPE_API_KEY", raising=False)
    for key in (None, "wrong-key"):
        with Client(server.url, api_key=key) as c, pytest.raises(AuthenticationError) as caught:
            c.models.list()
        assert caught.value.status_code == 401 and caught.value.type == "authentication_error"


def test_api_key_and_base_url_come_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("KINETOSCOPE_API_KEY", API_KEY)
    monkeypatch.setenv("KINETOSCOPE_BASE_URL", server.url)
    with Client() as c:
        assert c.models.list()


def test_content_of_an_unfinished_job_is_a_conflict(client):
    video = client.videos.create(**SLOW)
    try:
        with pytest.raises(ConflictError) as caught:
            client.videos.download_content(video.id)
        assert caught.value.status_code == 409 and caught.value.code == "video_not_ready"
    finally:
        client.videos.cancel(video.id)


def test_undecodable_upload_is_a_bad_request(client):
    corrupt_mp4 = b"\x00\x00\x00\x18ftypisom" + b"\x00garbage" * 64
    with pytest.raises(BadRequestError) as caught:
        client.videos.create(task="frame_prediction", input_video=corrupt_mp4)
    assert caught.value.status_code == 400 and caught.value.param == "input_video"


def test_unknown_media_is_unsupported(client):
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        client.videos.create(task="frame_prediction", input_video=b"this is not a video at all")
    assert caught.value.status_code == 415


def test_oversized_upload_is_payload_too_large(client):
    with pytest.raises(PayloadTooLargeError) as caught:
        client.videos.create(task="frame_prediction", input_video=b"\x00\x00\x00\x18ftypisom" + bytes(9 << 20))
    assert caught.value.status_code == 413
