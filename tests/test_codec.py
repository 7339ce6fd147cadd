"""The blob codec: a batch framed in one zstd call is byte for byte what framing each payload alone
gives, with and without a dictionary, and every frame decodes to its payload."""

from __future__ import annotations

import random

import msgpack
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from cxdb.codec import MIN_COMPRESS, BlobCodec
from cxdb.model import COMPRESSION_DICT, COMPRESSION_NONE, COMPRESSION_ZSTD

WORDS = "the agent called a tool with arguments and read back its result in plain text".split()


def message(rng: random.Random, words: int) -> bytes:
    return msgpack.packb({1: rng.choice(["user", "assistant"]), 2: " ".join(rng.choices(WORDS, k=words))})


@pytest.fixture(scope="module")
def dictionary() -> bytes:
    rng = random.Random(7)
    return zstandard.train_dictionary(8192, [message(rng, rng.randint(5, 80)) for _ in range(2000)]).as_bytes()


payloads = st.lists(st.one_of(
    st.binary(max_size=3 * MIN_COMPRESS),  # mostly incompressible; some below the threshold
    st.builds(lambda seed, words: message(random.Random(seed), words), st.integers(0, 1000), st.integers(1, 200)),
), min_size=0, max_size=12)


@settings(max_examples=60, deadline=None)
@given(raws=payloads, with_dictionary=st.booleans())
def test_a_batch_frames_as_each_payload_alone(raws: list[bytes], with_dictionary: bool, dictionary: bytes) -> None:
    codec = BlobCodec()
    if with_dictionary:
        codec.add_dictionary(1, dictionary, use=True)
    framed = codec.encode_all(raws)
    assert framed == [codec.encode(raw) for raw in raws]
    for raw, (stored, compression) in zip(raws, framed, strict=True):
        assert codec.decode(stored) == raw
        assert BlobCodec.header(stored) == (compression, len(raw))
        if len(raw) < MIN_COMPRESS:
            assert compression == COMPRESSION_NONE
        elif compression != COMPRESSION_NONE:
            assert compression == (COMPRESSION_DICT if with_dictionary else COMPRESSION_ZSTD)
            assert len(stored) < len(raw) + 16  # compressed only where it paid


def test_text_compresses_in_a_batch() -> None:
    rng = random.Random(3)
    raws = [message(rng, 60) for _ in range(50)]
    framed = BlobCodec().encode_all(raws)
    assert all(compression == COMPRESSION_ZSTD for _, compression in framed)
    assert sum(len(stored) for stored, _ in framed) < sum(len(raw) for raw in raws)
