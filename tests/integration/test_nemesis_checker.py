"""The nemesis's checker (nemesis.check) on records made up here: what it
calls lost, and which dead letters it takes for real failures. No spated:
a node that answers the dead-letter topics' pages from a dict."""

from types import SimpleNamespace

import pytest

import nemesis

REC = "{topic} - {payload} {attempt} {start} {end} 1000\n"


class DeadLetters:
    """GET /v1/topics/T.dlq/messages: one page of {payload: error}, then none."""

    def __init__(self, by_topic):
        self.by_topic = by_topic

    def request(self, method, path, body=None, headers=None):
        topic = path.split("/")[3].removesuffix(".dlq")
        letters = self.by_topic.get(topic)
        if letters is None:
            return 404, {"error": "no such topic"}
        if "after=0" not in path:
            return 200, {"messages": []}
        return 200, {"messages": [{"seq": i + 1, "payload": p, "error": e}
                                  for i, (p, e) in enumerate(letters.items())]}


def check(tmp_path, src_sent, src_runs, src_dead, events=()):
    wl = SimpleNamespace(ord={}, bat={}, inv={}, src=src_sent, redis=object(), statuses={},
                         sqs_sent={}, sqs_receives=[], sqs_deleted={}, sqs_unknown=set(),
                         record=lambda name: tmp_path / f"{name}.log")
    for name in ("ord", "bat", "inv"):
        wl.record(name).write_text("")
    wl.record("src").write_text("".join(
        REC.format(topic="src", payload=p, attempt=a, start=s, end=s + 1000)
        for p, a, s in src_runs))
    faults = SimpleNamespace(problems=[], counts={}, events=list(events))
    return nemesis.check(DeadLetters({"ord": {}, "bat": {}, "src": src_dead}), wl, faults)


TIMED_OUT = "function timed out after 2000 ms"


# make test's CI (session 53): a source entry whose two runs timed out on a
# loaded machine went to src.dlq, which the checker did not read: "lost".
# Another ran, recorded, and was dead-lettered as timed out on its second
# attempt: a real failure too (the recorder wrote, the answer came late).
@pytest.mark.normal_build
def test_a_source_entry_dead_lettered_after_timeouts_is_not_lost(tmp_path):
    fig, problems = check(tmp_path, {"src:1": "acked", "src:2": "acked", "src:3": "acked"},
                          [("src:1", 1, 10), ("src:2", 1, 20), ("src:2", 2, 3000)],
                          {"src:3": TIMED_OUT, "src:2": TIMED_OUT},
                          events=[("kill", 2000, 2500)])  # its run again: a kill's
    assert problems == [], problems
    assert fig["src"]["lost"] == 0 and fig["src"]["dead_lettered_after_timeouts"] == 1, fig


@pytest.mark.normal_build
def test_a_source_entry_neither_run_nor_dead_lettered_is_lost(tmp_path):
    fig, problems = check(tmp_path, {"src:1": "acked", "src:2": "acked", "src:3": "unknown"},
                          [("src:1", 1, 10)], {})
    assert fig["src"]["lost"] == 1, fig
    assert problems == ["src: 1 acknowledged messages never processed: ['src:2']"], problems


@pytest.mark.normal_build
def test_a_source_entry_dead_lettered_for_no_failure_is_named(tmp_path):
    # Unrun and dead-lettered with an error that is no timeout; run and
    # dead-lettered for a refusal: neither is a failure of the function.
    fig, problems = check(tmp_path, {"src:1": "acked", "src:2": "acked"}, [("src:2", 1, 10)],
                          {"src:1": "instance crashed", "src:2": "refused"})
    assert fig["src"]["lost"] == 0 and fig["src"]["dead_lettered_unrun"] == 1, fig
    assert any("dead-lettered without ever running" in p and "src:1" in p for p in problems)
    assert any("did not fail on purpose" in p and "src:2" in p for p in problems), problems
