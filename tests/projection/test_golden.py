"""Golden tests: every render option and hint mode on one stored turn."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

from cxdb.config import Settings
from cxdb.errors import FailedDependency, Unprocessable
from cxdb.projection import RenderOptions, project, render_generic
from cxdb.service import Service, TypeHint
from tests.conftest import BUNDLES

MESSAGE = {
    "role": "assistant",
    "text": "It is **sunny**.",
    "timestamp": 1706615000000,
    "tool_calls": [{"id": "c1", "name": "weather", "arguments": {"city": "Paris", "days": 3}, "duration": 120}],
    "attachments": [base64.b64encode(b"\x00\x01hello").decode()],
    "tokens": 42,
}


@pytest.fixture
async def loaded(settings: Settings) -> AsyncIterator[tuple[Service, int]]:
    async with Service(settings) as service:
        for name in ("conversation-v1", "conversation-v2", "logs-v1"):
            await service.publish_bundle(name, json.loads((BUNDLES / f"{name}.json").read_text()))
        context = await service.create_context()
        context_id = int(context["context_id"])
        await service.append(context_id, "cxdb.chat.Message", 2, MESSAGE)
        yield service, context_id


async def turn(service: Service, context_id: int, hint: TypeHint | None = None, **options: Any) -> dict[str, Any]:
    page = await service.get_turns(context_id, hint=hint, options=RenderOptions(**options))
    return page["turns"][0]  # type: ignore[no-any-return]


async def test_default_rendering(loaded: tuple[Service, int]) -> None:
    service, context_id = loaded
    got = await turn(service, context_id)
    assert got["declared_type"] == {"type_id": "cxdb.chat.Message", "type_version": 2}
    assert got["decoded_as"] == {"type_id": "cxdb.chat.Message", "type_version": 2}
    assert got["data"] == {
        "role": "assistant",
        "text": "It is **sunny**.",
        "timestamp": "2024-01-30T11:43:20.000Z",
        "tool_calls": [{"id": "c1", "name": "weather", "arguments": {"city": "Paris", "days": 3}, "duration": 120}],
        "attachments": ["AAFoZWxsbw=="],
        "tokens": 42,
    }
    assert "unknown" not in got and "error" not in got


@pytest.mark.parametrize("options, field, expected", [
    ({"enum_render": "number"}, "role", 3),
    ({"enum_render": "both"}, "role", {"label": "assistant", "value": 3}),
    ({"enum_render": "label"}, "role", "assistant"),
    ({"time_render": "unix_ms"}, "timestamp", 1706615000000),
    ({"time_render": "iso"}, "timestamp", "2024-01-30T11:43:20.000Z"),
    ({"bytes_render": "hex"}, "attachments", ["000168656c6c6f"]),
    ({"bytes_render": "len_only"}, "attachments", ["<7 bytes>"]),
    ({"bytes_render": "base64"}, "attachments", ["AAFoZWxsbw=="]),
])
async def test_each_option(loaded: tuple[Service, int], options: dict[str, Any], field: str, expected: Any) -> None:
    service, context_id = loaded
    assert (await turn(service, context_id, **options))["data"][field] == expected


async def test_wide_integers_follow_u64_format(settings: Settings) -> None:
    bundle = {"registry_version": 1, "bundle_id": "ints", "types": {"N": {"versions": {"1": {"fields": {
        "1": {"name": "big", "type": "u64"}, "2": {"name": "neg", "type": "i64"},
        "3": {"name": "small", "type": "u16"}, "4": {"name": "when", "type": "i64", "semantic": "unix_sec"}}}}}}}
    async with Service(settings) as service:
        async def setup() -> int:
            await service.publish_bundle("ints", bundle)
            context_id = int((await service.create_context())["context_id"])
            await service.append(context_id, "N", 1, {"big": "18446744073709551615", "neg": -5, "small": 7,
                                                      "when": 1706615000})
            await service.append(context_id, "untyped", 1, {"big": 2**60, "fits": 2**53 - 1})
            return context_id

        context_id = await setup()
        typed, untyped = (await service.get_turns(context_id))["turns"]
        assert typed["data"] == {"big": "18446744073709551615", "neg": "-5", "small": 7,
                                 "when": "2024-01-30T11:43:20.000Z"}
        assert untyped["data"] == {"big": str(2**60), "fits": 2**53 - 1}
        typed, untyped = (await service.get_turns(context_id, options=RenderOptions(u64_format="number",
                                                                             time_render="unix_ms")))["turns"]
        assert typed["data"] == {"big": 2**64 - 1, "neg": -5, "small": 7, "when": 1706615000}
        assert untyped["data"] == {"big": 2**60, "fits": 2**53 - 1}


async def test_hint_modes_and_evolution(loaded: tuple[Service, int]) -> None:
    service, context_id = loaded
    await service.append(context_id, "cxdb.chat.Message", 1, {"role": "user", "text": "v1 turn"})
    v2_turn, v1_turn = (await service.get_turns(context_id))["turns"]
    assert v1_turn["decoded_as"]["type_version"] == 1
    latest = (await service.get_turns(context_id, hint=TypeHint("latest")))["turns"]
    assert [t["decoded_as"]["type_version"] for t in latest] == [2, 2]
    assert latest[1]["data"] == {"role": "user", "text": "v1 turn"}  # v1 data read as v2
    as_v1 = (await service.get_turns(context_id, hint=TypeHint("explicit", "cxdb.chat.Message", 1),
                              options=RenderOptions(include_unknown=True)))["turns"]
    assert as_v1[0]["decoded_as"] == {"type_id": "cxdb.chat.Message", "type_version": 1}
    assert "tokens" not in as_v1[0]["data"] and as_v1[0]["unknown"] == {"6": 42}  # v2 data read as v1
    assert as_v1[1]["unknown"] == {}
    with pytest.raises(FailedDependency):
        await service.get_turns(context_id, hint=TypeHint("explicit", "cxdb.chat.Message", 9))
    with pytest.raises(FailedDependency):
        await service.get_turns(context_id, hint=TypeHint("explicit", "no.such.Type", 1))
    with pytest.raises(Unprocessable):
        await service.get_turns(context_id, hint=TypeHint("explicit", "cxdb.chat.Message", None))
    with pytest.raises(Unprocessable):
        await service.get_turns(context_id, hint=TypeHint("explicit", None, 1))
    logs = (await service.get_turns(context_id, hint=TypeHint("explicit", "cxdb.log.Entry", 1),
                             options=RenderOptions(include_unknown=True)))["turns"]
    assert logs[1]["decoded_as"]["type_id"] == "cxdb.log.Entry"


def test_nested_unknown_fields_are_reported_with_their_path() -> None:
    from cxdb.registry import Catalog, parse_bundle

    catalog = Catalog().with_bundle(parse_bundle(json.loads((BUNDLES / "conversation-v1.json").read_text())))
    descriptor = catalog.descriptor("cxdb.chat.Message", 1)
    raw = msgpack.packb({1: 2, 4: [{1: "c", 2: "n", 9: "extra"}], 77: b"\x01"})
    projection = project(raw, descriptor, lambda ref: catalog.descriptor(ref.type_id, ref.version),
                         RenderOptions(include_unknown=True, bytes_render="hex"))
    assert projection.data == {"role": "user", "tool_calls": [{"id": "c", "name": "n"}]}
    assert projection.unknown == {"tool_calls[0].9": "extra", "77": "01"}


def test_string_tags_project_like_integer_tags() -> None:
    from cxdb.registry import Catalog, parse_bundle

    catalog = Catalog().with_bundle(parse_bundle(json.loads((BUNDLES / "conversation-v1.json").read_text())))
    descriptor = catalog.descriptor("cxdb.chat.Message", 1)
    raw = msgpack.packb({"1": 1, "2": "from go"})
    projection = project(raw, descriptor, lambda ref: None, RenderOptions())
    assert projection.data == {"role": "system", "text": "from go"}


@pytest.mark.parametrize("raw, code", [
    (b"\xc1", "UNDECODABLE_PAYLOAD"),
    (b"\x92\x01\x02", "NOT_A_MAP"),
    (msgpack.packb([1, 2]) + b"\x01", "UNDECODABLE_PAYLOAD"),
    (b"\x81" * 3000 + b"\x01", "UNDECODABLE_PAYLOAD"),
])
def test_bad_payloads_get_a_per_turn_error(raw: bytes, code: str) -> None:
    projection = project(raw, None, lambda ref: None, RenderOptions())
    assert projection.data is None and projection.decoded_as is None
    assert projection.error is not None and projection.error["code"] == code


def test_deep_payloads_render_or_fail_cleanly() -> None:
    value: Any = 1
    for _ in range(500):
        value = {"k": value}
    projection = project(msgpack.packb(value), None, lambda ref: None, RenderOptions())
    assert projection.error is not None and projection.error["code"] == "TOO_DEEP"


def test_generic_rendering_of_msgpack_oddities() -> None:
    options = RenderOptions()
    value = {1: b"\xff", b"k": [msgpack.ExtType(5, b"\x00")], None: 2**63, "t": True}
    assert render_generic(value, options) == {"1": "/w==", "aw==": [{"ext_type": 5, "data": "AA=="}],
                                              "null": str(2**63), "t": True}
    assert render_generic(-(2**53), options) == str(-(2**53))
    assert render_generic(-(2**53) + 1, options) == -(2**53) + 1


async def test_payloads_with_name_keys_stay_generic_after_registration(settings: Settings) -> None:
    async with Service(settings) as service:
        async def setup() -> int:
            context_id = int((await service.create_context())["context_id"])
            await service.append(context_id, "cxdb.chat.Message", 1, {"role": "user", "text": "before"})
            await service.publish_bundle("conversation-v1",
                                         json.loads((BUNDLES / "conversation-v1.json").read_text()))
            await service.append(context_id, "cxdb.chat.Message", 1, {"role": "user", "text": "after"})
            return context_id

        context_id = await setup()
        before, after = (await service.get_turns(context_id))["turns"]
        assert before["decoded_as"] is None and before["data"] == {"role": "user", "text": "before"}
        assert after["decoded_as"] == {"type_id": "cxdb.chat.Message", "type_version": 1}
        assert after["data"] == {"role": "user", "text": "after"}
