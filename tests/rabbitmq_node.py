"""A private RabbitMQ node for tests and benchmarks that stop, restart or break the broker.

The RabbitMQ on 127.0.0.1:5672 is shared with everything else on the machine (a running
`make run`, other test runs), so a test must never stop it. This starts a node of its own
from Debian's `rabbitmq-server`, with its own name, ports, data and log directory (a
temporary directory removed by `cleanup()`), no plugins, and its own Erlang cookie:

    with RabbitMQNode() as node:          # starts it (about 5 s), removes it at the end
        node.url                          # amqp://guest:guest@127.0.0.1:<port>/
        node.stop_app(); node.start_app() # broker outage: the Erlang VM stays up
        node.restart()                    # the whole node process stops and starts again
        node.ctl("list_queues")           # any rabbitmqctl command against this node
        RabbitMQNode.attach(node.describe())  # in another process: its URLs and ctl, not its life cycle

It needs no root and no system configuration: `/etc/rabbitmq` is bypassed
(RABBITMQ_CONF_ENV_FILE and RABBITMQ_CONFIG_FILE point into the node's directory), and
the node registers with the machine's epmd like any other node. Several nodes given the
same `cookie` can be clustered (`node.ctl("join_cluster", other.name)` between
`stop_app` and `start_app`).

No Django here: benchmarks and scripts import it too.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests import processes

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


class RabbitMQNodeError(RuntimeError):
    pass


def available() -> str | None:
    """None when a private node can be started here, else why not."""
    for path in (SERVER, CTL):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (install Debian's rabbitmq-server)"
    return None


def free_port(low: int = 20000, high: int = 32700) -> int:
    """A TCP port free on 127.0.0.1 now, below Linux's ephemeral range (32768-60999).

    A port is chosen now and bound later (a node, a gunicorn after its set-up); a port of the
    ephemeral range may meanwhile become the local port of some outgoing connection, and the
    bind fails with "Address already in use" (seen in the smoke run, which starts every
    benchmark at once). The CLI tools use dist port + 10000, which stays below 65535."""
    for _ in range(200):
        port = secrets.randbelow(high - low) + low
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RabbitMQNodeError("no free TCP port found")


class RabbitMQNode:
    def __init__(self, name: str | None = None, *, cookie: str | None = None, base_dir: Path | None = None):
        self.short_name = name or f"fitness-test-{secrets.token_hex(4)}"
        self.name = f"{self.short_name}@localhost"
        self.cookie = cookie or secrets.token_hex(16).upper()
        self._own_dir = base_dir is None
        self.dir = Path(base_dir or tempfile.mkdtemp(prefix=f"{self.short_name}-"))
        self.port = free_port()
        self.dist_port = free_port()
        self.process: subprocess.Popen | None = None

    def describe(self) -> str:
        """What another process needs to `attach` to this running node (JSON)."""
        return json.dumps({"name": self.short_name, "cookie": self.cookie, "dir": str(self.dir), "port": self.port,
                           "dist_port": self.dist_port})

    @classmethod
    def attach(cls, description: str) -> RabbitMQNode:
        """The node another process started and described: its URLs and `ctl`, never its life cycle."""
        info = json.loads(description)
        node = cls(info["name"], cookie=info["cookie"], base_dir=Path(info["dir"]))
        node.port, node.dist_port = info["port"], info["dist_port"]
        return node

    # --- addresses ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The AMQP URL of the default vhost `/`."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def vhost_url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    # --- life cycle ---------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        home = self.dir / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(home),  # where the Erlang cookie is, for the server and the CLI alike
            RABBITMQ_CONF_ENV_FILE=str(self.dir / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _write_config(self) -> None:
        home = self.dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            # a test node on a busy machine: do not block publishers over a full-ish disk
            "disk_free_limit.absolute = 50MB\n"
        )

    def start(self, timeout: float = 90.0) -> RabbitMQNode:
        """Start the node process and wait until it accepts AMQP connections."""
        reason = available()
        if reason:
            raise RabbitMQNodeError(reason)
        self._write_config()
        log = open(self.dir / "server.out", "ab")
        # a process group of its own (the script, beam.smp and its helpers), killed at exit at the latest
        self.process = processes.spawn([SERVER], env=self._env(), cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            self._await_startup(timeout)
        except BaseException:
            processes.kill(self.process)
            raise
        return self

    def _await_startup(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RabbitMQNodeError(
                    f"RabbitMQ node {self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            result = self._run_ctl(["await_startup", "--timeout", "5"], timeout=30, check=False)
            if result.returncode == 0 and self.accepts_connections():
                return
            if time.monotonic() > deadline:
                raise RabbitMQNodeError(
                    f"RabbitMQ node {self.name} not up after {timeout:.0f} s: {result.stderr.strip()[-500:]}\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.5)

    def accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop_app(self) -> None:
        """Stop RabbitMQ inside the node (connections drop, nothing is accepted)."""
        self.ctl("stop_app")

    def start_app(self, timeout: float = 90.0) -> None:
        self.ctl("start_app", timeout=timeout)
        self._await_startup(timeout)

    def restart(self, timeout: float = 90.0) -> None:
        """Stop the node process completely and start it again on the same data."""
        self.stop()
        self.start(timeout=timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node process (its data stays until `cleanup`)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self._run_ctl(["stop"], timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        processes.kill(self.process)  # whatever of its group is left (or all of it, after `timeout`)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RabbitMQNode:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.cleanup()

    # --- commands -----------------------------------------------------------------------
    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run `rabbitmqctl -n <this node> args...`; raise with its output on failure."""
        return self._run_ctl(list(args), timeout=timeout, check=True).stdout

    def _run_ctl(self, args: list[str], *, timeout: float, check: bool) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [CTL, "-n", self.name, *args], env=self._env(), cwd=self.dir, capture_output=True, text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RabbitMQNodeError(
                f"rabbitmqctl -n {self.name} {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}"
            )
        return result

    def messages_in(self, queue: str, vhost: str = "/") -> int:
        """Every message a queue holds: ready ones and those delivered to a consumer but not acked.

        A passive declare counts only the ready ones, so a copy sitting in a worker's prefetch
        buffer looks like an empty queue there; this asks the node itself.
        """
        out = self.ctl("list_queues", "-p", vhost, "--no-table-headers", "--quiet", "name", "messages")
        for line in out.splitlines():
            name, _, count = line.rpartition("\t")
            if name == queue:
                return int(count)
        raise RabbitMQNodeError(f"no queue {queue!r} in vhost {vhost!r} on {self.name}")

    def add_vhost(self, vhost: str) -> str:
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return self.vhost_url(vhost)

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.dir / "server.out", self.dir / "log" / f"{self.name}.log"):
            if path.exists():
                parts.append(f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)
