"""A real 3-node KRaft cluster and a SASL/SCRAM listener, started by ``dispatchwire kafka up``.

Both start their OWN brokers on free loopback ports (never the session's broker, never
9092), with data in a temporary cache dir that borrows the cached Kafka jars, and small
heaps: three JVMs share a loaded two-core machine with everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AioKafkaError
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from pydantic import SecretStr

from dispatchwire.errors import ConfigurationError
from dispatchwire.settings import Settings
from infra import clients
from infra.cluster import LocalCluster, cluster_from_settings
from infra.credentials import broker_credentials, refused_credentials
from infra.kafka import KafkaDistribution, port_answers
from infra.topics import ensure_topics
from tests.conftest import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

NODE_HEAP = "320m"
SASL_USER = "dispatch"
SASL_PASSWORD = "loopback-" + uuid.uuid4().hex[:12]


def _free_port_run(count: int) -> int:
    """A base port with ``count`` free ports from it upwards (what `kafka up` asks for)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no run of free loopback ports")


def _own_cache(tmp: Path) -> Path:
    """A cache dir of our own whose Kafka jars are the shared, already fetched ones."""
    shared = KafkaDistribution(Settings().kafka_version, Settings().cache_dir)
    shared.ensure()
    cache = tmp / "cache"
    cache.mkdir()
    (cache / shared.home.name).symlink_to(shared.home, target_is_directory=True)
    return cache


def _cli(env: dict[str, str], *argv: str, timeout: float = 240.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dispatchwire", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DISPATCHWIRE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "DISPATCHWIRE_CACHE_DIR": str(settings.cache_dir),
            "DISPATCHWIRE_KAFKA_HEAP": settings.kafka_heap,
            "DISPATCHWIRE_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        }
    )
    if settings.kafka_sasl_username and settings.kafka_sasl_password:
        env["DISPATCHWIRE_KAFKA_SASL_USERNAME"] = settings.kafka_sasl_username
        env["DISPATCHWIRE_KAFKA_SASL_PASSWORD"] = settings.kafka_sasl_password.get_secret_value()
    return env


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@contextlib.contextmanager
def _started(settings: Settings, *up_args: str) -> Iterator[LocalCluster]:
    """``dispatchwire kafka up`` in a child process; whatever happens, every node is stopped."""
    cluster = cluster_from_settings(settings, int(up_args[1]) if up_args else None)
    try:
        up = _cli(_env(settings), "kafka", "up", *up_args)
        assert up.returncode == 0, up.stdout + up.stderr
        yield cluster
    finally:
        cluster.stop(timeout=20)


# --- a 3-node cluster -------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, LocalCluster]]:
    tmp = tmp_path_factory.mktemp("cluster3")
    base = _free_port_run(6)
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{base}", cache_dir=_own_cache(tmp), kafka_heap=NODE_HEAP
    )
    with _started(settings, "--brokers", "3") as cluster:
        yield settings, cluster


def _cluster_settings(settings: Settings, cluster: LocalCluster, **extra: object) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=cluster.bootstrap,
        kafka_brokers=3,
        topic_prefix=f"c{tag}.",
        partitions=2,
        **extra,
    )  # type: ignore[arg-type]


