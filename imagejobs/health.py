"""What /healthz reports."""

import asyncio
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from mami.db_outage import drop_connection

from .overview import worker_views


async def _layer_round_trip() -> None:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is always configured"
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.check"})
    await asyncio.wait_for(layer.receive(channel), timeout=2)


def health_report() -> dict[str, Any]:
    report: dict[str, Any] = {"status": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report["database"] = "ok"
    except Exception as exc:
        drop_connection()  # a fresh one for the next request
        report["database"] = f"error: {exc.__class__.__name__}"
        report["status"] = "error"
    try:
        async_to_sync(_layer_round_trip)()
        report["channel_layer"] = "ok"
    except Exception as exc:
        report["channel_layer"] = f"error: {exc.__class__.__name__}"
        report["status"] = "error"
    if report["database"] == "ok":
        workers = [view for view in worker_views() if view.alive]
        report["workers"] = [
            {
                "id": view.state.id,
                "heartbeat_age_seconds": round(view.seconds_since_heartbeat, 1),
                "circuit": view.state.circuit,
                "current_job": str(view.state.current_job_id)
                if view.state.current_job_id
                else None,
            }
            for view in workers
        ]
        report["newest_heartbeat_age_seconds"] = (
            min(item["heartbeat_age_seconds"] for item in report["workers"]) if workers else None
        )
        if not workers and report["status"] == "ok":
            report["status"] = "degraded"
    return report
