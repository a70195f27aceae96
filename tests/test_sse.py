"""The bench client's SSE scan (selfhost.check.sse): streams vLLM sent (tests/data/vllm-sse/, recorded from the
real local server), fed whole and in every split a network could make, and the endings that fail a request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfhost.check.sse import StreamScan, finish_reason

RECORDED = Path(__file__).parent / "data" / "vllm-sse"
TOKENS = 6  # each recorded request asked max_tokens 6 with ignore_eos


def recorded(name: str) -> bytes:
    return (RECORDED / f"{name}.sse").read_bytes()


def scan_of(*reads: bytes) -> tuple[StreamScan, list[int]]:
    scan = StreamScan()
    return scan, [scan.feed(r) for r in reads]


def state(scan: StreamScan) -> tuple:
    return (scan.chunks, scan.tokens, scan.finish, scan.done, scan.error, scan.usage_event)


@pytest.mark.parametrize(
    ("name", "chunks", "role_only", "usage"),
    [
        ("completions-usage", TOKENS, 0, True),
        ("completions", TOKENS, 0, False),
        ("chat-usage", TOKENS + 1, 1, True),  # the chat stream opens with a role chunk (no token)
        ("chat", TOKENS + 1, 1, False),
    ],
)
def test_a_whole_vllm_stream_counts_its_tokens_finish_usage_and_done(name, chunks, role_only, usage):
    scan, added = scan_of(recorded(name))
    assert added == [chunks]
    assert (scan.chunks, scan.role_only, scan.tokens) == (chunks, role_only, TOKENS)
    assert scan.finish == "length" and scan.done and scan.error is None
    if usage:
        assert json.loads(scan.usage_event[len(b"data: ") :])["usage"]["completion_tokens"] == TOKENS
    else:
        assert scan.usage_event == b""


@pytest.mark.parametrize("name", ["completions-usage", "chat-usage", "chat"])
def test_one_byte_at_a_time_gives_what_the_whole_stream_gives(name):
    body = recorded(name)
    whole, _ = scan_of(body)
    scan, added = scan_of(*(body[i : i + 1] for i in range(len(body))))
    assert state(scan) == state(whole) and sum(added) == whole.chunks
    # a chunk counts once its blank line arrived: the reads that complete an event are where the counts grow
    assert sum(1 for n in added if n) == whole.chunks


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(["completions-usage", "completions", "chat-usage", "chat"]), data=st.data())
def test_any_split_into_reads_gives_what_the_whole_stream_gives(name, data):
    body = recorded(name)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(body) - 1), max_size=40)))
    reads = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    whole, _ = scan_of(body)
    scan, added = scan_of(*reads)
    assert state(scan) == state(whole) and sum(added) == whole.chunks


def test_comments_and_keep_alives_are_not_chunks():
    body = recorded("completions-usage")
    first = body.index(b"\n\n") + 2
    scan, _ = scan_of(b": ping\n\n" + body[:first] + b": keep-alive\n\nevent: x\n\n" + body[first:])
    assert scan.tokens == TOKENS and scan.done


def test_nothing_after_done_is_taken():
    scan, added = scan_of(recorded("completions") + b'data: {"choices":[{"text":"x","finish_reason":"abort"}]}\n\n')
    assert added == [TOKENS] and scan.finish == "length"
    assert scan.feed(b'data: {"choices":[{"text":"x"}]}\n\n') == 0 and scan.chunks == TOKENS


def test_a_stream_cut_before_done_has_its_tokens_so_far_and_no_done():
    body = recorded("completions")
    cut = body[: body.index(b"data: [DONE]")]
    three = cut[: [i for i in range(len(cut)) if cut.startswith(b"\n\n", i)][2] + 2]  # three whole events
    scan, _ = scan_of(three)
    assert (scan.chunks, scan.done, scan.finish) == (3, False, None)
    scan, _ = scan_of(cut + b'data: {"choi')  # the incomplete last event is not a chunk
    assert (scan.chunks, scan.done, scan.finish) == (TOKENS, False, "length")


def test_an_aborted_stream_keeps_its_last_finish_reason():
    body = recorded("chat-usage").replace(b'"finish_reason":"length"', b'"finish_reason":"abort"')
    scan, _ = scan_of(body)
    assert scan.finish == "abort" and scan.done


def test_an_error_event_stops_the_scan_with_its_message():
    error = b'data: {"error":{"message":"boom","type":"InternalServerError","code":500}}\n\n'
    body = recorded("completions")
    first = body.index(b"\n\n") + 2
    scan, added = scan_of(body[:first], error + body[first:])
    assert added == [1, 0] and not scan.done
    assert scan.error is not None and scan.error.startswith('{"error":{"message":"boom"')
    assert scan.feed(body[first:]) == 0 and scan.chunks == 1


def test_spaced_json_counts_too():
    """Python's json.dumps default (spaces after ':' and ','), as some OpenAI-compatible servers send it."""
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    tok = {"choices": [{"index": 0, "delta": {"content": " a"}, "finish_reason": None}]}
    last = {"choices": [{"index": 0, "delta": {"content": " b"}, "finish_reason": "stop"}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in (role, tok, last, usage))
    scan, _ = scan_of(body + b"data: [DONE]\n\n")
    assert (scan.chunks, scan.tokens, scan.finish, scan.done) == (3, 2, "stop", True)
    assert json.loads(scan.usage_event[6:]) == usage


def test_finish_reason_is_the_last_string_one():
    assert finish_reason(b'{"finish_reason":null}') is None
    assert finish_reason(b'"finish_reason":"length"}\n\n{"finish_reason": "stop"}') == "stop"
