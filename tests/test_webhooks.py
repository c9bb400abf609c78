"""Webhooks: signed deliveries of the job object, retried with the same id, kept in Redis across a
dead process; the URL rules (http(s), public addresses unless allowed) and the events a job makes."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import video_request
from kinetoscope_client import WebhookVerificationError, verify_webhook
from server.jobs.base import Job
from server.jobs.webhooks import collect, webhook_config
from server.webhooks import WebhookRefused, check_url, sign

SECRET = "whsec_" + base64.b64encode(b"kinetoscope-test-secret-24").decode()
TESTS = Path(__file__).resolve().parent


class Receiver:
    """A real HTTP server on 127.0.0.1 that records each POST and answers the next scripted status
    (then 200s)."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.seen: list[tuple[dict, bytes]] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate, seconds=20.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# --- pure pieces -----------------------------------------------------------------------------------

def test_the_signature_is_standard_webhooks_hmac_and_the_sdk_checks_it():
    body = '{"type":"video.completed"}'
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, b"msg_1.1700000000." + body.encode(), hashlib.sha256).digest()).decode()
    assert sign(SECRET, "msg_1", 1700000000, body) == "v1," + expected
    headers = {"Webhook-Id": "msg_1", "Webhook-Timestamp": "1700000000", "Webhook-Signature": "v1,x v1," + expected}
    assert verify_webhook(body, headers, SECRET, now=1700000010) == {"type": "video.completed"}
    for bad in [dict(headers, **{"Webhook-Signature": "v1," + expected[:-2] + "AA"}),
                dict(headers, **{"Webhook-Id": "msg_2"})]:
        with pytest.raises(WebhookVerificationError):
            verify_webhook(body, bad, SECRET, now=1700000010)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(body, headers, SECRET, now=1700001000)
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify_webhook(body + " ", headers, SECRET, now=1700000010)


@pytest.mark.parametrize("url,allow,message", [
    ("ftp://example.com/x", True, "http:// or https://"),
    ("http:///nohost", True, "with a host"),
    ("https://user:pw@example.com/", True, "credentials"),
    ("https://example.com/" + "a" * 2100, True, "longer than"),
    ("http://127.0.0.1:9/hook", False, "loopback, link-local or private"),
    ("http://localhost/hook", False, "loopback, link-local or private"),
    ("http://10.1.2.3/hook", False, "private"),
    ("http://169.254.169.254/latest/meta-data", False, "private"),
    ("http://[::1]/hook", False, "private"),
    ("http://[::ffff:127.0.0.1]/hook", False, "private"),
    ("http://0.0.0.0/hook", False, "private"),
])
def test_urls_that_are_refused(url, allow, message):
    with pytest.raises(WebhookRefused, match=message):
        check_url(url, allow_private=allow)


def test_private_addresses_are_allowed_when_the_setting_says_so():
    check_url("http://127.0.0.1:9/hook", allow_private=True)
    check_url("http://10.1.2.3/hook", allow_private=True)


def test_a_job_makes_each_event_once_progress_by_steps_and_terminal_by_default():
    job = Job(id="video_1", model="m", request=video_request(),
              webhook=webhook_config("https://example.com/h", ["started", "progress", "completed"], "http://s", 25))
    assert collect(job, 1.0) == []  # queued: nothing yet
    job.status, job.started_at, job.progress = "in_progress", 2.0, 10
    assert [d.event for d in collect(job, 2.0)] == ["started"]
    job.progress = 30
    [progress] = collect(job, 3.0)
    assert progress.event == "progress" and progress.id == "msg_video_1_progress.25"
    job.progress = 40
    assert collect(job, 4.0) == []  # still in the 25% step
    job.status, job.progress = "completed", 100
    [done] = collect(job, 5.0)
    payload = json.loads(done.body)
    assert payload["type"] == "video.completed" and payload["data"]["status"] == "completed"
    assert payload["data"]["urls"]["self"] == "http://s/v1/videos/video_1"
    assert collect(job, 6.0) == []
    default = Job(id="video_2", model="m", request=video_request(),
                  webhook=webhook_config("https://example.com/h", None, "http://s", 10))
    default.status, default.started_at, default.progress = "in_progress", 1.0, 50
    assert collect(default, 1.0) == []
    default.status = "expired"
    assert [d.event for d in collect(default, 2.0)] == ["expired"]


# --- through the API ---------------------------------------------------------------------------------

