"""The cluster's nemesis (tests/integration/cluster_nemesis.py, issue 21
item 3) for about 10 faults: kill -9 and SIGSTOP of spated nodes and of
nats-servers (one at a time) and a network partition of one node hit a
cluster of three spated nodes and three nats-servers (JetStream, R3) while
keyed publishes to an ordered trigger, ndjson batches, direct invokes and
SQS senders and receivers are spread over the nodes; then nothing
acknowledged may be lost, every duplicate must have a fault that can lose a
settlement between its runs, an ordered key never runs two at once or out
of order (but for such replays), dead letters are exactly the deliberate
failures. bench/cluster-nemesis runs it longer."""

import os
import random
import shutil

import pytest

import cluster_nemesis


# Not on the AddressSanitizer build: there (session 41) its 10 faults took 18
# minutes, and the cluster did not drain within 9 minutes after them; the
# one-node nemesis runs on the ASan build.
@pytest.mark.normal_build
def test_cluster_nemesis_loses_nothing_acknowledged(tmp_path, functions):
    if not shutil.which("nats-server"):
        pytest.fail("nats-server is not installed (scripts/install-deps.sh installs it)")
    seed = int(os.environ.get("SPATE_NEMESIS_SEED", random.randrange(1 << 30)))
    # Not the partitions of a nats-server from the others (partition,
    # nats_partition): nats-server 2.9.10 forgets deliveries through them
    # (an ordered one is found and run again by its part's mark since
    # session 46; a plain trigger's is not checked), and after their heal a
    # loaded machine ran 316 batch messages twice beyond the checker's
    # window (session 46): bench/cluster-nemesis runs them. The node's
    # partition stays.
    kinds = [k for k in cluster_nemesis.KINDS if k not in ("partition", "nats_partition")]
    fig, problems, text = cluster_nemesis.run(tmp_path, functions, seed, faults=10,
                                              kinds=kinds)
    print(text)
    known = [p for p in problems if any(p.startswith(w) and phrase in p for w, phrase in KNOWN)]
    others = [p for p in problems if p not in known]
    assert not others, f"seed {seed} (SPATE_NEMESIS_SEED={seed} repeats the faults):\n{text}"
    assert fig["ord"]["acked"] and fig["bat"]["acked"] and fig["inv"]["acked"], text
    assert fig["sqs"]["acked"] and fig["ordered"]["keys"] == cluster_nemesis.nemesis.ORD_KEYS, text
    assert sum(fig["faults"].values()) == 10, text
    if known:
        pytest.xfail(f"seed {seed}, known findings (issue 21): " + " | ".join(p[:200] for p in known))


# Known (issue 21; bench/README.md "Cluster nemesis"), found by the
# campaigns and not mended yet: everything else must hold. Mended and no
# longer excused: acknowledged messages lost (the stream trim was a purge,
# session 42), batches dead-lettered without having run (instances' deadlines
# seen late after a stall, waits that cost an attempt; test_ready_after_a_
# stall.py), and runs repeated with no fault to explain them (the attempts
# bucket read from a replica behind, failure records and dead letters
# dropped when JetStream had no leader, acks lost with a consumer leader;
# test_cluster.py's test_failed_attempts_count_while_the_attempts_bucket_
# changes_leader and test_an_ack_the_consumer_leader_misses_is_sent_again):
# a 720 s campaign of session 43 had none of them in 166 faults. And two runs
# of one ordered key at once (session 44: a node cut off past the AckWait ran
# the deliveries TCP brought after the heal, while the key's later messages
# ran elsewhere; test_cluster.py's test_an_ordered_delivery_held_past_its_
# ack_wait_is_not_run).
KNOWN = (
    # ApproximateReceiveCount repeated ([1, 1]) for a message received twice
    # with no fault between (2 in the 720 s campaign of session 43, 6 in a
    # 300 s one; 50-80 a campaign before its records were read from the
    # bucket's leader and retried; 22 in a 720 s campaign of session 45 with
    # partitions of a nats-server): not explained yet.
    ("sqs: ", "ApproximateReceiveCount not growing"),
    # One failing batch message run twice as attempt 2, 0.3 s apart, with no
    # fault between (make check in session 44, seed 499993639; the seed run
    # again did not show it): not explained yet. xfail, not pass: it shows.
    ("bat: ", "duplicates with no fault that explains them"),
)
