"""Cluster mode: an ordered trigger removed right after its add, or again and
again, is gone from every node and from JetStream (split from
test_cluster.py)."""
import pytest

from conftest import wait_for
from natscluster import add_trigger, deploy_everywhere, js_api, node_id, spated_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with spated_cluster(tmp_path_factory) as c:
        yield c


def test_an_ordered_trigger_removed_again_and_again_is_gone_everywhere(cluster, functions):
    """Removing an ordered trigger deletes its 65 consumers, one JetStream
    request each (after a look at each), on every node at once (the node
    asked, and the others as the registry tells them): one request not
    answered in its 2 s failed the whole removal. The node asked said 503
    with the trigger already gone there (a DELETE again: 404) while the
    others kept it; or another node kept it alone; and the consumers not
    deleted kept the topic's messages from the trimmer for ever. A
    deletion not answered is asked again."""
    nats, nodes = cluster
    a = nodes[0]
    deploy_everywhere(a, nodes, "churn", functions["hello"])
    failures = []
    for i in range(6):
        add_trigger(a, nodes, "churnt", "churn", "?ordered=true")
        status, _, body = a.request("DELETE", "/v1/triggers/churnt/churn")
        if status != 204:
            failures.append((i, status, body))
            continue
        for d in nodes:
            if not wait_for(lambda: d.request("GET", "/v1/triggers/churnt/churn")[0] == 404,
                            timeout=10):
                failures.append((i, "kept by", node_id(d)))
    assert not failures, failures
    left = js_api(nats, "$JS.API.CONSUMER.NAMES.SPATE_T_churnt")["consumers"] or []
    assert not left, left


def test_an_ordered_trigger_removed_right_after_its_add_is_gone_everywhere(cluster, functions):
    """An ordered trigger added (201) and at once removed through the same
    node (204): every node hears both registry changes and applies them in
    turn, each a set-up or removal of 65 consumers, seconds on a loaded
    machine; 3 s after, all three nodes still listed it (2 of 8 rounds, a
    helper's report), and an add meanwhile was answered 503. In the end none
    keeps it."""
    nats, nodes = cluster
    a = nodes[0]
    deploy_everywhere(a, nodes, "flip", functions["hello"])
    for i in range(3):
        put = a.request("PUT", "/v1/triggers/flipt/flip?ordered=true")
        assert put[0] == 201 or (put[0] == 503 and i > 0), put
        delete = a.request("DELETE", "/v1/triggers/flipt/flip")
        assert delete[0] in (204, 404), delete

        def left():
            return [node_id(d) for d in nodes
                    if d.request("GET", "/v1/triggers/flipt/flip")[0] != 404]

        assert wait_for(lambda: not left(), timeout=90), (i, left(),
                                                         [d.log()[-2000:] for d in nodes])
