"""The SDKs' copies of the API's name lists (tasks, statuses, priorities, samplers, output formats,
mask presets, content variants) match what the server publishes in /openapi.json, which is built
from the one definition of each (server/tasks.py, server/jobs/base.py, server/samplers, server/output.py)."""
from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _enum(schema: dict, node: dict) -> set[str]:
    """The string values a property admits (through $ref, anyOf and array items)."""
    if "$ref" in node:
        return _enum(schema, schema["components"]["schemas"][node["$ref"].split("/")[-1]])
    if "enum" in node:
        return set(node["enum"])
    for key in ("anyOf", "oneOf"):
        for option in node.get(key, []):
            found = _enum(schema, option)
            if found:
                return found
    return set()


@pytest.fixture(scope="module")
def published():
    """name -> the set of values /openapi.json gives it."""
    import asyncio

    import httpx

    from conftest import FakeRuntime
    from server.api.app import create_app
    from server.jobs.memory import MemoryQueue
    from server.settings import Settings

    async def fetch():
        settings = Settings(embedded_workers=False, redis_url=None, job_store_dir=None, allowed_hosts=["test"])
        app = create_app(settings, runtime=FakeRuntime(), queue=MemoryQueue.from_settings(settings))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                return (await client.get("/openapi.json")).json()

    schema = asyncio.run(fetch())
    parts = schema["components"]["schemas"]
    create = parts["VideoCreateRequest"]["properties"]
    content = schema["paths"]["/v1/videos/{video_id}/content"]["get"]["parameters"]
    return {
        "task": _enum(schema, create["task"]),
        "status": _enum(schema, parts["VideoJob"]["properties"]["status"]),
        "priority": _enum(schema, create["priority"]),
        "output_format": _enum(schema, create["output_format"]),
        "method": _enum(schema, parts["SamplerSpec"]["properties"]["method"]),
        "preset": _enum(schema, parts["MaskSpec"]["properties"]["preset"]),
        "variant": _enum(schema, next(p for p in content if p["name"] == "variant")["schema"]),
    }


def test_the_published_lists_are_the_servers_own(published):
    from server.jobs.base import CONTENT_VARIANTS, PRIORITIES, STATUSES
    from server.output import OUTPUT_FORMATS
    from server.samplers import SAMPLERS
    from server.tasks import ALL_TASKS, PRESETS

    assert published == {"task": set(ALL_TASKS), "status": set(STATUSES), "priority": set(PRIORITIES),
                         "output_format": set(OUTPUT_FORMATS), "method": set(SAMPLERS), "preset": set(PRESETS),
                         "variant": set(CONTENT_VARIANTS) | {"preview"}}


def test_the_python_sdk_agrees_with_openapi(published):
    from kinetoscope_client import types as t

    hints = typing.get_type_hints(t.Sampler)
    create = typing.get_type_hints(t.VideoCreateParams)
    assert {"task": set(typing.get_args(t.Task)), "status": set(typing.get_args(t.Status)),
            "priority": set(typing.get_args(t.Priority)), "output_format": set(typing.get_args(create["output_format"])),
            "method": set(typing.get_args(hints["method"])), "preset": set(typing.get_args(t.MaskPreset)),
            "variant": set(typing.get_args(t.Variant))} == published


def _ts_union(text: str, declaration: str) -> set[str]:
    """The quoted strings of a TypeScript union: `export type X = 'a' | 'b';` or `field?: 'a' | 'b';`."""
    match = re.search(re.escape(declaration) + r"\s*((?:\|?\s*'[^']*'\s*)+);", text)
    assert match, f"{declaration!r} not found in the JS SDK's types"
    return set(re.findall(r"'([^']*)'", match.group(1)))


def test_the_js_sdk_agrees_with_openapi(published):
    text = (ROOT / "clients" / "js" / "src" / "types.ts").read_text()
    assert {"task": _ts_union(text, "export type Task ="), "status": _ts_union(text, "export type JobStatus ="),
            "priority": _ts_union(text, "priority?:"), "output_format": _ts_union(text, "output_format?:"),
            "method": _ts_union(text, "method?:"), "preset": _ts_union(text, "export type MaskPreset ="),
            "variant": _ts_union(text, "export type ContentVariant =")} == published
