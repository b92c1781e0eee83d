"""Neo4j Community 5.26 LTS as a full server (CommunityEntryPoint) with Bolt on 127.0.0.1."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from rapport.devstack.errors import NotReady, StackError
from rapport.devstack.server import Server, quiet_loggers
from rapport.devstack.settings import LOCAL_HOST

# What Neo4j 5.26's own launcher passes (server.jvm.additional in its default neo4j.conf), minus
# -XX:+AlwaysPreTouch, which would make the whole heap resident on a shared developer machine.
NEO4J_JVM_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.tls.ephemeralDHKeySize=2048",
    "-Djdk.tls.rejectClientInitiatedRenegotiation=true",
    "-XX:FlightRecorderOptions=stackdepth=256",
    "-XX:+UnlockDiagnosticVMOptions",
    "-XX:+DebugNonSafepoints",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
    "-Dlog4j2.disable.jmx=true",
    "-Dlog4j.layout.jsonTemplate.maxStringLength=32768",
    "-Dfile.encoding=UTF-8",
]


class Neo4jServer(Server):
    name = "neo4j"
    main_class = "org.neo4j.server.CommunityEntryPoint"
    env_var = "RAPPORT_NEO4J_URI"
    port_var = "RAPPORT_NEO4J_BOLT_PORT"

    @property
    def state(self) -> Path:
        return self.settings.neo4j_state

    @property
    def external(self) -> bool:
        return self.settings.neo4j_external

    @property
    def address(self) -> str:
        return self.settings.neo4j_uri

    @property
    def endpoint(self) -> tuple[str, int]:
        parts = urlsplit(self.address)
        try:
            port = parts.port or 7687
        except ValueError:
            raise StackError(f"RAPPORT_NEO4J_URI={self.address!r} has a bad port") from None
        if not parts.hostname:
            raise StackError(f"RAPPORT_NEO4J_URI={self.address!r} is not like bolt://host:port")
        return parts.hostname, port

    @property
    def local_ports(self) -> list[int]:
        return [self.settings.neo4j_bolt_port]

    @property
    def conf_dir(self) -> Path:
        return self.state / "conf"

    @property
    def marker_arg(self) -> str:
        return f"--config-dir={self.conf_dir}"

    def state_from_arg(self, arg: str) -> Path | None:
        prefix = "--config-dir="
        if not arg.startswith(prefix):
            return None
        conf = Path(arg[len(prefix) :])
        return conf.parent.parent if conf.name == "conf" and conf.parent.name == self.name else None

    def neo4j_conf(self) -> str:
        s = self.settings
        st = self.state
        props = {
            "server.directories.data": st / "data",
            "server.directories.logs": st / "logs",
            "server.directories.run": st / "run",
            "server.directories.plugins": st / "plugins",
            "server.directories.import": st / "import",
            "server.default_listen_address": LOCAL_HOST,
            "server.default_advertised_address": LOCAL_HOST,
            "server.bolt.enabled": "true",
            "server.bolt.listen_address": f"{LOCAL_HOST}:{s.neo4j_bolt_port}",
            "server.bolt.advertised_address": f"{LOCAL_HOST}:{s.neo4j_bolt_port}",
            # Nothing in Rapport speaks HTTP to Neo4j, and the Browser app is not in the jar set.
            "server.http.enabled": "false",
            "server.https.enabled": "false",
            "dbms.security.auth_enabled": "true",
            "dbms.usage_report.enabled": "false",
            # Kept in step with the -Xms/-Xmx we pass, so Neo4j's memory checks see the same numbers.
            "server.memory.heap.initial_size": "256m",
            "server.memory.heap.max_size": s.neo4j_heap,
            "server.memory.pagecache.size": s.neo4j_pagecache,
            # Neo4j's default is no timeout; a stuck test transaction should fail, not hold locks forever.
            "db.transaction.timeout": s.neo4j_tx_timeout,
            "db.lock.acquisition.timeout": "30s",
            # Only slow queries, so a test run does not write every statement to query.log.
            "db.logs.query.enabled": "INFO",
            "db.logs.query.threshold": "1s",
            # Netty's shutdown quiet period (5 s per Bolt connector by default) made every `down` take ~12 s.
            "internal.dbms.bolt.netty_server_shutdown_quiet_period": "0",
            "internal.dbms.bolt.netty_server_shutdown_timeout": "5",
        }
        lines = ["# Written by `python -m rapport.devstack up` on every start; edits here are overwritten."]
        lines += [f"{k}={v}" for k, v in props.items()]
        return "\n".join(lines) + "\n"

    def prepare(self, jars: Path) -> None:
        for sub in ("home", "conf", "data", "logs", "run", "plugins", "import"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "neo4j.conf").write_text(self.neo4j_conf())
        if (self.state / "data" / "databases" / "system").exists():
            return
        # Only counts before the very first start: it seeds the system database's neo4j user.
        cmd = [
            self.settings.java, "-Xmx256m", "-cp", str(jars / "*"),
            "org.neo4j.cli.AdminTool", "dbms", "set-initial-password", self.settings.neo4j_password,
        ]  # fmt: skip
        result = subprocess.run(
            cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, env=self.child_env()
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).replace(self.settings.neo4j_password, "***")
            raise StackError(f"neo4j set-initial-password failed (exit {result.returncode}):\n{output}")

    def child_env(self) -> dict[str, str]:
        env = super().child_env()
        env["NEO4J_HOME"] = str(self.state / "home")
        env["NEO4J_CONF"] = str(self.conf_dir)
        return env

    def command(self, jars: Path) -> list[str]:
        return [
            self.settings.java,
            "-Xms256m",
            f"-Xmx{self.settings.neo4j_heap}",
            *NEO4J_JVM_FLAGS,
            "-cp",
            str(jars / "*"),
            self.main_class,
            f"--home-dir={self.state / 'home'}",
            self.marker_arg,
        ]

    def probe(self) -> str:
        from neo4j import GraphDatabase
        from neo4j.exceptions import AuthError, DriverError, Neo4jError

        s = self.settings
        with quiet_loggers("neo4j"):
            try:
                with (
                    GraphDatabase.driver(
                        s.neo4j_uri, auth=(s.neo4j_user, s.neo4j_password), connection_timeout=5.0
                    ) as driver,
                    driver.session() as session,
                ):
                    result = session.run("RETURN 1 AS ok")
                    record = result.single(strict=True)
                    summary = result.consume()
            except AuthError as exc:
                hint = (
                    "this state folder was first started with another RAPPORT_NEO4J_PASSWORD; "
                    "use that one, or `python -m rapport.devstack clean` to start afresh"
                    if not self.external
                    else "check RAPPORT_NEO4J_USER and RAPPORT_NEO4J_PASSWORD"
                )
                raise StackError(
                    f"neo4j at {s.neo4j_uri} rejected user {s.neo4j_user!r}: {exc.message}; {hint}"
                ) from exc
            except (Neo4jError, DriverError, OSError) as exc:
                raise NotReady(f"{type(exc).__name__}: {exc}") from exc
        if record["ok"] != 1:
            raise NotReady("RETURN 1 gave an unexpected answer")
        return f"{summary.server.agent}, Bolt {'.'.join(map(str, summary.server.protocol_version))}"

    def log_files(self) -> list[Path]:
        # console.log first: it is empty unless the JVM itself failed (bad flag, no memory, crash).
        return [self.console_log, self.state / "logs" / "neo4j.log"]
