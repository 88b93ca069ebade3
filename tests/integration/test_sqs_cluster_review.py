"""An adversarial pass over SQS in cluster mode (issue 18): triggers (event
source mappings) whose batch gathers or runs longer than the queue's
visibility timeout. Each test failed before its fix."""

import time

import pytest

from conftest import wait_for
from natscluster import add_trigger, listed, record_dir, spated_cluster
from test_batches import deploy_batcher, events, records_of
from test_sqs import create, ok
from test_sqs_cluster import receive, receive_all, url_on


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with spated_cluster(tmp_path_factory, name="sqsrev", n=2) as c:
        yield c


def test_a_mapping_longer_than_the_visibility_timeout_runs_each_message_once(cluster, tmp_path):
    """The receiver's AckWait is the queue's VisibilityTimeout and 5 s. A
    function that ran longer, or a batch that gathered longer (its window),
    let JetStream give the message to the other node, whose trigger ran it
    too. The node holding it now renews the AckWait while it gathers and
    runs."""
    _, (a, b) = cluster
    records = record_dir(tmp_path)
    slow = deploy_batcher(a, records, name="slowfn", SLEEP_S=14)
    windowed = deploy_batcher(a, records, name="winfn")
    assert wait_for(lambda: listed(b, "slowfn") and listed(b, "winfn"), timeout=30)
    for q in ("slowq", "winq"):
        create(a, q, VisibilityTimeout=1)
        url_on(b, q)
    add_trigger(a, (a, b), "slowq", "slowfn", "?event_format=sqs&batch_size=1")
    add_trigger(a, (a, b), "winq", "winfn",
                "?event_format=sqs&batch_size=5&batch_window_ms=14000")
    ok(a, "SendMessage", {"QueueUrl": url_on(a, "slowq"), "MessageBody": "slow"})
    ok(b, "SendMessage", {"QueueUrl": url_on(b, "winq"), "MessageBody": "gathered"})

    def bodies(record):
        return [r["body"] for e in events(record) for r in records_of(e)]

    assert wait_for(lambda: bodies(slow) == ["slow"], timeout=30)
    assert wait_for(lambda: bodies(windowed) == ["gathered"], timeout=40)
    # Well past the AckWait (1 s and the 5 s margin) and the run's end.
    time.sleep(16)
    assert bodies(slow) == ["slow"] and bodies(windowed) == ["gathered"]
    for q, d in (("slowq", a), ("winq", b)):
        assert receive(d, url_on(d, q), WaitTimeSeconds=2) == []
