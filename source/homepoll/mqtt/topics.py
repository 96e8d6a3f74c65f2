"""Topic names built from sensor names a user (or a hostile bridge) chose.

A name reaches a topic only as a slug of ``[a-z0-9_]``: no ``+``, ``#`` or ``/``, no control
characters, nothing that could climb out of ``base_topic`` or ``discovery_prefix``, and
nothing Home Assistant's discovery topic pattern (``[a-zA-Z0-9_-]+``) would refuse.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from homepoll.model import SensorKey

MAX_SLUG = 48
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_BAD_TOPIC_CHARS = re.compile(r"[+#\x00-\x1f\x7f-\x9f\u2028\u2029]")


def slug(text: str, fallback: str = "unnamed") -> str:
    """``"Küche / Sensor #1"`` -> ``"kuche_sensor_1"``; never empty, never longer than MAX_SLUG."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    out = _NOT_SLUG.sub("_", ascii_text.lower()).strip("_")[:MAX_SLUG].rstrip("_")
    return out or fallback


def short_hash(*parts: str) -> str:
    """Six hex digits that tell two different ids apart in a topic (stable across runs)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:6]


def object_id(key: SensorKey) -> str:
    """A discovery object id and unique_id stem that never changes for a series, even when
    its device is renamed: derived from source, device id and metric, not from the name."""
    return f"{slug(key.source)}_{slug(key.device_id, 'device')}_{slug(key.metric)}_" + short_hash(
        *key
    )


class DeviceSlugs:
    """The topic part of each device: its name's slug, made unique among the devices seen.

    Two devices named "Hall" would otherwise share (and overwrite) each other's topics: the
    first one seen keeps ``hall``, a later one gets ``hall_<hash of its id>``. The daemon
    feeds devices in database order first, so the same devices get the same topics after a
    restart.
    """

    def __init__(self) -> None:
        self._by_device: dict[tuple[str, str], tuple[str, str]] = {}  # -> (name, slug)
        self._owner: dict[str, tuple[str, str]] = {}  # slug -> device

    def get(self, source: str, device_id: str, name: str) -> str:
        """The slug for this device under this name (a rename gives it a new slug)."""
        device = (source, device_id)
        known = self._by_device.get(device)
        if known is not None and known[0] == name:
            return known[1]
        if known is not None and self._owner.get(known[1]) == device:
            del self._owner[known[1]]
        wanted = slug(name, fallback=slug(device_id, "device"))
        owner = self._owner.get(wanted)
        if owner is not None and owner != device:
            wanted = f"{wanted[: MAX_SLUG - 7]}_{short_hash(source, device_id)}"
        self._owner[wanted] = device
        self._by_device[device] = (name, wanted)
        return wanted


def check_topic(topic: str, root: str) -> str:
    """``topic`` itself, after making sure it is a valid topic under ``root``; else ValueError.

    The last line of defence: every topic goes through here before it is published.
    """
    if not topic.startswith(root + "/") or "//" in topic[len(root) :]:
        raise ValueError(f"topic outside {root!r}: {topic!r}")
    if _BAD_TOPIC_CHARS.search(topic) or len(topic.encode()) > 65535:
        raise ValueError(f"invalid topic: {topic!r}")
    return topic
