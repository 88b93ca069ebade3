"""A private rabbitmq-server node for the tests, the benchmark and the demo
(Debian's rabbitmq-server), and amqp_tool.c (a tiny librabbitmq client) to
declare queues and publish into them: Python has no AMQP library here.

The node runs as root from /usr/lib/rabbitmq/bin (the /usr/sbin wrapper
would switch to the rabbitmq user), with its own epmd, ports, data, logs,
Erlang cookie (HOME) and configuration under one directory, and no
plugins. It starts in about ten seconds; start() and stop() keep its data
(a restart), close() also stops its epmd: nothing is left running.
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = shutil.which("epmd")
HERE = pathlib.Path(__file__).resolve().parent


def available():
    return os.path.exists(SERVER) and EPMD is not None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_tool(out):
    """Compiles amqp_tool.c into out (a path); returns it."""
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "librabbitmq"], check=True,
                           capture_output=True, text=True).stdout.split()
    subprocess.run(["cc", "-O2", "-o", str(out), str(HERE / "amqp_tool.c"), *flags], check=True)
    return out


class Rabbit:
    def __init__(self, workdir, tool, user="spate", password="spate", extra_conf=""):
        """extra_conf: more rabbitmq.conf lines (a TLS listener)."""
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tool = tool
        self.user, self.password = user, password
        self.port = free_port()
        self.node = f"spate-test-{self.port}@localhost"
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"default_user = {user}\n"
            f"default_pass = {password}\n"
            # A shared test machine's disk must not raise the alarm that
            # blocks publishers.
            "disk_free_limit.absolute = 1MB\n" + extra_conf)
        (self.dir / "enabled_plugins").write_text("[].\n")
        epmd_port = free_port()
        self.env = dict(os.environ, HOME=str(self.dir), ERL_EPMD_PORT=str(epmd_port),
                        RABBITMQ_NODENAME=self.node, RABBITMQ_NODE_PORT=str(self.port),
                        RABBITMQ_DIST_PORT=str(free_port()),
                        RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
                        RABBITMQ_LOG_BASE=str(self.dir / "log"),
                        RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
                        RABBITMQ_PLUGINS_EXPAND_DIR=str(self.dir / "plugins-expand"))
        # Its own epmd (Erlang's name server) in the foreground: the node
        # would otherwise start a shared one that outlives it.
        self.epmd = subprocess.Popen([EPMD, "-port", str(epmd_port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.proc = None

    def start(self, timeout=90):
        self.proc = subprocess.Popen([SERVER], env=self.env, cwd=self.dir,
                                     stdout=open(self.dir / "server.log", "ab"),
                                     stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            if self.run("declare", "probe").returncode == 0:
                return self
            time.sleep(0.5)
        raise RuntimeError("rabbitmq-server did not start:\n" +
                           (self.dir / "server.log").read_text()[-3000:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def close(self):
        self.stop()
        self.epmd.terminate()
        self.epmd.wait(10)

    def run(self, *args, input=None):
        env = dict(os.environ, AMQP_USER=self.user, AMQP_PASS=self.password)
        return subprocess.run([str(self.tool), str(self.port), *args], capture_output=True,
                              text=True, env=env, input=input, timeout=600)

    def declare(self, queue):
        r = self.run("declare", queue)
        assert r.returncode == 0, r.stderr

    def publish(self, queue, start, n, *opts, input=None):
        """Persistent messages PREFIX<start>... (see amqp_tool.c), confirmed."""
        r = self.run("publish", queue, "--start", str(start), "--count", str(n), "--persistent",
                     *opts, input=input)
        assert r.returncode == 0, r.stderr

    def count(self, queue):
        """(ready messages, consumers) of queue."""
        r = self.run("count", queue)
        assert r.returncode == 0, r.stderr
        ready, consumers = r.stdout.split()
        return int(ready), int(consumers)
