"""The sources' pipeline of two batches (sources.c): one batch committing
while the next is fetched ahead. What is fetched ahead is still in flight:
nothing may read it again from upstream while it is on its way, nor ack it
before it is stored.
"""

import subprocess
import time

from conftest import add_source, fill_disk, source, spated_on_small_disk, wait_for
from test_sources_mqtt import connected, mosquitto, mqtt_pub  # noqa: F401 (fixtures)
from test_sources_redis import CLI, redis  # noqa: F401 (fixture)


def test_redis_claim_does_not_read_the_batch_in_flight_again(tmp_path, redis):
    """A store refusing for long leaves the batch fetched ahead idle in the
    consumer's pending list: the periodic XAUTOCLAIM (of entries idle over a
    minute, meant for dead consumers) takes it too, and the consumer's
    pending entries are read again from the start. The batch in flight
    must not come a second time: it is neither lost nor was a connection."""
    r = redis()
    with spated_on_small_disk(tmp_path) as (d, filler):
        assert add_source(d, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "t")[0] == 201
        r.xadd("st", 0, 10)
        assert wait_for(lambda: source(d, "s")["committed"] == 10, timeout=30), source(d, "s")
        fill_disk(filler)
        # 300 at once (one transaction): a batch of 256 refused by the full
        # disk, and 44 fetched ahead.
        cmds = "MULTI\n" + "".join(f"XADD st * v e{i}\n" for i in range(10, 310)) + "EXEC\n"
        subprocess.run([CLI, "-p", str(r.port)], input=cmds, capture_output=True,
                       text=True, timeout=60, check=True)
        assert wait_for(lambda: source(d, "s")["publish_failures"] > 0, timeout=30)
        assert wait_for(lambda: r.pending("st", "g") == 300, timeout=30), r.pending("st", "g")
        # Both batches idle for an hour as Redis sees it, as after a long
        # outage of the store (XCLAIM to the same consumer, IDLE).
        consumer = r.cli("XPENDING", "st", "g").split("\n")[3]
        ids = r.cli("XRANGE", "st", "-", "+").split("\n")[0::3]
        assert len(ids) == 310, ids[:5]
        r.cli("XCLAIM", "st", "g", consumer, "0", *ids[10:], "IDLE", "3600000", "JUSTID")
        # Past SPATE_SOURCE_CLAIM_EVERY_MS (15 s) since its last claim: the
        # first fetch once the store takes the batch claims.
        time.sleep(16)
        filler.unlink()
        assert wait_for(lambda: source(d, "s")["committed"] >= 310 and r.pending("st", "g") == 0,
                        timeout=120), (source(d, "s"), r.pending("st", "g"))
        time.sleep(2)  # a duplicate would have been read by now
        doc = source(d, "s")
        assert doc["received"] == 310 and doc["committed"] == 310, doc


def test_mqtt_stopped_while_the_store_refuses_says_what_is_lost(tmp_path, mosquitto):
    """MQTT acknowledges a message as it is read (mqtt.c): a source that
    stops while the store refuses its batch, and the one fetched ahead,
    cannot have them again from the broker. The stop does not wait for the
    store (a full disk would hold shutdown), so the loss is logged, never
    silent."""
    m = mosquitto()
    with spated_on_small_disk(tmp_path) as (d, filler):
        assert add_source(d, "s", f"mqtt://127.0.0.1:{m.port}/a?qos=1", "t")[0] == 201
        assert connected(d, "s")
        fill_disk(filler)
        subprocess.run([str(m.pub_tool), "-p", str(m.port), "-t", "a", "-n", "20"],
                       capture_output=True, check=True, timeout=60)
        assert wait_for(lambda: source(d, "s")["publish_failures"] > 0, timeout=30)
        d.stop()  # SIGTERM: the sources stop first
        assert "acknowledged upstream when read, are lost" in d.log(), d.log()[-3000:]
