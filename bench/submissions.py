"""200 picture requests from 20 concurrent API clients against a running
server: each client sends its 10 requests one after another (a closed
loop), as fast as the server answers.

Embedded (default): `manage.py runserver` (Daphne) with the worker in its
process, on SQLite. `--production`: Daphne on PostgreSQL + Redis, and
`runworker` in its own process. The Forge simulator draws slowly (5 s a
picture) in a process of its own, so the queue grows as in a rush.

Prints the latency p50 / p95 / max, and checks that nothing was lost and
the positions of the queued jobs are 1..N, each once. Target: p95 < 150 ms.

    .venv/bin/python bench/submissions.py [--production] [--clients 20] [--each 10]
"""

import os
import statistics
import subprocess
import threading
import time

import httpx
from common import (
    MANAGE,
    PRODUCTION,
    ROOT,
    Simulator,
    free_port,
    fresh_database,
    option,
    percentile,
    runworker,
    topology,
    wait_until,
)
from django.contrib.auth import get_user_model

from imagejobs.models import ImageJob, Status
from imagejobs.tokens import create_token


def start_server(forge_url: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {**os.environ, "FORGE_URL": forge_url, "MAMI_LOG_LEVEL": "WARNING"}
    if PRODUCTION:
        command = [os.path.join(os.path.dirname(MANAGE[0]), "daphne")]
        command += ["-p", str(port), "mami.asgi:application"]
    else:
        command = [*MANAGE, "runserver", "--noreload", f"127.0.0.1:{port}"]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 30, "the server")
    return url, server


def main() -> None:
    fresh_database()
    clients, each = int(option("--clients", "20")), int(option("--each", "10"))
    keys = []
    for n in range(clients):
        user = get_user_model().objects.create_user(f"client{n}")
        keys.append(create_token(user, "bench")[1])
    sim = Simulator(0.25)  # 20 steps: 5 s a picture
    url, server = start_server(sim.url)
    worker = runworker(sim.url) if PRODUCTION else None
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients)

    def client(key: str) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
            http.get("/api/image/status")  # connected and authenticated before the rush
            ready.wait()
            for n in range(each):
                began = time.perf_counter()
                response = http.post("/api/image/generate", json={"prompt": f"a fox {n}"}, timeout=60)
                took = time.perf_counter() - began
                with lock:
                    latencies.append(took)
                    if response.status_code != 201:
                        failures.append(f"{response.status_code}: {response.text[:200]}")

    try:
        threads = [threading.Thread(target=client, args=(key,)) for key in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # The server's own view of the queue, as the API gives it.
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys[0]}"}) as http:
            http.get("/api/image/status")
    finally:
        server.terminate()
        server.wait(timeout=30)
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        sim.stop()
    from imagejobs import queue

    asked = ImageJob.objects.count()
    positions = list(queue.snapshot().positions.values())
    queued = ImageJob.objects.filter(status=Status.QUEUED).count()
    ms = 1000
    print(f"submissions, {topology()}: {clients} clients x {each} requests")
    print(
        f"  p50 {statistics.median(latencies) * ms:.0f} ms, p95 "
        f"{percentile(latencies, 0.95) * ms:.0f} ms, max {max(latencies) * ms:.0f} ms   "
        "(target p95 < 150 ms)"
    )
    print(
        f"  {asked} jobs stored of {clients * each} asked, {len(failures)} refused; "
        f"positions 1..{queued} each once: {sorted(positions) == list(range(1, queued + 1))}"
    )
    for failure in failures[:5]:
        print("   ", failure)


if __name__ == "__main__":
    main()
