"""MQTT: share readings with Home Assistant, Node-RED, Telegraf over a broker.

Nothing here is imported unless ``mqtt.enabled`` is set: the daemon imports
``homepoll.mqtt.service`` only then, and only that module pulls in aiomqtt/paho.
"""

from __future__ import annotations

from typing import Any


async def start(config: Any) -> Any:
    """The running MQTT service, or None with MQTT off (then aiomqtt is never imported).

    With events off the outbox trigger is dropped, so a reading costs nothing extra.
    """
    import asyncio

    from homepoll.mqtt.outbox import drop_capture

    settings = config.mqtt
    if not settings.enabled or not settings.events:
        await asyncio.to_thread(drop_capture, config.storage.path)
    if not settings.enabled:
        return None
    from homepoll.mqtt.service import MqttService

    service = MqttService(config)
    await service.start()
    return service
