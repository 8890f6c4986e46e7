"""A real Kafka cluster on loopback: N KRaft nodes from the same jars as ``LocalBroker``.

Each node is a ``LocalBroker`` (same config writing, storage formatting, process handling
and pid file) that runs as broker+controller with its own ``node.id``; the N controllers
form one static quorum (``controller.quorum.voters``), so 3 nodes keep a majority when one
dies. Ports come from a base port, a node and its controller side by side: for 9092 the
nodes listen on 9092, 9094, 9096 and their controllers on 9093, 9095, 9097. Data lives under
``<cache>/cluster/<base port>/node-<id>``; ``cluster.json`` there records the cluster id and
size, so ``kafka down|status`` find every node and a second ``up`` reuses the same storage.

With ``security`` set, the client listener is ``SASL_PLAINTEXT`` with SCRAM; the users are
created when KRaft storage is formatted (``kafka-storage format --add-scram``), before any
node starts, and the nodes authenticate to each other as that same user. The controller
listener stays PLAINTEXT on loopback (KRaft controllers cannot use SCRAM: the credentials
live in the metadata they serve).
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatchwire.errors import BrokerStartError, ConfigurationError
from dispatchwire.settings import Settings
from infra.credentials import broker_credentials, refused_credentials, sasl_login, uses_sasl
from infra.kafka import KafkaDistribution, LocalBroker, port_answers

log = logging.getLogger(__name__)

# A SIGKILLed node is fenced (and its partitions get new leaders) once the controller has
# missed its heartbeats for this long; Kafka's 9 s default is meant for real networks.
BROKER_SESSION_TIMEOUT_MS = 3_000
BROKER_HEARTBEAT_MS = 500


@dataclass(frozen=True)
class ScramLogin:
    """The one SCRAM user of a local cluster: clients and the nodes themselves log in as it."""

    mechanism: str
    username: str
    password: str = field(repr=False)

    @property
    def listener(self) -> str:
        return "SASL_PLAINTEXT"

    def jaas(self) -> str:
        return (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{self.username}" password="{self.password}";'
        )


def scram_login(settings: Settings) -> ScramLogin | None:
    """What the local cluster's listener asks for under these settings (None: PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol != "SASL_PLAINTEXT" or not settings.kafka_sasl_mechanism.startswith("SCRAM-"):
        raise ConfigurationError(
            "the local Kafka (`dispatchwire kafka up`) offers PLAINTEXT or SASL_PLAINTEXT with "
            "SCRAM-SHA-256/512; set DISPATCHWIRE_KAFKA_SECURITY_PROTOCOL and "
            "DISPATCHWIRE_KAFKA_SASL_MECHANISM to one of those, or point "
            "DISPATCHWIRE_KAFKA_BOOTSTRAP at a cluster that has TLS"
        )
    username, password = sasl_login(settings)
    # the user lands in a JAAS line and in kafka-storage's [name=...,password=...] syntax
    for env, value in (("USERNAME", username), ("PASSWORD", password)):
        if any(c in value for c in '"\\,[]=\n') or not value.isprintable():
            raise ConfigurationError(
                f"DISPATCHWIRE_KAFKA_SASL_{env} has a character the local broker's "
                'configuration cannot carry (one of " \\ , [ ] = or a control character)'
            )
    return ScramLogin(settings.kafka_sasl_mechanism, username, password)


