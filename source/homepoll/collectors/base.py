"""What the daemon needs from a source, and how a collector is built from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from homepoll.model import CollectResult

if TYPE_CHECKING:
    from homepoll.config import Config


class Collector(Protocol):
    """One source. ``collect`` makes ONE attempt; the retry policy decides about the next.

    ``collect`` raises only homepoll.errors taxonomy exceptions for source failures, with
    secret-free messages, and bounds every blocking call by ``timeout`` seconds.
    """

    name: str
    alert_file: str
    alert_remedy: str

    async def collect(self, timeout: float) -> CollectResult: ...

    async def aclose(self) -> None: ...


COLLECTOR_NAMES = ("hue", "amazon_aqm")


def build_collector(name: str, config: Config) -> Collector:
    """Build one collector; imports lazily so a disabled source costs no import time or memory."""
    if name == "hue":
        from homepoll.collectors.hue import HueCollector

        return HueCollector(config.hue, state_dir=config.data_dir)
    if name == "amazon_aqm":
        from homepoll.collectors.amazon_aqm import AmazonAqmCollector

        return AmazonAqmCollector(config.amazon_aqm)
    raise ValueError(f"unknown collector {name!r}; known: {', '.join(COLLECTOR_NAMES)}")


def enabled_collectors(config: Config) -> list[str]:
    return [name for name in COLLECTOR_NAMES if getattr(config, name).enabled]
