"""sd_notify without a dependency: one datagram to the unix socket named by $NOTIFY_SOCKET.

systemd (Type=notify, WatchdogSec=) learns from these messages that homepoll is ready,
still alive, or stopping. Outside systemd the variable is unset and every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("homepoll.notify")

# A full socket queue must not stall the event loop for long; systemd reads promptly.
_SEND_TIMEOUT = 0.5


def notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1", "WATCHDOG=1", "STATUS=...") to systemd.

    Returns False when not running under systemd notification or when sending failed;
    never raises, because a missed notification must not take the daemon down.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    elif not address.startswith("/"):
        log.debug("NOTIFY_SOCKET %r is not a unix socket path; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(_SEND_TIMEOUT)
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.debug("sd_notify %r failed: %s", message.split("=", 1)[0], exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None without a watchdog.

    $WATCHDOG_PID, when set, names the process the watchdog is meant for; a child process
    that merely inherited the variables must not ping.
    """
    usec_text = os.environ.get("WATCHDOG_USEC", "")
    try:
        usec = int(usec_text)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid_text = os.environ.get("WATCHDOG_PID", "")
    if pid_text:
        try:
            if int(pid_text) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000
