"""An adversarial pass over Lambda's event source mappings of SQS queues
(issue 18): a mapping whose queue is deleted. It failed before its fix."""

from test_lambda_esm import arn_of, deploy
from test_lambda_mgmt import client, error_of
from test_sqs import create, ok


def test_a_mapping_outlives_its_queue_and_can_be_deleted(spated, tmp_path):
    """DeleteQueue leaves the queue's triggers on its topic. The mapping
    vanished from Get, List and Delete (404), so neither it nor its function
    (DeleteFunction: it has a trigger) could be removed through Lambda's
    API, and a queue made again under the name was consumed by it with its
    old settings. As Lambda keeps such a mapping, it stays found, says its
    queue is gone, and deletes."""
    c = client(spated)
    deploy(c, tmp_path)
    url = create(spated, "esm-gone")
    arn = arn_of(spated, url)
    m = c.create_event_source_mapping(EventSourceArn=arn, FunctionName="rec", BatchSize=3)
    ok(spated, "DeleteQueue", {"QueueUrl": url})
    got = c.get_event_source_mapping(UUID=m["UUID"])
    assert got["UUID"] == m["UUID"] and got["EventSourceArn"] == arn, got
    assert got["LastProcessingResult"].startswith("PROBLEM"), got
    listed = c.list_event_source_mappings(FunctionName="rec")["EventSourceMappings"]
    assert [x["UUID"] for x in listed] == [m["UUID"]]
    assert c.delete_event_source_mapping(UUID=m["UUID"])["State"] == "Deleting"
    st, code, _ = error_of(lambda: c.get_event_source_mapping(UUID=m["UUID"]))
    assert (st, code) == (404, "ResourceNotFoundException")
    c.delete_function(FunctionName="rec")
    # The queue made again has no mapping from before.
    url = create(spated, "esm-gone")
    assert c.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"] == []
    assert spated.json("GET", "/v1/triggers/esm-gone/rec")[0] == 404
