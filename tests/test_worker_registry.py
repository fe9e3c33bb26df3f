"""Workers' own rows: one live process per worker id."""

import pytest

from imagejobs import registry
from imagejobs.models import WorkerState


def test_a_running_worker_id_cannot_be_taken_twice(db, settings):
    registry.register("gpu-1", "http://127.0.0.1:7860")
    # Same id from another host that beat a moment ago: refused.
    WorkerState.objects.filter(pk="gpu-1").update(hostname="elsewhere")
    with pytest.raises(registry.WorkerIdInUse, match="in use by pid"):
        registry.register("gpu-1", "http://127.0.0.1:7860")
