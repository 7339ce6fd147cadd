"""Two gateways on one PostgreSQL database, driven over HTTP: appends to one context stay one chain,
idempotent retries make one turn, a bundle published through one is used through the other, and a
registry id claimed by two at once goes to one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cxdb import Client, Conflict, PreconditionFailed
from tests.conftest import BUNDLES, LiveServer


@pytest.fixture
def gateways(postgres_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    first = LiveServer(postgres_url, "--require-registry")
    second = LiveServer(postgres_url, "--require-registry")
    try:
        yield first, second
    finally:
        assert first.stop() == 0 and second.stop() == 0


def chain_of(client: Client, context_id: str) -> list[dict[str, Any]]:
    """Every turn of the context's chain, oldest first (iter_turns walks back from the head)."""
    return list(client.iter_turns(context_id, page_size=7, view="raw"))[::-1]


def publish_conversation(url: str) -> None:
    with Client(url) as client:
        client.publish_bundle(BUNDLES / "conversation-v1.json")


MESSAGE = {"type_id": "cxdb.chat.Message", "type_version": 1}


def through_both(gateways: tuple[LiveServer, LiveServer], count: int, call: Callable[[Client, int], Any]) -> list[Any]:
    """``call(client, n)`` for n in range(count), all at once, alternating between the two gateways."""
    def one(n: int) -> Any:
        with Client(gateways[n % 2].url) as client:
            return call(client, n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_48_concurrent_appends_through_two_gateways_form_one_chain(gateways: tuple[LiveServer, LiveServer]) -> None:
    first, second = gateways
    publish_conversation(first.url)
    with Client(first.url) as client:
        context_id = client.create_context().context_id

    acknowledged = through_both(gateways, 48, lambda client, n: str(client.append_turn(
        context_id, MESSAGE, data={"role": "user", "text": f"m{n}"}).turn_id))
    assert len(set(acknowledged)) == 48
    with Client(second.url) as client:
        chain = chain_of(client, context_id)
        context = client.get_context(context_id)
    assert [turn["turn_id"] for turn in chain] == sorted(acknowledged, key=int)  # ids grow along the chain
    assert [turn["depth"] for turn in chain] == list(range(1, 49))
    for older, newer in zip(chain, chain[1:], strict=False):
        assert newer["parent_turn_id"] == older["turn_id"]
    assert context.head_turn_id == chain[-1]["turn_id"] and context.head_depth == 48


def test_concurrent_idempotent_retries_through_two_gateways_make_one_turn(
        gateways: tuple[LiveServer, LiveServer]) -> None:
    first, second = gateways
    publish_conversation(second.url)
    with Client(first.url) as client:
        context_id = client.create_context().context_id

    answers = set(through_both(gateways, 16, lambda client, n: str(client.append_turn(
        context_id, MESSAGE, data={"role": "user", "text": "once"}, idempotency_key="k-1").turn_id)))
    assert len(answers) == 1
    with Client(first.url) as client:
        assert [t["turn_id"] for t in chain_of(client, context_id)] == list(answers)
        with pytest.raises(Conflict):  # the key names that request; another one under it is refused
            client.append_turn(context_id, MESSAGE, data={"role": "user", "text": "other"}, idempotency_key="k-1")


def test_a_bundle_published_through_one_gateway_is_used_by_the_next_append_through_the_other(
        gateways: tuple[LiveServer, LiveServer]) -> None:
    first, second = gateways
    with Client(second.url) as client:
        context_id = client.create_context().context_id
        with pytest.raises(PreconditionFailed):  # --require-registry: the type is not registered yet
            client.append_turn(context_id, MESSAGE, data={"role": "user", "text": "hi"})
    publish_conversation(first.url)
    with Client(second.url) as client:
        client.append_turn(context_id, MESSAGE, data={"role": "user", "text": "hi"})
        typed = client.get_turns(context_id)["turns"][0]
    assert typed["data"] == {"role": "user", "text": "hi"}


def test_two_gateways_publishing_different_bundles_under_one_id_give_one_201_and_one_409(
        gateways: tuple[LiveServer, LiveServer]) -> None:
    first, second = gateways
    base = json.loads((BUNDLES / "conversation-v1.json").read_text())
    other = {"versions": {"1": {"fields": {"1": {"name": "x", "type": "u8"}}}}}
    bodies = [{**base, "bundle_id": "race"},
              {**base, "bundle_id": "race", "types": {**base["types"], "t.Other": other}}]

    def publish(client: Client, n: int) -> str:
        try:
            client.publish_bundle(bodies[n])
        except Conflict:
            return "409"
        return "201"

    assert sorted(through_both(gateways, 2, publish)) == ["201", "409"]
    with Client(first.url) as a, Client(second.url) as b:
        assert a.get_bundle("race") == b.get_bundle("race")
        assert [x["bundle_id"] for x in a.list_bundles()["bundles"]] == ["race"]
