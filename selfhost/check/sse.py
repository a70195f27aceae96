"""The server-sent events of an OpenAI-compatible stream, scanned one network read at a time.

A read holds tens of events (a fast server writes many per send). Testing each event in Python costs more than
reading the socket, so a read's complete events are tested together, as one bytes object, with C-level searches
(`count`, `find`): how many `data:` events, whether one is the closing `[DONE]`, an error, the usage report (empty
`choices`), and the last `finish_reason`. Only events that start with `data: ` count (comments and keep-alives
do not); an event is taken once its blank line has arrived, the incomplete rest waits for the next read. Nothing
after `[DONE]` or an error event is taken. No JSON is parsed here; the caller parses the usage event once.
"""

from __future__ import annotations

DATA = b"data: "
SEP = b"\n\n"  # the blank line that ends an event
DONE = b"data: [DONE]"
EMPTY_CHOICES = (b'"choices":[]', b'"choices": []')
ERROR_EVENT = (b'data: {"error"', b'data: {"object":"error"', b'data: {"object": "error"')
# The chat stream's opening chunk: the role, no token (not counted when the server sends no usage report).
ROLE_ONLY = (b'"delta":{"role":"assistant","content":""}', b'"delta": {"role": "assistant", "content": ""}')
FINISH = (b'"finish_reason":"', b'"finish_reason": "')  # a string value: null (not finished) never matches


def event_at(body: bytes, marker: bytes, start: int = 0) -> int:
    """Where the first event of `body` (from `start`) that begins with `marker` begins; -1 when none does.
    `body` starts with an event; every event in it ends with a blank line."""
    if body.startswith(marker, start):
        return start
    i = body.find(SEP + marker, start)
    return i + 2 if i >= 0 else -1


def finish_reason(body: bytes) -> str | None:
    """The last finish_reason string in `body` (one event or many), or None when none has one."""
    at, value = -1, None
    for marker in FINISH:
        i = body.rfind(marker)
        if i > at:
            start = i + len(marker)
            at, value = i, body[start : body.find(b'"', start)].decode(errors="replace")
    return value


class StreamScan:
    """What a stream has delivered so far, fed one network read at a time (`feed`)."""

    __slots__ = ("_tail", "chunks", "done", "error", "finish", "role_only", "usage_event")

    def __init__(self) -> None:
        self.chunks = 0  # data events that carry a choice (a token; the chat stream's role chunk too)
        self.role_only = 0  # 1 when the first of them is the chat stream's role chunk (no token)
        self.finish: str | None = None  # the last finish_reason seen
        self.done = False  # [DONE] arrived
        self.error: str | None = None  # the start of an error event's JSON, when the server sent one
        self.usage_event = b""  # the last usage report (an event with empty choices)
        self._tail = b""

    @property
    def tokens(self) -> int:
        """Streamed token chunks (the chat stream's role chunk is not a token)."""
        return self.chunks - self.role_only

    def feed(self, data: bytes) -> int:
        """Take one read of the response body; return the chunks its complete events add (0 after [DONE]
        or an error event)."""
        if self.done or self.error is not None:
            return 0
        buf = self._tail + data if self._tail else data
        end = buf.rfind(SEP)
        if end < 0:
            self._tail = buf
            return 0
        body, self._tail = buf[: end + 2], buf[end + 2 :]
        done = event_at(body, DONE)
        if done >= 0:
            body = body[:done]
        for marker in ERROR_EVENT:
            i = event_at(body, marker)
            if i >= 0:
                self.error = body[i + len(DATA) : body.find(SEP, i)][:200].decode(errors="replace")
                return 0
        self.done = done >= 0
        n = body.count(SEP + DATA) + body.startswith(DATA)
        usage_at = -1
        for marker in EMPTY_CHOICES:
            i = body.find(marker)
            while i >= 0:
                start = body.rfind(SEP, 0, i)
                start = start + 2 if start >= 0 else 0
                stop = body.find(SEP, i)
                if body.startswith(DATA, start):
                    n -= 1
                    if start > usage_at:
                        usage_at, self.usage_event = start, body[start:stop]
                i = body.find(marker, stop)
        if n <= 0:
            return 0
        if self.chunks == 0:  # the stream's first chunk: the first data event that is not a usage report
            first = event_at(body, DATA)
            event = body[first : body.find(SEP, first)]
            while EMPTY_CHOICES[0] in event or EMPTY_CHOICES[1] in event:
                first = event_at(body, DATA, first + len(event) + 2)
                event = body[first : body.find(SEP, first)]
            self.role_only = int(ROLE_ONLY[0] in event or ROLE_ONLY[1] in event)
        self.finish = finish_reason(body) or self.finish
        self.chunks += n
        return n