def test_kafka_up_brokers_3_starts_one_quorum_of_three_nodes(
    three_nodes: tuple[Settings, LocalCluster],
) -> None:
    settings, cluster = three_nodes
    assert [n.port for n in cluster.nodes] == [cluster.nodes[0].port + 2 * i for i in range(3)]
    assert len(cluster.running()) == 3
    assert cluster.brokers_in_metadata() == {1, 2, 3}
    voters = {
        n.data_dir.joinpath("server.properties")
        .read_text()
        .split("controller.quorum.voters=")[1]
        .split("\n")[0]
        for n in cluster.nodes
    }
    assert len(voters) == 1 and voters.pop().count("@") == 3  # one quorum, three voters
    status = _cli(_env(settings), "kafka", "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.count(": pid ") == 3, status.stdout
    # a second `up` finds it running and changes nothing
    pids = cluster.running()
    again = _cli(_env(settings), "kafka", "up", "--brokers", "3")
    assert again.returncode == 0, again.stderr
    assert cluster.running() == pids


def test_topics_on_the_cluster_get_replication_3_and_min_insync_2(
    three_nodes: tuple[Settings, LocalCluster],
) -> None:
    _, cluster = three_nodes
    settings = _cluster_settings(_, cluster)
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        topics = [settings.commands_topic, settings.events_topic]

        # a new topic reaches every node's metadata a moment after it is created
        def all_known() -> list[dict] | None:
            found = admin.describe_topics(topics)
            return found if all(t["error_code"] == 0 for t in found) else None

        described = wait_for(
            all_known, timeout=30, interval=0.2, message="the new topics in the metadata"
        )
        for topic in described:
            assert len(topic["partitions"]) == 2, topic
            for partition in topic["partitions"]:
                assert sorted(partition["replica_nodes"]) == [1, 2, 3], (topic["name"], partition)
                assert sorted(partition["isr_nodes"]) == [1, 2, 3], (topic["name"], partition)
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        # only the topic's own (non-default) configs: set on the topic, not inherited
        configs = admin.describe_configs(resources)["topic"]
        for topic in topics:
            assert configs[topic]["min.insync.replicas"]["value"] == "2", configs[topic]
    finally:
        admin.close()


def _leader(admin: KafkaAdminClient, topic: str, partition: int) -> int:
    """The partition's leader, or -1 while the cluster cannot say (the node the admin
    client asked may be the one just killed: a reset connection is retried by the caller)."""
    try:
        (described,) = admin.describe_topics([topic])
    except KafkaError:
        return -1
    return next(
        p["leader_id"] for p in described["partitions"] if p["partition_index"] == partition
    )


def test_acks_all_write_survives_sigkill_of_the_partition_leader(
    three_nodes: tuple[Settings, LocalCluster],
) -> None:
    _, cluster = three_nodes
    settings = _cluster_settings(_, cluster)
    ensure_topics(settings)
    topic = settings.commands_topic

    async def produce(values: list[bytes]) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=cluster.bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=20_000,
        )
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value=value, partition=0)
        finally:
            await producer.stop()

    asyncio.run(produce([b"before-1", b"before-2"]))
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        old_leader = _leader(admin, topic, 0)
        victim = next(n for n in cluster.nodes if n.node_id == old_leader)
        pid = victim.running_pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), timeout=10, message="the leader to die")
        new_leader = wait_for(
            lambda: (lead := _leader(admin, topic, 0)) not in (old_leader, -1) and lead,
            timeout=60,
            interval=0.25,
            message="a new leader of partition 0",
        )
    finally:
        admin.close()
    assert new_leader != old_leader
    # acks=all with min.insync.replicas=2: two live replicas still take writes
    asyncio.run(produce([b"after-1"]))

    survivors = ",".join(n.bootstrap for n in cluster.nodes if n.node_id != old_leader)
    consumer = KafkaConsumer(
        bootstrap_servers=survivors, enable_auto_commit=False, consumer_timeout_ms=20_000
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got: list[bytes] = []
    try:
        for record in consumer:
            got.append(record.value)
            if len(got) >= 3:
                break
    finally:
        consumer.close()
    assert got == [b"before-1", b"before-2", b"after-1"]


def test_kafka_down_stops_every_node_and_leaves_no_process(
    three_nodes: tuple[Settings, LocalCluster],
) -> None:
    settings, cluster = three_nodes
    pids = list(cluster.running().values())
    assert pids
    down = _cli(_env(settings), "kafka", "down")
    assert down.returncode == 0, down.stderr
    assert "Kafka stopped" in down.stdout
    assert not [p for p in pids if _alive(p)]
    assert cluster.running() == {}
    assert not any(port_answers(n.host, n.port) for n in cluster.nodes)
    assert not any(port_answers(n.host, n.controller_port or 0) for n in cluster.nodes)
    status = _cli(_env(settings), "kafka", "status")
    assert status.returncode == 1


# --- SASL/SCRAM -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sasl_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One node whose only client listener is SASL_PLAINTEXT + SCRAM-SHA-512."""
    tmp = tmp_path_factory.mktemp("sasl")
    base = _free_port_run(2)
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{base}",
        cache_dir=_own_cache(tmp),
        kafka_heap=NODE_HEAP,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=SASL_USER,
        kafka_sasl_password=SASL_PASSWORD,
    )
    with _started(settings) as cluster:
        assert len(cluster.nodes) == 1
        # the password is in the node's 0600 config, never in its logs
        for node in cluster.nodes:
            assert (node.data_dir / "server.properties").stat().st_mode & 0o077 == 0
            for log in (node.data_dir / "logs").iterdir():
                assert SASL_PASSWORD not in log.read_text(errors="replace"), log
        yield settings.model_copy(
            update={"topic_prefix": f"s{uuid.uuid4().hex[:8]}.", "partitions": 1}
        )


