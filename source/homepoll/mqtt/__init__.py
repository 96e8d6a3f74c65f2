"""MQTT: share readings with Home Assistant, Node-RED, Telegraf over a broker.

Nothing here is imported unless ``mqtt.enabled`` is set: the daemon imports
``homepoll.mqtt.service`` only then, and only that module pulls in aiomqtt/paho.
"""

from __future__ import annotations

from typing import Any


async def start(config: Any, on_change: Any = None) -> Any:
    """The running MQTT service, or None with MQTT off (then aiomqtt is never imported).

    ``on_change(status)`` is awaited whenever the broker link comes up or goes down.

    With events off the outbox trigger is dropped, so a reading costs nothing extra.
    """
    import asyncio
    import logging

    from homepoll.mqtt.outbox import drop_capture

    settings = getattr(config, "mqtt", None)
    try:
        if settings is None or not settings.enabled or not settings.events:
            await asyncio.to_thread(drop_capture, config.storage.path)
        if settings is None or not settings.enabled:
            return None
        from homepoll.mqtt.service import MqttService

        service = MqttService(config, on_change)
        await service.start()
        return service
    except Exception:  # MQTT is an extra: polling and storing go on without it
        logging.getLogger("homepoll.mqtt").exception("MQTT could not start; going on without it")
        return None
