"""Bundle validation and the evolution rules of the catalog."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cxdb.errors import Conflict, Unprocessable
from cxdb.registry import Catalog, parse_bundle
from tests.conftest import BUNDLES


def load(name: str) -> dict[str, Any]:
    return json.loads((BUNDLES / name).read_text())  # type: ignore[no-any-return]


def bundle(bundle_id: str = "b1", types: dict[str, Any] | None = None, enums: dict[str, Any] | None = None,
           ) -> dict[str, Any]:
    return {"registry_version": 1, "bundle_id": bundle_id,
            "types": types if types is not None else {"T": {"versions": {"1": {"fields": {
                "1": {"name": "a", "type": "string"}}}}}},
            "enums": enums or {}}


def with_fields(fields: dict[str, Any], version: str = "1", type_id: str = "T", **kw: Any) -> dict[str, Any]:
    return bundle(types={type_id: {"versions": {version: {"fields": fields}}}}, **kw)


def test_shipped_bundles_publish_in_order() -> None:
    catalog = Catalog()
    for name in ("conversation-v1.json", "conversation-v2.json", "logs-v1.json"):
        catalog = catalog.with_bundle(parse_bundle(load(name)))
    assert catalog.latest["cxdb.chat.Message"] == 2
    assert catalog.latest_bundle_id == "logs-v1"
    message = catalog.descriptor("cxdb.chat.Message", 1)
    assert message is not None and message.bundle_id == "conversation-v1"
    calls = message.by_name["tool_calls"]
    assert calls.items is not None and calls.items.ref is not None
    assert calls.items.ref.type_id == "cxdb.chat.ToolCall"
    summaries = {s.type_id: (s.latest_version, s.bundle_id) for s in catalog.summaries()}
    assert summaries["cxdb.chat.Message"] == (2, "conversation-v2")


@pytest.mark.parametrize("mutate, where", [
    (lambda b: b.update(registry_version=2), "registry_version"),
    (lambda b: b.update(bundle_id=""), "bundle_id"),
    (lambda b: b.update(types=[]), "types"),
    (lambda b: b["types"]["T"].update(versions={}), None),
    (lambda b: b["types"]["T"]["versions"].update({"x": {"fields": {}}}), None),
    (lambda b: b["types"]["T"]["versions"]["1"].update(fields=[]), None),
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"].update({"2": {"name": "b", "type": "float128"}}), "type"),
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"].update({"2": {"type": "string"}}), "name"),
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"].update({"2": {"name": "a", "type": "string"}}), None),
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"].update({"x": {"name": "b", "type": "string"}}), None),
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"].update({"2": {"name": "b", "type": "array"}}), "items"),
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"].update({"2": {"name": "b", "type": "nested"}}), "nested"),
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"].update(
        {"2": {"name": "b", "type": "string", "semantic": "unix_ms"}}), "semantic"),
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"].update(
        {"2": {"name": "b", "type": "string", "semantic": "nonsense"}}), "semantic"),
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"].update(
        {"2": {"name": "b", "type": "string", "optional": "yes"}}), "optional"),
    (lambda b: b.update(enums={"E": {"1": "a", "2": "a"}}), None),
    (lambda b: b.update(enums={"E": {"one": "a"}}), None),
])
def test_malformed_bundles_are_unprocessable(mutate: Any, where: str | None) -> None:
    value = bundle()
    mutate(value)
    with pytest.raises(Unprocessable) as caught:
        parse_bundle(value)
    if where is not None:
        details = caught.value.details
        assert where in (details.get("key"), details.get("field"))


def test_errors_name_type_version_and_tag() -> None:
    with pytest.raises(Unprocessable) as caught:
        parse_bundle(with_fields({"7": {"name": "x", "type": "nope"}}, version="3", type_id="com.x.Y"))
    assert caught.value.details == {"type_id": "com.x.Y", "type_version": 3, "tag": 7, "key": "type"}


@pytest.mark.parametrize("fields, missing", [
    ({"1": {"name": "r", "type": "u8", "enum": "Nope"}}, "Nope"),
    ({"1": {"name": "n", "type": "nested", "nested": "Ghost"}}, "Ghost"),
    ({"1": {"name": "n", "type": "array", "items": "Ghost"}}, "Ghost"),
    ({"1": {"name": "n", "type": "map", "value_type": "Ghost"}}, "Ghost"),
])
def test_missing_references_are_unprocessable(fields: dict[str, Any], missing: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        Catalog().with_bundle(parse_bundle(with_fields(fields)))
    assert caught.value.details["missing"] == missing


def test_evolution_conflicts() -> None:
    base = Catalog().with_bundle(parse_bundle(with_fields({"1": {"name": "a", "type": "string"}},
                                                          enums={"E": {"1": "x"}})))
    changed = with_fields({"1": {"name": "a", "type": "string", "optional": True}})
    changed["bundle_id"] = "b2"
    with pytest.raises(Conflict, match="existing type version"):
        base.with_bundle(parse_bundle(changed))
    retyped = with_fields({"1": {"name": "a", "type": "u64"}}, version="2")
    retyped["bundle_id"] = "b3"
    with pytest.raises(Conflict, match="tag was reused") as caught:
        base.with_bundle(parse_bundle(retyped))
    assert caught.value.details["tag"] == 1
    enum_changed = bundle("b4", enums={"E": {"1": "y"}})
    with pytest.raises(Conflict, match="enum"):
        base.with_bundle(parse_bundle(enum_changed))
    renamed_ok = with_fields({"1": {"name": "alpha", "type": "string"}, "2": {"name": "b", "type": "bool"}},
                             version="2")
    renamed_ok["bundle_id"] = "b5"
    evolved = base.with_bundle(parse_bundle(renamed_ok))
    assert evolved.latest["T"] == 2
    regress = with_fields({"1": {"name": "a", "type": "string"}}, version="1", type_id="U")
    evolved = evolved.with_bundle(parse_bundle({**regress, "bundle_id": "b6",
                                                "types": {"U": {"versions": {"5": {"fields": {}}}}}}))
    with pytest.raises(Conflict, match="lower"):
        evolved.with_bundle(parse_bundle({**regress, "bundle_id": "b7"}))


def test_rejected_bundle_leaves_catalog_unchanged() -> None:
    base = Catalog().with_bundle(parse_bundle(load("conversation-v1.json")))
    snapshot = (copy.deepcopy(base.latest), dict(base.descriptors), base.bundle_ids, dict(base.enums))
    bad = load("conversation-v2.json")
    bad["bundle_id"] = "bad"
    bad["types"]["New.Type"] = {"versions": {"1": {"fields": {"1": {"name": "x", "type": "string"}}}}}
    bad["types"]["cxdb.chat.Message"]["versions"]["2"]["fields"]["2"]["type"] = "bytes"
    with pytest.raises(Conflict):
        base.with_bundle(parse_bundle(bad))
    assert (base.latest, base.descriptors, base.bundle_ids, base.enums) == snapshot
    assert base.descriptor("New.Type", 1) is None


def test_recursive_types_are_allowed() -> None:
    tree = with_fields({"1": {"name": "label", "type": "string"},
                        "2": {"name": "children", "type": "array", "items": "T", "optional": True}})
    catalog = Catalog().with_bundle(parse_bundle(tree))
    items = catalog.descriptors[("T", 1)].fields[2].items
    assert items is not None and items.ref is not None and items.ref.version == 1
