"""200 picture requests from 20 concurrent API clients against a running
server: each client sends its 10 requests one after another (a closed
loop), as fast as the server answers.

Embedded (default): Daphne, as `./scripts/run` serves, with the worker in its
process, on SQLite. `--production`: Daphne on PostgreSQL + Redis, and
`runworker` in its own process. The Forge simulator draws slowly (5 s a
picture) in a process of its own, so the queue grows as in a rush.

Prints the latency p50 / p95 / max, and checks that nothing was lost and
the positions of the queued jobs are 1..N, each once. Targets: p95 < 300
ms, >= 80 submissions a second, <= 10 ms of server CPU per submission.
Also the web server's CPU per submission during the rush, and per request
that does nothing (`GET /api/` of no endpoint: a 404 through every
middleware, no database): with N clients in a closed loop on one
interpreter, a request waits for about N requests' CPU.

`--profile`: no server; one client's submissions in this process, through
Django's whole request path (middleware, token, view, ORM), with the CPU
one costs and where it goes (cProfile, by cumulative time).

    .venv/bin/python bench/submissions.py [--production] [--clients 20] [--each 10]
        [--spy stacks.txt]
    .venv/bin/python bench/submissions.py --profile [--production]
"""

import cProfile
import pstats
import statistics
import sys
import threading
import time

import httpx
from common import (
    PRODUCTION,
    Simulator,
    fresh_database,
    option,
    percentile,
    server_cpu_seconds,
    serving,
    spying,
    stop_spying,
    topology,
)
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from imagejobs import positions
from imagejobs.models import ImageJob, Status
from imagejobs.tokens import create_token

FLOOR_REQUESTS = 300


def main() -> None:
    fresh_database()
    clients, each = int(option("--clients", "20")), int(option("--each", "10"))
    keys = []
    for n in range(clients):
        user = get_user_model().objects.create_user(f"client{n}")
        keys.append(create_token(user, "bench")[1])
    sim = Simulator(0.25)  # 20 steps: 5 s a picture
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients)

    def client(url: str, key: str) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
            http.get("/api/image/status")  # connected and authenticated before the rush
            ready.wait()
            for n in range(each):
                began = time.perf_counter()
                response = http.post(
                    "/api/image/generate", json={"prompt": f"a fox {n}"}, timeout=60
                )
                took = time.perf_counter() - began
                with lock:
                    latencies.append(took)
                    if response.status_code != 201:
                        failures.append(f"{response.status_code}: {response.text[:200]}")

    with serving(sim.url) as url:
        threads = [threading.Thread(target=client, args=(url, key)) for key in keys]
        for thread in threads:
            thread.start()
        cpu_before, rush_began = server_cpu_seconds(), time.perf_counter()
        spy = spying(option("--spy"))
        for thread in threads:
            thread.join()
        rush = time.perf_counter() - rush_began
        stop_spying(spy)
        cpu_per_submission = (server_cpu_seconds() - cpu_before) / (clients * each)
        # What the server spends with no request at all (embedded: its
        # worker drawing) is not the requests' cost.
        cpu_before, began = server_cpu_seconds(), time.perf_counter()
        time.sleep(3)
        background = (server_cpu_seconds() - cpu_before) / (time.perf_counter() - began)
        with httpx.Client(base_url=url) as http:
            for _ in range(20):
                http.get("/api/nothing-here")
            cpu_before, began = server_cpu_seconds(), time.perf_counter()
            for _ in range(FLOOR_REQUESTS):
                http.get("/api/nothing-here")
            spent = server_cpu_seconds() - cpu_before
            spent -= background * (time.perf_counter() - began)
            cpu_per_nothing = spent / FLOOR_REQUESTS
    sim.stop()

    asked = ImageJob.objects.count()
    places = list(positions.snapshot().positions.values())
    queued = ImageJob.objects.filter(status=Status.QUEUED).count()
    ms = 1000
    print(f"submissions, {topology()}: {clients} clients x {each} requests")
    print(
        f"  p50 {statistics.median(latencies) * ms:.0f} ms, p95 "
        f"{percentile(latencies, 0.95) * ms:.0f} ms, max {max(latencies) * ms:.0f} ms   "
        f"(target p95 < 300 ms); {clients * each / rush:.0f} submissions a second "
        "(target >= 80)"
    )
    print(
        f"  {asked} jobs stored of {clients * each} asked, {len(failures)} refused; "
        f"positions 1..{queued} each once: {sorted(places) == list(range(1, queued + 1))}"
    )
    for failure in failures[:5]:
        print("   ", failure)
    print(
        f"  web server CPU per submission in the rush: {cpu_per_submission * ms:.1f} ms"
        + ("" if PRODUCTION else " (its in-process worker's share included)")
    )
    print(
        f"  web server CPU per request that does nothing (a 404 under /api/): "
        f"{cpu_per_nothing * ms:.1f} ms (beyond its {background * ms:.0f} ms a second "
        "with no request)"
    )
    print(
        f"  {clients} clients on one interpreter: about {clients} x "
        f"{cpu_per_submission * ms:.1f} = {clients * cpu_per_submission * ms:.0f} ms a request "
        "(target <= 10 ms of server CPU per submission)"
    )


def profile() -> None:
    """Where one submission's CPU goes, with the queue already 200 long."""
    fresh_database()
    user = get_user_model().objects.create_user("profiled")
    client = Client(headers={"Authorization": f"Bearer {create_token(user, 'bench')[1]}"})

    def submit(n: int) -> None:
        response = client.post(
            "/api/image/generate", {"prompt": f"a fox {n}"}, content_type="application/json"
        )
        assert response.status_code == 201, response.content

    for n in range(200):
        submit(n)
    cpu = []
    for n in range(100):
        start = time.process_time()
        submit(n)
        cpu.append(time.process_time() - start)
    statements = []
    with connection.execute_wrapper(
        lambda run, sql, *args: statements.append(sql) or run(sql, *args)
    ):
        submit(0)
    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(50):
        submit(n)
    profiler.disable()
    print(f"one submission, in process, {topology()}, {ImageJob.objects.count()} jobs stored")
    print(
        f"  CPU median {statistics.median(cpu) * 1000:.1f} ms, p95 "
        f"{percentile(cpu, 0.95) * 1000:.1f} ms; {len(statements)} statements"
    )
    floor = []
    for _ in range(100):
        start = time.process_time()
        client.get("/api/nothing-here")
        floor.append(time.process_time() - start)
    print(
        f"  (the floor: a GET under /api/ of no endpoint, a 404 through the same "
        f"middleware, no database: {statistics.median(floor) * 1000:.1f} ms)"
    )
    print("  where it goes (50 submissions):")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    profile() if "--profile" in sys.argv else main()
