"""Measure the commands agent's throughput and the time to recover a big table.

    DISPATCHWIRE_KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python -m tests.streams.bench_worker \
        [--reports 20000] [--recover 100000]

Not a test (nothing is asserted about time); it prints numbers for the notes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from kafka import KafkaProducer

from schemas import DispatchEmergency, EmergencyType, ReportEmergency, encode
from schemas.geo import load_network
from streams.seed import fleet, register_commands
from streams.simulate import random_road_point
from tests.conftest import WorkerProcess, wait_for
from tests.streams.conftest import fresh_settings
from tests.streams.helpers import EventLog


def produce(settings, cmds) -> None:
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, batch_size=256 * 1024, acks=1
    )
    for cmd in cmds:
        producer.send(settings.commands_topic, key=cmd.region.encode(), value=encode(cmd))
    producer.flush(120)
    producer.close()


def count_events(log: EventLog, want: int, timeout: float) -> float:
    def enough() -> bool:
        for batch in log.consumer.poll(timeout_ms=200, max_records=20000).values():
            log.records.extend(batch)
        return len(log.records) >= want

    wait_for(enough, timeout=timeout, interval=0.0, message=f"{want} events")
    return time.monotonic()


def reports(n: int, rng: random.Random) -> list[ReportEmergency]:
    net = load_network()
    out = []
    for _ in range(n):
        lat, lon = random_road_point(net, rng)
        out.append(
            ReportEmergency(
                region=net.region_for(lat, lon),
                type=EmergencyType.MEDICAL,
                priority=3,
                lat=lat,
                lon=lon,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--dispatches", type=int, default=5_000)
    parser.add_argument("--recover", type=int, default=100_000)
    args = parser.parse_args()
    bootstrap = os.environ.get("DISPATCHWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    tmp = Path(tempfile.mkdtemp(prefix="dw-bench-"))
    rng = random.Random(3)

    # 1. throughput: a backlog of commands, then a worker that drains it
    settings = fresh_settings(bootstrap, tmp, partitions=4, tick_seconds=3600.0)
    units = register_commands(fleet(load_network()))
    reps = reports(args.reports, rng)
    disp = [
        DispatchEmergency(region=r.region, emergency_id=r.emergency_id)
        for r in reps[: args.dispatches]
    ]
    produce(settings, [*units, *reps])
    log = EventLog(settings)
    worker = WorkerProcess(settings, tmp / "w1.log")
    worker.start()
    t0 = time.monotonic()
    t1 = count_events(log, len(units) + len(reps), 600)
    n = len(units) + len(reps)
    rate = n / (t1 - t0)
    print(f"reports:    {n} commands -> {n} events in {t1 - t0:.1f} s = {rate:.0f} events/s")
    t2 = time.monotonic()
    produce(settings, disp)
    wanted = {d.command_id for d in disp}

    def answered() -> bool:
        for batch in log.consumer.poll(timeout_ms=200, max_records=20000).values():
            log.records.extend(batch)
            for record in batch:
                wanted.discard(json.loads(record.value)["command_id"])
        return not wanted

    wait_for(answered, timeout=600, interval=0.0, message="every dispatch answered")
    t3 = time.monotonic()
    print(
        f"dispatches: {len(disp)} commands (8 ambulances assigned with routing, the rest "
        f"rejected) in {t3 - t2:.1f} s = {(len(log.records) - n) / (t3 - t2):.0f} events/s"
    )
    worker.kill()
    log.close()

    # 2. recovery: a table of --recover emergencies (plus one command record each)
    settings = fresh_settings(bootstrap, tmp, partitions=4, tick_seconds=3600.0)
    produce(settings, reports(args.recover, rng))
    log = EventLog(settings)
    worker = WorkerProcess(settings, tmp / "w2.log", ready_timeout=600)
    worker.start()
    t0 = time.monotonic()
    count_events(log, args.recover, 1200)
    print(f"filled:     {args.recover} emergencies in {time.monotonic() - t0:.1f} s")
    log.close()
    wait_for(lambda: len(worker.state()["emergencies"]) == args.recover, timeout=120)
    worker.stop()
    t0 = time.monotonic()
    worker.start()  # returns once its table is recovered and it owns its partitions
    t1 = time.monotonic()
    got = len(worker.state()["emergencies"])
    print(
        f"recovery:   {got} emergencies ({2 * got} table entries) recovered, "
        f"process start to ready in {t1 - t0:.1f} s"
    )
    worker.kill()


if __name__ == "__main__":
    main()
