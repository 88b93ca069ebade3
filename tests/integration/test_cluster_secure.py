"""Cluster mode on a secured NATS (issue 22): three nats-servers with
JetStream that want TLS from clients and routes (a CA made here with the
openssl CLI, client certificates verified) and users in an account of
spate's own with only docs/nats-permissions.conf's permissions. Two nodes
join with an NKey seed file (--cluster-creds), one with a password in the
URLs; all with --cluster-tls-ca/-cert/-key. A representative part of
test_cluster.py runs there unchanged (deploys, routing, topics and
triggers across nodes, a node's restart, a server lost: reconnecting with
TLS and credentials); then what is refused: wrong
credentials, no CA or another one, malformed files, a node's user
straying from spate's subjects, another account reaching spate's."""

import json
import re
import socket
import ssl
import subprocess
import time

import pytest

from conftest import SPATED, Spated, wait_for
from natscluster import (NKEY_ACCOUNT, NKEY_OPERATOR, NKEY_USER, PERMISSIONS, free_port,
                         listed, make_jwt, make_nkey, spated_cluster)
# Run here against the secured cluster (they take the fixture below).
from test_cluster import (  # noqa: F401
    test_a_busy_node_hands_invocations_to_another, test_a_node_that_was_away_catches_up,
    test_artifacts_no_function_uses_leave_the_stream, test_configuration_changes_reach_every_node,
    test_dead_letters_and_retries_across_nodes, test_delete_reaches_every_node,
    test_deploy_on_one_node_invoke_on_another, test_nodes_see_each_other,
    test_ordered_keys_keep_their_order_across_nodes,
    test_topic_ls_rm_purge_retention_and_dlq_across_nodes,
    test_losing_one_nats_server_does_not_stop_the_cluster)  # last: server 0 restarts


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with spated_cluster(tmp_path_factory, "secured", secure=True) as c:
        yield c


def nats_ask(nats, user, password, subject, payload=b"", i=1):
    """What a server says to user's request on subject (one line of text:
    the reply's payload, or the server's -ERR), over TLS with the nodes'
    client certificate, speaking NATS's text protocol by hand."""
    sec = nats.security
    raw = socket.create_connection((nats.host, nats.client[i]), timeout=10)
    info = b""
    while not info.endswith(b"\r\n"):
        info += raw.recv(4096)
    assert info.startswith(b"INFO ") and json.loads(info[5:])["tls_required"], info
    ctx = ssl.create_default_context(cafile=str(sec.dir / "ca.pem"))
    ctx.load_cert_chain(str(sec.dir / "node.pem"), str(sec.dir / "node.key"))
    s = ctx.wrap_socket(raw, server_hostname=nats.host)
    connect = {"user": user, "pass": password, "verbose": False, "pedantic": False}
    s.sendall(f"CONNECT {json.dumps(connect)}\r\nSUB _INBOX.t 1\r\n"
              f"PUB {subject} _INBOX.t {len(payload)}\r\n".encode() + payload + b"\r\nPING\r\n")
    got = b""
    deadline = time.time() + 10
    try:
        while time.time() < deadline:
            for line in got.split(b"\r\n"):
                if line.startswith(b"-ERR"):
                    return line.decode()
            if b"MSG _INBOX.t" in got:
                head, _, rest = got.partition(b"MSG _INBOX.t")
                size = int(rest.split(b"\r\n", 1)[0].split()[-1])
                body = rest.split(b"\r\n", 1)[1] if b"\r\n" in rest else b""
                if len(body) >= size:
                    return body[:size].decode()
            try:
                chunk = s.recv(65536)
            except TimeoutError:  # no answer (yet): what came, for the caller to judge
                break
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    return got.decode(errors="replace")


