"""A real Apache Kafka broker (KRaft, single node) on loopback.

``KafkaDistribution`` fetches the official server artifacts (``org.apache.kafka:kafka_2.13``
and its runtime dependencies) from Maven Central with the machine's Maven into a cache
outside git, and reuses them when present. Where Maven is missing it falls back to the
official binary tarball. ``LocalBroker`` formats KRaft storage, starts ``kafka.Kafka`` as
broker+controller with a small heap, waits until it answers, and stops it leaving no
process behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatchwire.errors import BrokerStartError, KafkaDistributionError
from dispatchwire.settings import Settings

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("kafka") / "pom.xml"
TARBALL_URLS = (
    "https://downloads.apache.org/kafka/{v}/kafka_2.13-{v}.tgz",
    "https://archive.apache.org/dist/kafka/{v}/kafka_2.13-{v}.tgz",
)
INSTALL_HINT = (
    "Install Java 17+ and Maven (Debian: `apt-get install openjdk-17-jre-headless maven`) "
    "and run `dispatchwire kafka up` again."
)


@dataclass(frozen=True)
class KafkaDistribution:
    """The Kafka server jars for one version, cached under ``cache_dir``."""

    version: str
    cache_dir: Path

    @property
    def home(self) -> Path:
        return self.cache_dir / f"kafka-{self.version}"

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def _stamp(self) -> Path:
        return self.home / ".complete"

    def is_present(self) -> bool:
        return self._stamp.exists() and (self.libs / f"kafka_2.13-{self.version}.jar").exists()

    def ensure(self) -> Path:
        """Return the libs folder, fetching the artifacts first if they are not cached."""
        if self.is_present():
            return self.libs
        if shutil.which("java") is None:
            raise KafkaDistributionError(f"`java` is not on PATH. {INSTALL_HINT}")
        self.home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=self.home))
        try:
            if shutil.which("mvn"):
                self._fetch_with_maven(staging)
            else:
                log.warning("Maven is not installed; trying the official Kafka tarball")
                self._fetch_tarball(staging)
            if self.libs.exists():
                shutil.rmtree(self.libs)
            staging.rename(self.libs)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        self._stamp.write_text(self.version + "\n")
        return self.libs

    def _fetch_with_maven(self, dest: Path) -> None:
        log.info("fetching Kafka %s server artifacts with Maven into %s", self.version, dest)
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-Dkafka.version={self.version}",
            f"-DoutputDirectory={dest}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not (dest / f"kafka_2.13-{self.version}.jar").exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise KafkaDistributionError(
                f"Maven could not fetch org.apache.kafka:kafka_2.13:{self.version}:\n{tail}\n"
                "Check that Maven Central is reachable, or set DISPATCHWIRE_KAFKA_VERSION."
            )

    def _fetch_tarball(self, dest: Path) -> None:
        errors = []
        for template in TARBALL_URLS:
            url = template.format(v=self.version)
            try:
                with tempfile.TemporaryFile() as tmp:
                    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - fixed https URL
                        shutil.copyfileobj(resp, tmp)
                    tmp.seek(0)
                    with tarfile.open(fileobj=tmp, mode="r:gz") as tar:
                        for member in tar.getmembers():
                            if "/libs/" in member.name and member.name.endswith(".jar"):
                                member.name = Path(member.name).name
                                tar.extract(member, dest, filter="data")
                return
            except OSError as exc:
                errors.append(f"{url}: {exc}")
        raise KafkaDistributionError(
            "Could not download the Kafka tarball (" + "; ".join(errors) + "). " + INSTALL_HINT
        )


BROKER_HEARTBEAT_MS = 500
BROKER_SESSION_TIMEOUT_MS = 3_000


# Ports this process was given. Nothing holds a port between free_port() and its use, so
# the OS may offer the same one to the next call: a broker got its own port as its
# controller port that way ("two listeners on the same port"), once in a `make test`.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now, and never one this process was given before."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class LocalBroker:
    """A single-node KRaft broker+controller on 127.0.0.1, with its data under ``data_dir``."""

    distribution: KafkaDistribution
    data_dir: Path
    port: int = 9092
    controller_port: int | None = None
    heap: str = "512m"
    host: str = "127.0.0.1"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    def _controller_port(self) -> int:
        return self.controller_port or self.port + 1

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        cport = self._controller_port()
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{self.host}:{cport}",
                    f"listeners=PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{cport}",
                    f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data_dir / 'kraft'}",
                    "num.partitions=4",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "group.initial.rebalance.delay.ms=0",
                    # After an unclean stop (SIGKILL) the controller refuses the restarted
                    # broker's registration (DUPLICATE_BROKER_REGISTRATION) until the old
                    # incarnation's session expires: 9 s by default, most of the 15 s
                    # `dispatchwire kafka up` took after a SIGKILL. One node heartbeating its
                    # own controller over loopback needs far less slack.
                    f"broker.heartbeat.interval.ms={BROKER_HEARTBEAT_MS}",
                    f"broker.session.timeout.ms={BROKER_SESSION_TIMEOUT_MS}",
                    "auto.create.topics.enable=true",
                    "delete.topic.enable=true",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        (self.data_dir / "log4j2.yaml").write_text(
            "Configuration:\n"
            "  Appenders:\n"
            "    File:\n"
            "      name: F\n"
            f"      fileName: {self.log_file}\n"
            '      PatternLayout: {pattern: "[%d] %p %m (%c)%n"}\n'
            "  Loggers:\n"
            "    Logger:\n"
            "      - {name: kafka.log.LogCleaner, level: WARN}\n"
            "      - {name: org.apache.kafka.storage, level: WARN}\n"
            "    Root: {level: INFO, AppenderRef: [{ref: F}]}\n"
        )
        return props

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        cmd = ["java"]
        if heap:
            cmd += [f"-Xmx{heap}", f"-Xms{min_heap(heap)}", "-XX:+UseG1GC"]
        cmd += [
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.yaml'}",
            "-Djava.awt.headless=true",
            "-cp",
            f"{self.distribution.libs}/*",
            main,
            *args,
        ]
        return cmd

    def _format(self, props: Path) -> None:
        if (self.data_dir / "kraft" / "meta.properties").exists():
            return
        cluster_id = uuid.uuid4().hex[:22]
        proc = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BrokerStartError("formatting KRaft storage failed", proc.stdout + proc.stderr)

    def running_pid(self) -> int | None:
        """The pid of this data dir's broker if it is alive (checked against /proc)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"kafka.Kafka" in cmdline else None

    def start(self, timeout: float = 90.0) -> None:
        """Start the broker (if not already running) and wait until it answers."""
        if self.running_pid() and port_answers(self.host, self.port):
            log.info("Kafka already running at %s", self.bootstrap)
            return
        if port_answers(self.host, self.port):
            raise BrokerStartError(
                f"{self.bootstrap} is taken by another process; stop it or set "
                "DISPATCHWIRE_KAFKA_BOOTSTRAP to use that broker instead"
            )
        self.distribution.ensure()
        props = self._write_config()
        self._format(props)
        stdout = open(self.data_dir / "logs" / "stdout.log", "ab")  # noqa: SIM115 - handed to the child
        self._proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props), heap=self.heap),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        stdout.close()
        self.pid_file.write_text(str(self._proc.pid))
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerStartError(
                    f"Kafka exited with code {self._proc.returncode} while starting",
                    self.log_tail(),
                )
            if port_answers(self.host, self.port) and self._metadata_answers():
                log.info("Kafka %s is up at %s", self.distribution.version, self.bootstrap)
                return
            time.sleep(0.25)
        self.stop()
        raise BrokerStartError(
            f"Kafka did not answer at {self.bootstrap} in {timeout:.0f}s", self.log_tail()
        )

    def _probe_options(self) -> dict[str, Any]:
        """What the readiness probe's admin client logs in with (a node of a cluster that
        takes logins only needs its credentials)."""
        return {}

    def _metadata_answers(self) -> bool:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError as _KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, request_timeout_ms=3000, **self._probe_options()
            )
        except (_KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (_KafkaError, OSError):
            return False
        finally:
            admin.close()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker; returns True if one was running. Leaves no process behind."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            if self._proc is not None:
                self._proc.poll()
            time.sleep(0.1)
        if _alive(pid):
            log.warning("Kafka did not stop in %.0fs; killing it", timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=10)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 40) -> str:
        chunks = []
        for path in (self.data_dir / "logs" / "stdout.log", self.log_file):
            try:
                chunks.extend(path.read_text(errors="replace").splitlines()[-lines:])
            except OSError:
                continue
        return "\n".join(chunks[-lines:])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def min_heap(heap: str) -> str:
    """Half the max heap for -Xms, keeping the unit (``512m`` -> ``256m``)."""
    unit = heap[-1] if heap[-1].isalpha() else ""
    number = int(heap[:-1] if unit else heap)
    return f"{max(number // 2, 1)}{unit}"


@contextlib.contextmanager
def scratch_broker(prefix: str, heap: str = "768m") -> Iterator[LocalBroker]:
    """A fresh, started single-node broker on free ports in a temporary data directory
    (benches and tests that must not touch a shared broker); stopped and removed after."""
    base = Settings()
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    broker = LocalBroker(
        distribution=KafkaDistribution(base.kafka_version, base.cache_dir),
        data_dir=data_dir,
        port=free_port(),
        controller_port=free_port(),
        heap=heap,
    )
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def broker_from_settings(settings: Settings) -> LocalBroker:
    """The broker that ``dispatchwire kafka up`` manages for these settings."""
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    return LocalBroker(
        distribution=KafkaDistribution(settings.kafka_version, settings.cache_dir),
        data_dir=settings.cache_dir / "broker" / port,
        port=int(port),
        host=host or "127.0.0.1",
        heap=settings.kafka_heap,
    )