async def test_webhook_requests_are_checked(make_api):
    body = {"task": "class_conditional", "class_label": 1}
    async with make_api() as api:
        r = await api.client.post("/v1/videos", json={**body, "webhook": "https://example.com/h"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "webhooks_disabled"
    async with make_api(webhook_secret=SECRET) as api:
        for extra, code, param in [
            ({"webhook": "ftp://example.com/h"}, "invalid_webhook", "webhook"),
            ({"webhook": "http://127.0.0.1:1/h"}, "invalid_webhook", "webhook"),
            ({"webhook": "https://example.com/h", "webhook_events": ["finished"]}, "invalid_value", "webhook_events.0"),
            ({"webhook": "https://example.com/h", "webhook_events": []}, "invalid_value", "webhook_events"),
            ({"webhook_events": ["completed"]}, "missing_field", "webhook"),
        ]:
            r = await api.client.post("/v1/videos", json={**body, **extra})
            assert r.status_code == 422, (extra, r.text)
            assert (r.json()["error"]["code"], r.json()["error"]["param"]) == (code, param), extra
        assert (await api.queue.depth()) == {"high": 0, "normal": 0, "low": 0}  # none made a job


async def test_a_completed_job_is_delivered_signed_and_retried_with_the_same_id(make_api):
    receiver = Receiver(statuses=[500])
    try:
        async with make_api(worker=True, webhook_secret=SECRET, webhook_allow_private_addresses=True,
                            webhook_backoff_seconds=0.2, webhook_poll_seconds=0.05) as api:
            r = await api.client.post("/v1/videos", json={
                "task": "class_conditional", "class_label": 2, "webhook": receiver.url,
                "webhook_events": ["started", "completed"]})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            for _ in range(200):
                if len(receiver.seen) >= 3:
                    break
                await asyncio.sleep(0.05)
            ids = [h["webhook-id"] for h, _ in receiver.seen]
            assert sorted(set(ids)) == [f"msg_{job_id}_completed", f"msg_{job_id}_started"], ids
            assert len(ids) == 3 and ids.count(ids[0]) == 2  # the first delivery got the 500: sent again, same id
            headers, raw = next((h, b) for h, b in receiver.seen if json.loads(b)["type"] == "video.completed")
            event = verify_webhook(raw, headers, SECRET)
            for _ in range(100):
                job = (await api.client.get(f"/v1/videos/{job_id}")).json()
                if job["webhook_status"]["delivered"] == 2:
                    break
                await asyncio.sleep(0.05)
            # the body is the job object as GET returns it (webhook_status aside: it counts this delivery)
            assert {k: v for k, v in event["data"].items() if k != "webhook_status"} == \
                   {k: v for k, v in job.items() if k != "webhook_status"}
            status = job["webhook_status"]
            assert status["url"] == receiver.url and status["events"] == ["started", "completed"]
            assert status["enqueued"] == 2 and status["delivered"] == 2 and status["failed"] == 0
            assert (await api.client.get("/metrics")).text.count('kinetoscope_webhook_deliveries_total{outcome="retried"}')
    finally:
        receiver.close()


# --- a delivery outlives the process that queued it (Redis) ---------------------------------------------

SENDER = """
import asyncio, sys
sys.path.insert(0, {tests!r})
from conftest import video_request
from server.jobs.base import Job, JobResult
from server.jobs.redis import RedisQueue
from server.settings import Settings
from server.jobs.webhooks import webhook_config
from server.webhooks import run_deliveries

async def main():
    settings = Settings(redis_url={url!r}, webhook_secret={secret!r}, webhook_allow_private_addresses=True,
                        webhook_backoff_seconds=30, webhook_poll_seconds=0.05)
    q = RedisQueue({url!r}, prefix={prefix!r})
    job = Job(id="video_hook", model="m", request=video_request(),
              webhook=webhook_config({hook!r}, None, "http://api", 10))
    await q.submit(job)
    claimed = await q.claim("w1", timeout=2)
    await q.complete(claimed.id, "w1", JobResult(b"mp4", b"png"))
    print("completed", flush=True)
    await run_deliveries(q, settings, asyncio.Event())  # runs until killed

asyncio.run(main())
"""


def test_a_pending_delivery_is_sent_by_another_process_after_a_sigkill(redis_server):
    from server.jobs.redis import RedisQueue
    from server.settings import Settings
    from server.webhooks import run_deliveries

    receiver = Receiver(statuses=[503])  # the first attempt fails: the delivery stays pending
    prefix = f"hooktest{os.getpid()}:"
    code = SENDER.format(tests=str(TESTS), url=redis_server.url, secret=SECRET, prefix=prefix, hook=receiver.url)
    sender = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=TESTS.parent)
    try:
        assert wait_for(lambda: len(receiver.seen) == 1), sender.stderr.read1().decode() if sender.poll() else ""
        sender.send_signal(signal.SIGKILL)
        sender.wait(10)
        first_id = receiver.seen[0][0]["webhook-id"]

        async def other_process():
            settings = Settings(redis_url=redis_server.url, webhook_secret=SECRET, webhook_allow_private_addresses=True,
                                webhook_poll_seconds=0.05)
            q = RedisQueue(redis_server.url, prefix=prefix)
            stop = asyncio.Event()
            loop = asyncio.create_task(run_deliveries(q, settings, stop))
            # the dead sender's lease on the delivery (timeout + 30 s) is moved up so the test need not wait
            await q.r.zadd(prefix + "webhooks", {first_id: time.time()})
            for _ in range(200):
                if len(receiver.seen) >= 2:
                    break
                await asyncio.sleep(0.05)
            for _ in range(100):
                job = await q.get("video_hook")
                if job.webhook["delivered"] == 1:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await loop
            await q.close()
            return job

        job = asyncio.run(other_process())
        assert len(receiver.seen) == 2 and receiver.seen[1][0]["webhook-id"] == first_id
        assert verify_webhook(receiver.seen[1][1], receiver.seen[1][0], SECRET)["type"] == "video.completed"
        assert job.webhook["delivered"] == 1 and job.webhook["last"]["attempts"] == 2
    finally:
        if sender.poll() is None:
            sender.kill()
        receiver.close()