def test_aiokafka_produces_and_consumes_over_scram(sasl_node: Settings) -> None:
    settings = sasl_node
    ensure_topics(settings)  # kafka-python's admin client, with the same credentials
    auth = broker_credentials(settings, "aiokafka")
    assert auth["security_protocol"] == "SASL_PLAINTEXT"

    async def round_trip() -> list[bytes]:
        # built by the one room (infra.clients), which adds the credentials itself
        producer = clients.aio_producer(settings, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(settings.events_topic, key=b"r", value=b"%d" % i)
        finally:
            await producer.stop()
        consumer = clients.aio_consumer(
            settings, settings.events_topic, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        try:
            got: list[bytes] = []
            async with asyncio.timeout(30):
                while len(got) < 5:
                    batch = await consumer.getmany(timeout_ms=1000)
                    got += [r.value for records in batch.values() for r in records]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(round_trip()) == [b"0", b"1", b"2", b"3", b"4"]


def test_kafka_python_produces_and_consumes_over_scram(sasl_node: Settings) -> None:
    settings = sasl_node
    ensure_topics(settings)
    producer = clients.producer(settings, acks="all")
    for i in range(5):
        producer.send(settings.commands_topic, key=b"r", value=b"c%d" % i)
    producer.flush(30)
    producer.close()
    consumer = clients.consumer(
        settings,
        settings.commands_topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    got = []
    try:
        for record in consumer:
            got.append(record.value)
            if len(got) == 5:
                break
    finally:
        consumer.close()
    assert got == [b"c0", b"c1", b"c2", b"c3", b"c4"]


def test_faust_gets_scram_credentials(sasl_node: Settings) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    options = clients.faust_broker_options(sasl_node)
    assert options["broker"] == f"kafka://{sasl_node.kafka_bootstrap}"
    auth = credentials_to_aiokafka_auth(options["broker_credentials"])
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == (SASL_USER, SASL_PASSWORD)


def test_the_api_bus_and_a_replay_window_work_over_scram(sasl_node: Settings) -> None:
    """The API's command producer and the replay's reader get the login too (before the
    one client room, only the admin client had it)."""
    from analytics.logio import LogWindow, Window
    from api.bus import CommandBus
    from schemas import ReportEmergency, decode_command

    settings = sasl_node.model_copy(update={"topic_prefix": f"b{uuid.uuid4().hex[:8]}."})
    ensure_topics(settings)
    command = ReportEmergency(
        command_id=uuid.uuid4().hex,
        region="hki-nw",
        type="medical",
        priority=2,
        lat=60.17,
        lon=24.94,
        description="scram",
    )

    async def send() -> None:
        bus = CommandBus(settings)
        try:
            await bus.send(command)
        finally:
            await bus.stop()

    asyncio.run(send())
    window = LogWindow(settings, Window(), settings.commands_topic)
    got = [decode_command(r.value).command_id for r in window.records()]
    assert got == [command.command_id]


def test_a_wrong_password_is_refused_naming_the_setting(sasl_node: Settings) -> None:
    wrong = sasl_node.model_copy(update={"kafka_sasl_password": SecretStr("not-" + SASL_PASSWORD)})
    # kafka-python (the admin client every part uses to create topics)
    with pytest.raises(ConfigurationError, match="DISPATCHWIRE_KAFKA_SASL_PASSWORD") as caught:
        ensure_topics(wrong)
    assert SASL_PASSWORD not in str(caught.value)

    # aiokafka: the broker refuses the login; our translation names the settings
    async def start_producer() -> BaseException:
        producer = AIOKafkaProducer(
            bootstrap_servers=wrong.kafka_bootstrap,
            request_timeout_ms=10_000,
            **broker_credentials(wrong, "aiokafka"),
        )
        try:
            await producer.start()
        except AioKafkaError as exc:
            return exc
        finally:
            await producer.stop()
        raise AssertionError("a producer with a wrong password started")

    error = refused_credentials(wrong, asyncio.run(start_producer()))
    assert error is not None and "DISPATCHWIRE_KAFKA_SASL_PASSWORD" in str(error)


def test_a_client_without_credentials_gets_nothing(sasl_node: Settings) -> None:
    plain = sasl_node.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    with pytest.raises(Exception):  # noqa: B017 - any failure; the point is no access
        admin = KafkaAdminClient(
            bootstrap_servers=plain.kafka_bootstrap,
            request_timeout_ms=5_000,
            api_version_auto_timeout_ms=5_000,
        )
        try:
            admin.list_topics()
        finally:
            admin.close()


def test_sasl_settings_without_a_password_name_the_missing_variable() -> None:
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u")
    with pytest.raises(ConfigurationError, match="DISPATCHWIRE_KAFKA_SASL_PASSWORD"):
        broker_credentials(settings, "aiokafka")


def test_cluster_size_sets_replication_defaults_and_explicit_values_win() -> None:
    assert (Settings().replication_factor, Settings().min_insync_replicas) == (1, 1)
    three = Settings(kafka_brokers=3)
    assert (three.replication_factor, three.min_insync_replicas) == (3, 2)
    five = Settings(kafka_brokers=5)
    assert (five.replication_factor, five.min_insync_replicas) == (3, 2)
    mine = Settings(kafka_brokers=3, replication_factor=2, min_insync_replicas=1)
    assert (mine.replication_factor, mine.min_insync_replicas) == (2, 1)


def test_a_local_broker_refuses_security_it_cannot_offer() -> None:
    from infra.cluster import scram_login

    with pytest.raises(ConfigurationError, match="DISPATCHWIRE_KAFKA_SECURITY_PROTOCOL"):
        scram_login(Settings(kafka_security_protocol="SSL"))
    with pytest.raises(ConfigurationError, match="DISPATCHWIRE_KAFKA_SASL_PASSWORD"):
        scram_login(
            Settings(
                kafka_security_protocol="SASL_PLAINTEXT",
                kafka_sasl_username="u",
                kafka_sasl_password='with"quote',
            )
        )


def test_a_cluster_started_with_three_nodes_is_not_restarted_with_five(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", cache_dir=_own_cache(tmp_path))
    cluster_from_settings(settings, 3)._cluster_id()  # as `kafka up --brokers 3` records it
    with pytest.raises(ConfigurationError, match="--brokers 3"):
        cluster_from_settings(settings, 5).start(timeout=5)
    assert len(cluster_from_settings(settings).nodes) == 3  # down/status find all three
