"""Socket tricks both simulators need to behave like a real, misbehaving server."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct


def peer_closed(conn: socket.socket) -> bool:
    """True when the client has closed its end (EOF pending), e.g. after its own timeout.

    A simulator checks this before recording an answer as served: an answer nobody read
    was not delivered, so homepoll cannot be expected to have stored it.
    """
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        if not readable:
            return False
        if isinstance(conn, ssl.SSLSocket):
            # No peeking through TLS; a client waiting for its answer sends nothing, so
            # anything readable (a close_notify alert, EOF) means it has gone.
            return True
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except OSError:
        return True


def reset(conn: socket.socket) -> None:
    """Close with a TCP RST and no answer at all (``SO_LINGER`` 0), as a crashed peer does."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
