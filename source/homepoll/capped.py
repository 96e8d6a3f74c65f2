"""Reading a body from the network without letting its size decide our memory."""

from __future__ import annotations

from homepoll.errors import PermanentError


class CappedBuffer:
    """Collects chunks up to ``limit`` bytes; one more raises PermanentError(``message``).

    The chunks are dropped before raising: a traceback kept anywhere (a log record) must not
    pin megabytes. The caller feeds it from whatever it reads (httpx, http.client, a pipe).
    """

    __slots__ = ("_chunks", "_limit", "_message", "size")

    def __init__(self, limit: int, message: str) -> None:
        self._chunks: list[bytes] = []
        self._limit = limit
        self._message = message
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            self._chunks.clear()
            raise PermanentError(self._message)
        self._chunks.append(chunk)

    def value(self) -> bytes:
        return b"".join(self._chunks)
