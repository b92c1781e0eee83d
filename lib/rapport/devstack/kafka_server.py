"""Apache Kafka 4.0 in KRaft mode: one combined broker and controller on 127.0.0.1."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from rapport.devstack.errors import NotReady, StackError
from rapport.devstack.server import Server, quiet_loggers
from rapport.devstack.settings import LOCAL_HOST

_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="server" fileName="{logs}/server.log" filePattern="{logs}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="50MB"/>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
  </Loggers>
</Configuration>
"""


def new_cluster_id() -> str:
    """Same shape as `kafka-storage random-uuid` (16 random bytes, URL-safe base64) without starting a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids these too: they read as an option on a command line
            return text


class KafkaServer(Server):
    name = "kafka"
    main_class = "kafka.Kafka"
    env_var = "RAPPORT_KAFKA_BOOTSTRAP"
    port_var = "RAPPORT_KAFKA_PORT"

    @property
    def state(self) -> Path:
        return self.settings.kafka_state

    @property
    def external(self) -> bool:
        return self.settings.kafka_external

    @property
    def address(self) -> str:
        return self.settings.kafka_bootstrap

    @property
    def endpoint(self) -> tuple[str, int]:
        first = self.address.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        try:
            return host.strip("[]") or LOCAL_HOST, int(port)
        except ValueError:
            raise StackError(f"RAPPORT_KAFKA_BOOTSTRAP={self.address!r} is not host:port[,host:port...]") from None

    @property
    def local_ports(self) -> list[int]:
        return [self.settings.kafka_port, self.settings.kafka_controller_port]

    @property
    def config_file(self) -> Path:
        return self.state / "server.properties"

    @property
    def marker_arg(self) -> str:
        return str(self.config_file)

    def state_from_arg(self, arg: str) -> Path | None:
        path = Path(arg)
        if path.name == "server.properties" and path.parent.name == self.name:
            return path.parent.parent
        return None

    @property
    def data_dir(self) -> Path:
        return self.state / "data"

    def server_properties(self) -> str:
        s = self.settings
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # A static voter set (not --standalone) keeps the controller port changeable after formatting.
            "controller.quorum.voters": f"1@{LOCAL_HOST}:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://{LOCAL_HOST}:{s.kafka_port},CONTROLLER://{LOCAL_HOST}:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOCAL_HOST}:{s.kafka_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            # Fewer internal partitions than the default 50: a quicker first group join on a small machine.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # A restarted combined node cannot re-register until its previous session expires (default 9 s),
            # so a shorter session makes `up` after `down` quicker; loopback heartbeats every second are cheap.
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "5000",
            # Handy for ad-hoc producers; the services still create their topics explicitly.
            "auto.create.topics.enable": "true",
            "log.retention.hours": "168",
        }
        lines = ["# Written by `python -m rapport.devstack up` on every start; edits here are overwritten."]
        lines += [f"{k}={v}" for k, v in props.items()]
        return "\n".join(lines) + "\n"

    def prepare(self, jars: Path) -> None:
        logs = self.state / "logs"
        for folder in (self.state, self.data_dir, logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.server_properties())
        (self.state / "log4j2.xml").write_text(_LOG4J2_XML.format(logs=logs))
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id = new_cluster_id()
        (self.state / "cluster.id").write_text(cluster_id + "\n")
        cmd = [
            self.settings.java, "-cp", str(jars / "*"),
            "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_file), "--ignore-formatted",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise StackError(f"kafka storage format failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")

    def _log_opts(self) -> list[str]:
        return [f"-Dlog4j2.configurationFile={self.state / 'log4j2.xml'}", f"-Dkafka.logs.dir={self.state / 'logs'}"]

    def command(self, jars: Path) -> list[str]:
        return [
            self.settings.java,
            "-Xms128m",
            f"-Xmx{self.settings.kafka_heap}",
            # The GC flags Kafka's own kafka-run-class.sh passes.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            *self._log_opts(),
            "-cp",
            str(jars / "*"),
            self.main_class,
            str(self.config_file),
        ]

    def probe(self) -> str:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaConfigurationError, KafkaError

        with quiet_loggers("kafka"):
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=[b.strip() for b in self.address.split(",")],
                    client_id="rapport-devstack",
                    request_timeout_ms=5000,
                    bootstrap_timeout_ms=5000,
                )
            except KafkaConfigurationError as exc:  # our bug or a bad address: retrying cannot help
                raise StackError(f"kafka client configuration: {exc}") from exc
            except (KafkaError, OSError) as exc:
                raise NotReady(f"{type(exc).__name__}: {exc}") from exc
            try:
                cluster = admin.describe_cluster()
            except (KafkaError, OSError) as exc:
                raise NotReady(f"{type(exc).__name__}: {exc}") from exc
            finally:
                admin.close()
        brokers = [b for b in cluster.get("brokers", []) if not b.get("is_fenced")]
        if not brokers:
            raise NotReady("no active broker in the cluster metadata yet")
        return f"cluster {cluster.get('cluster_id')}, {len(brokers)} broker(s)"

    def log_files(self) -> list[Path]:
        # console.log first: it is empty unless the JVM itself failed (bad flag, no memory, crash).
        return [self.console_log, self.state / "logs" / "server.log"]