def answer_json(text):
    """text as JSON, or None when it is not (no answer came)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def test_nodes_joined_without_showing_the_password(cluster):
    nats, nodes = cluster
    log = nodes[1].log()
    assert "cluster: joined nats://***@" in log, log
    assert nats.security.password not in log
    assert "without credentials" not in nodes[0].log() + log


def test_a_nodes_user_keeps_to_spates_subjects(cluster):
    nats, _ = cluster
    pw = nats.security.password
    # The registry's stream is there for spate's account...
    info = json.loads(nats_ask(nats, "node", pw, "$JS.API.STREAM.INFO.KV_spate-registry"))
    assert info["config"]["name"] == "KV_spate-registry", info
    # ...not for another account's users, who cannot write it either. (Its
    # JetStream may not answer at once on a loaded machine: asked again.)
    other = wait_for(lambda: answer_json(nats_ask(nats, "other", "other-pass",
                                                  "$JS.API.STREAM.INFO.KV_spate-registry")),
                     timeout=60, step=1)
    assert other, "another account's JetStream never answered"

    assert other["error"]["code"] == 404, other
    # Outside spate's subjects, and what the deny list keeps out.
    for subject in ("orders.new", "$JS.API.STREAM.SNAPSHOT.KV_spate-registry",
                    "$JS.API.ACCOUNT.PURGE.SPATE"):
        answer = nats_ask(nats, "node", pw, subject, b"{}")
        assert "Permissions Violation for Publish" in answer, (subject, answer)


def test_spate_needed_nothing_the_permissions_refuse(cluster):
    """Last: every scenario above ran within docs/nats-permissions.conf (a
    refusal is in the servers' logs, as the previous test's are)."""
    nats, _ = cluster
    logs = "".join((nats.tmp / f"nats{i}.log").read_text(errors="replace") for i in range(3))
    refused = [line for line in logs.splitlines()
               if "Publish Violation" in line or "Subscription Violation" in line]
    assert refused, "the previous test's refusals should be logged"
    theirs = [line for line in refused if "orders.new" not in line and
              "SNAPSHOT" not in line and "ACCOUNT.PURGE" not in line]
    assert not theirs, theirs[:10]


def test_what_nats_refuses_is_logged(cluster, tmp_path):
    nats, _ = cluster
    sec = nats.security
    args = sec.node_args(nats.urls, "password")
    # tls:// URLs work as well (TLS is required either way here).
    args[1] = args[1].replace("nats://node:", "tls://noheartbeat:")
    d = Spated(tmp_path / "refused", args=args)
    d.workdir.mkdir()
    d.start()
    try:
        assert wait_for(lambda: "NATS refused: " in d.log(), timeout=15), d.log()
        line = [x for x in d.log().splitlines() if "NATS refused: " in x][0]
        assert 'Permissions Violation for Publish to "spate.node.hb"' in line, line
        time.sleep(3)  # heartbeats go on being refused: one line says it
        assert d.log().count("NATS refused: ") == 1, d.log()
    finally:
        d.stop()


def refused_start(tmp_path, args, name):
    d = Spated(tmp_path / name, args=args)
    d.workdir.mkdir()
    with pytest.raises(RuntimeError) as e:
        d.start()
    return str(e.value)


def test_wrong_credentials_stop_a_node_at_start(cluster, tmp_path):
    nats, _ = cluster
    sec = nats.security
    args = sec.node_args(nats.urls, "password")
    args[1] = args[1].replace(sec.password, "not-the-password")
    out = refused_start(tmp_path, args, "wrongpass")
    assert "cannot connect to nats://***@" in out and "Authorization Violation" in out, out
    assert "not-the-password" not in out
    # An NKey the servers do not know.
    (tmp_path / "stranger.nk").write_text(
        "SUAGMJH5XLGZKQQWAWKRZJIGMOU4HPFUYLXJMXOO5NLFEO2OOQJ5LPRDPM\n"
        "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\n")
    args = sec.node_args(nats.urls)
    args[args.index("--cluster-creds") + 1] = str(tmp_path / "stranger.nk")
    out = refused_start(tmp_path, args, "wrongkey")
    assert "cannot connect to" in out and "Authorization Violation" in out, out
    # A creds file (user JWT and seed) is read and offered, and these
    # servers (no operator) know no such user.
    seed = (sec.dir / "node.nk").read_text().split()[0]
    (tmp_path / "user.creds").write_text(
        "-----BEGIN NATS USER JWT-----\n"
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2lnbmF0dXJl\n"
        "------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n")
    args[args.index("--cluster-creds") + 1] = str(tmp_path / "user.creds")
    out = refused_start(tmp_path, args, "jwt")
    assert "cannot connect to" in out and "Authorization Violation" in out, out
    assert seed not in out


def test_a_node_without_the_ca_stops_at_start(cluster, tmp_path):
    nats, _ = cluster
    sec = nats.security
    args = sec.node_args(nats.urls)
    # No CA, nor certificate: the servers want TLS, and nats.c trusts only
    # the system's CAs then.
    plain = args[:2] + args[args.index("--cluster-creds"):]
    out = refused_start(tmp_path, plain, "noca")
    assert "cannot connect to" in out and "unable to get local issuer certificate" in out, out
    # Another CA: the servers' certificates do not verify.
    args[args.index("--cluster-tls-ca") + 1] = str(sec.dir / "stranger-ca.pem")
    out = refused_start(tmp_path, args, "otherca")
    assert "cannot connect to" in out and "SSL handshake error" in out, out
    assert "issuer=/CN=ca" in out, out


@pytest.mark.parametrize("case", ["missing", "not-a-seed", "seed-without-public", "jwt-only",
                                  "ca-not-pem", "cert-without-key", "key-not-the-certs"])
def test_files_are_checked_at_start(cluster, tmp_path, case):
    nats, _ = cluster
    sec = nats.security
    args = sec.node_args(nats.urls)
    creds = args.index("--cluster-creds") + 1
    seed = (sec.dir / "node.nk").read_text().split()[0]
    bad = tmp_path / "bad"
    expect = {
        "missing": "cannot read --cluster-creds '%s': No such file" % bad,
        "not-a-seed": "is neither a NATS creds file",
        "seed-without-public": "holds an NKey seed but not its public key",
        "jwt-only": "holds a user JWT but not its NKey seed",
        "ca-not-pem": "--cluster-tls-ca '%s' is not a PEM certificate" % bad,
        "cert-without-key": "--cluster-tls-cert and --cluster-tls-key go together",
        "key-not-the-certs": "cannot load --cluster-tls-cert/--cluster-tls-key",
    }[case]
    if case == "not-a-seed":
        bad.write_text("user = node\n")
    if case == "seed-without-public":
        bad.write_text(seed + "\n")
    if case == "jwt-only":
        bad.write_text("-----BEGIN NATS USER JWT-----\neyJ0eXAi\n------END NATS USER JWT------\n")
    if case.startswith("ca") or case.startswith("cert") or case.startswith("key"):
        bad.write_text("not a certificate\n")
    if case in ("missing", "not-a-seed", "seed-without-public", "jwt-only"):
        args[creds] = str(bad)
    elif case == "ca-not-pem":
        args[args.index("--cluster-tls-ca") + 1] = str(bad)
    elif case == "cert-without-key":
        i = args.index("--cluster-tls-key")
        del args[i:i + 2]
    else:
        args[args.index("--cluster-tls-key") + 1] = str(sec.dir / "server.key")
    out = refused_start(tmp_path, args, case)
    assert expect in out, out
    assert seed not in out


def test_urls_credentials_are_masked_in_the_configuration_shown(tmp_path):
    r = subprocess.run([str(SPATED), "--data", str(tmp_path / "d"), "--check-config",
                        "--cluster", "nats://node:pa55word@127.0.0.1:4222,nats://t0ken@h:1"],
                       capture_output=True)
    out = r.stdout.decode()
    assert "cluster = nats://***@127.0.0.1:4222,nats://***@h:1\n" in out, out
    assert "pa55word" not in out and "t0ken" not in out


def test_check_config_checks_the_files(tmp_path):
    notpem = tmp_path / "ca.pem"
    notpem.write_text("hello\n")
    base = [str(SPATED), "--data", str(tmp_path / "d"), "--check-config"]
    r = subprocess.run(base + ["--cluster", "nats://127.0.0.1:1", "--cluster-tls-ca", str(notpem)],
                       capture_output=True)
    assert r.returncode == 2 and \
        f"--cluster-tls-ca '{notpem}' is not a PEM certificate" in r.stderr.decode(), r.stderr
    r = subprocess.run(base + ["--cluster-creds", str(notpem)], capture_output=True)
    assert r.returncode == 2 and b"are for cluster mode: give --cluster too" in r.stderr, r.stderr
    # A seed others may read is valid, and said.
    _, seed, public = make_nkey()
    nk = tmp_path / "node.nk"
    nk.write_text(f"{seed}\n{public}\n")
    nk.chmod(0o644)
    r = subprocess.run(base + ["--cluster", "nats://127.0.0.1:1", "--cluster-creds", str(nk)],
                       capture_output=True)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, out
    assert f"--cluster-creds '{nk}' may be read by others (mode 0644): chmod 600 it" in out, out
    assert seed not in out


def permissions_as_claims():
    """docs/nats-permissions.conf's allow lists, as a user JWT's pub and sub."""
    text = re.sub(r"#.*", "", PERMISSIONS.read_text())
    publish, subscribe = text.split("subscribe:")
    return ({"allow": re.findall(r'"([^"]+)"', publish)},
            {"allow": re.findall(r'"([^"]+)"', subscribe)})


def test_a_creds_file_joins_a_server_in_operator_mode(tmp_path, functions):
    """A NATS creds file (user JWT and seed, as nsc writes one) against a
    nats-server trusting an operator (JWTs made here), the user's JWT with
    docs/nats-permissions.conf's permissions."""
    op_key, _, op = make_nkey(NKEY_OPERATOR)
    _, _, system = make_nkey(NKEY_ACCOUNT)
    account_key, _, account = make_nkey(NKEY_ACCOUNT)
    _, seed, user = make_nkey(NKEY_USER)
    limits = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
              "wildcards": True, "conn": -1, "leaf": -1}
    js = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    pub, sub = permissions_as_claims()
    assert "$KV.spate-registry.>" in pub["allow"] and "_INBOX.>" in sub["allow"], (pub, sub)
    (tmp_path / "op.jwt").write_text(
        make_jwt(op_key, op, op, "op", {"type": "operator", "system_account": system}))
    sys_jwt = make_jwt(op_key, op, system, "SYS", {"type": "account", "limits": limits})
    acc_jwt = make_jwt(op_key, op, account, "SPATE",
                       {"type": "account", "limits": {**limits, **js}})
    user_jwt = make_jwt(account_key, account, user, "node",
                        {"type": "user", "pub": pub, "sub": sub, "subs": -1, "data": -1,
                         "payload": -1})
    creds = tmp_path / "node.creds"
    creds.write_text(f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n"
                     f"\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n")
    port = free_port()
    (tmp_path / "nats.conf").write_text(f"""
listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{tmp_path / 'js'}" }}
operator: "{tmp_path / 'op.jwt'}"
system_account: {system}
resolver: MEMORY
resolver_preload: {{
  {system}: "{sys_jwt}"
  {account}: "{acc_jwt}"
}}
""")
    log = tmp_path / "nats.log"
    server = subprocess.Popen(["nats-server", "-c", str(tmp_path / "nats.conf")],
                              stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    d = None
    try:
        assert wait_for(lambda: "Server is ready" in log.read_text(), timeout=15), log.read_text()
        d = Spated(tmp_path / "node", args=["--cluster", f"nats://127.0.0.1:{port}",
                                            "--cluster-creds", str(creds)])
        d.workdir.mkdir()
        d.start()
        assert d.deploy("jwt-joined", functions["hello"])[0] == 201
        assert listed(d, "jwt-joined") and d.invoke("jwt-joined", b"x")[0] == 200
        assert "without credentials" not in d.log()
        # Without the creds file the same server refuses it.
        out = refused_start(tmp_path, ["--cluster", f"nats://127.0.0.1:{port}"], "anonymous")
        assert "Authorization Violation" in out, out
    finally:
        if d:
            d.stop()
        server.terminate()
        server.wait(10)
    violations = [x for x in log.read_text().splitlines() if "Publish Violation" in x or
                  "Subscription Violation" in x]
    assert not violations, violations[:10]