@dataclass
class ClusterNode(LocalBroker):
    """One broker+controller of a ``LocalCluster``; ``LocalBroker`` with cluster settings."""

    node_id: int = 1
    voters: str = ""
    cluster_id: str = ""
    replication_factor: int = 1
    min_insync_replicas: int = 1
    login: ScramLogin | None = field(default=None, repr=False)
    client_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def _cluster_properties(self) -> dict[str, str]:
        size = len(self.voters.split(","))
        values = {
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "offsets.topic.replication.factor": str(min(size, 3)),
            "transaction.state.log.replication.factor": str(min(size, 3)),
            "transaction.state.log.min.isr": str(max(min(size, 3) - 1, 1)),
            "default.replication.factor": str(self.replication_factor),
            "min.insync.replicas": str(self.min_insync_replicas),
            "broker.heartbeat.interval.ms": str(BROKER_HEARTBEAT_MS),
            "broker.session.timeout.ms": str(BROKER_SESSION_TIMEOUT_MS),
            # the log cleaner's 128 MB default alone overflows a small node heap; 32 MB
            # still compacts ~1M keys per pass (the worker's changelog has far fewer)
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        }
        if self.login is not None:
            name = self.login.listener
            mech = self.login.mechanism
            jaas_key = f"listener.name.{name.lower()}.{mech.lower()}.sasl.jaas.config"
            values.update(
                {
                    "listeners": f"{name}://{self.host}:{self.port},"
                    f"CONTROLLER://{self.host}:{self._controller_port()}",
                    "advertised.listeners": f"{name}://{self.host}:{self.port}",
                    "listener.security.protocol.map": f"{name}:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name": name,
                    "sasl.enabled.mechanisms": mech,
                    "sasl.mechanism.inter.broker.protocol": mech,
                    jaas_key: self.login.jaas(),
                }
            )
        return values

    def _write_config(self) -> Path:
        """``LocalBroker``'s single-node file with the keys a cluster member changes."""
        props = super()._write_config()
        values: dict[str, str] = {}
        for line in props.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value
        values.update(self._cluster_properties())
        props.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        props.chmod(0o600)  # it carries the inter-broker password when SASL is on
        return props

    def _format(self, props: Path) -> None:
        if (self.data_dir / "kraft" / "meta.properties").exists():
            return
        args = ["format", "-t", self.cluster_id, "-c", str(props)]
        if self.login is not None:
            login = self.login
            args += [
                "--add-scram",
                f"{login.mechanism}=[name={login.username},password={login.password}]",
            ]
        proc = subprocess.run(
            self._java("kafka.tools.StorageTool", *args),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            output = proc.stdout + proc.stderr
            if self.login is not None:
                output = output.replace(self.login.password, "***")
            raise BrokerStartError(
                f"formatting KRaft storage of node {self.node_id} failed", output
            )

    def _probe_options(self) -> dict[str, Any]:
        return self.client_options


@dataclass
class LocalCluster:
    """N ``ClusterNode``s on ``host``; ``ports[i]`` is node i+1's (client, controller) pair."""

    distribution: KafkaDistribution
    data_dir: Path
    ports: list[tuple[int, int]]
    host: str = "127.0.0.1"
    heap: str = "512m"
    # broker defaults for topics created without their own (Faust's, auto-created ones);
    # ours get settings.replication_factor / min_insync_replicas from infra.topics
    replication_factor: int | None = None  # default: min(N, 3)
    min_insync_replicas: int | None = None  # default: one less than the replication factor
    login: ScramLogin | None = field(default=None, repr=False)
    client_options: dict[str, Any] = field(default_factory=dict, repr=False)
    settings: Settings | None = field(default=None, repr=False)  # names them in errors
    nodes: list[ClusterNode] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        size = len(self.ports)
        rf = self.replication_factor or min(size, 3)
        voters = ",".join(f"{i}@{self.host}:{c}" for i, (_, c) in enumerate(self.ports, 1))
        self.nodes = [
            ClusterNode(
                distribution=self.distribution,
                data_dir=self.data_dir / f"node-{i}",
                port=port,
                controller_port=cport,
                heap=self.heap,
                host=self.host,
                node_id=i,
                voters=voters,
                cluster_id="",
                replication_factor=rf,
                min_insync_replicas=self.min_insync_replicas or max(rf - 1, 1),
                login=self.login,
                client_options=self.client_options,
            )
            for i, (port, cport) in enumerate(self.ports, 1)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def state_file(self) -> Path:
        return self.data_dir / "cluster.json"

    def _cluster_id(self) -> str:
        """The id every node's storage is formatted with; kept so a restart reuses it."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            state = None
        if state is not None:
            if state.get("brokers") != len(self.nodes):
                raise ConfigurationError(
                    f"the cluster in {self.data_dir} was formatted with {state.get('brokers')} "
                    f"nodes; start it with --brokers {state.get('brokers')} (or "
                    f"DISPATCHWIRE_KAFKA_BROKERS), or stop it and remove {self.data_dir}"
                )
            return str(state["cluster_id"])
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = uuid.uuid4().hex[:22]
        self.state_file.write_text(
            json.dumps(
                {
                    "cluster_id": cluster_id,
                    "brokers": len(self.nodes),
                    "ports": [list(p) for p in self.ports],
                    "host": self.host,
                }
            )
        )
        return cluster_id

    def start(self, timeout: float = 120.0) -> None:
        """Start every node (together: a quorum needs a majority before anyone answers) and
        wait until the cluster's metadata names all of them."""
        self.distribution.ensure()
        cluster_id = self._cluster_id()
        for node in self.nodes:
            node.cluster_id = cluster_id
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            futures = [pool.submit(node.start, timeout) for node in self.nodes]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            self.stop()
            raise failed[0]
        while time.monotonic() < deadline:
            if self.brokers_in_metadata() == {n.node_id for n in self.nodes}:
                log.info("Kafka cluster of %d nodes is up at %s", len(self.nodes), self.bootstrap)
                return
            time.sleep(0.25)
        self.stop()
        raise BrokerStartError(
            f"the Kafka cluster at {self.bootstrap} did not list all {len(self.nodes)} brokers "
            f"in {timeout:.0f}s",
            self.nodes[0].log_tail(),
        )

    def brokers_in_metadata(self) -> set[int]:
        """The ids of the unfenced brokers the cluster describes (empty if nobody answers)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError as _KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, request_timeout_ms=3000, **self.client_options
            )
        except (_KafkaError, OSError, ValueError) as exc:
            refused = self.settings and refused_credentials(self.settings, exc)
            if refused:
                raise refused from exc
            return set()
        try:
            brokers = admin.describe_cluster()["brokers"]
            return {int(b["broker_id"]) for b in brokers if not b.get("is_fenced")}
        except (_KafkaError, OSError):
            return set()
        finally:
            admin.close()

    def running(self) -> dict[int, int]:
        """node id -> pid of every node that is alive."""
        return {n.node_id: pid for n in self.nodes if (pid := n.running_pid())}

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every node at once (one by one, the last would wait for a lost quorum);
        returns True if any was running. Leaves no process behind."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            stopped = list(pool.map(lambda n: n.stop(timeout), self.nodes))
        return any(stopped)

    def answers(self) -> bool:
        return any(port_answers(n.host, n.port) for n in self.nodes)


def _base_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def cluster_from_settings(settings: Settings, brokers: int | None = None) -> LocalCluster:
    """The cluster ``dispatchwire kafka up --brokers N`` manages for these settings.

    Without ``brokers`` the size recorded on disk (a cluster started before) wins over
    ``DISPATCHWIRE_KAFKA_BROKERS``, so ``kafka down|status`` find every node.
    """
    host, base = _base_port(settings)
    data_dir = settings.cache_dir / "cluster" / str(base)
    if brokers is None:
        try:
            brokers = int(json.loads((data_dir / "cluster.json").read_text())["brokers"])
        except (OSError, ValueError, KeyError):
            brokers = settings.kafka_brokers
    # `kafka up` checks the protocol first (scram_login refuses what a local node cannot
    # offer); `down` and `status` only need the nodes, whatever clients are configured for
    login = scram_login(settings) if settings.kafka_security_protocol == "SASL_PLAINTEXT" else None
    cluster = LocalCluster(
        distribution=KafkaDistribution(settings.kafka_version, settings.cache_dir),
        data_dir=data_dir,
        ports=[(base + 2 * i, base + 2 * i + 1) for i in range(brokers)],
        host=host,
        heap=settings.kafka_heap,
        login=login,
        client_options=broker_credentials(settings, "kafka-python") if login else {},
        settings=settings,
    )
    return cluster


def wants_cluster(settings: Settings, brokers: int | None) -> bool:
    """True when ``kafka up`` starts a ``LocalCluster``, False for the single ``LocalBroker``
    (one node, PLAINTEXT: exactly what ``kafka up`` always started)."""
    return (brokers or settings.kafka_brokers) > 1 or uses_sasl(settings)
