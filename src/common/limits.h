/*
 * limits.h - every size, count and time limit of spate in one place.
 *
 * Each limit says why it has its value. Values marked "default" can be changed
 * by an option; the others are ceilings fixed at build time.
 */
#ifndef SPATE_LIMITS_H
#define SPATE_LIMITS_H

#define KIB (1024u)
#define MIB (1024u * 1024u)

/* --- HTTP server ------------------------------------------------------- */

/* Request line plus headers. Real clients send well under 2 KiB; 16 KiB leaves
 * room for long tokens and query strings while bounding per-connection memory.
 * Over it: 431. */
#define SPATE_HTTP_HEADER_BYTES_MAX (16u * KIB)
/* Before a connection has made an authenticated request (with --token-file):
 * a request line and headers fit in this. Real clients send well under it. */
#define SPATE_HTTP_HEADER_PREAUTH_MAX (4u * KIB)
/* Header lines per request; over it: 431. */
#define SPATE_HTTP_HEADER_COUNT_MAX 64
/* Bytes read from a socket before the parser consumes them. Bodies stream
 * through this buffer into the request, so it need not hold a whole request. */
#define SPATE_HTTP_READ_BUFFER (64u * KIB)
/* Body of a request to a route that takes no large body (default). */
#define SPATE_HTTP_SMALL_BODY_MAX (64u * KIB)
/* Invoke payload (default): the AWS Lambda synchronous payload limit. Over it: 413. */
#define SPATE_INVOKE_PAYLOAD_MAX (6u * MIB)
/* Artifact upload (default). Over it: 413. */
#define SPATE_ARTIFACT_MAX (64u * MIB)
/* Open client connections (default); the next one gets 503 and is closed.
 * Each costs a read buffer, so this bounds memory at about 64 MiB. */
#define SPATE_HTTP_CONNECTIONS_MAX 1024
/* A keep-alive connection with no request in progress is closed after this
 * (default, ms). */
#define SPATE_HTTP_IDLE_TIMEOUT_MS 60000
/* A request must arrive whole (headers and body) within this (default, ms);
 * otherwise 408. Stops clients that trickle bytes from holding a connection. */
#define SPATE_HTTP_REQUEST_TIMEOUT_MS 30000
/* A new connection must send its first request's headers within this
 * (default, ms), as must each request of a connection that has not
 * authenticated; otherwise 408. Real clients send them in one packet; a
 * client that holds connections open with a byte or two is let go soon. */
#define SPATE_HTTP_HEADER_TIMEOUT_MS 5000
/* Connections that have not yet sent a complete request (default). Over it,
 * the oldest of them is closed, so that idle or trickling connections cannot
 * take the places of clients that send their request at once. A quarter of
 * the connections. */
#define SPATE_HTTP_NEW_CONNECTIONS_MAX 256
/* API tokens (--token-file): SPATE_TOKEN_MIN to SPATE_TOKEN_MAX - 1
 * printable characters (SPATE_TOKEN_MAX is with the NUL), long enough to
 * resist guessing, short enough to bound the file and the comparison (each
 * request compares every token whole); at most SPATE_TOKENS_MAX of them. */
#define SPATE_TOKEN_MIN 16
#define SPATE_TOKEN_MAX 256
#define SPATE_TOKENS_MAX 1024
/* After a final answer that closes the connection, unread input is drained
 * for at most this long (ms), so the client reads the answer instead of a
 * reset. */
#define SPATE_HTTP_LINGER_MS 2000
/* Answers that go out while more pipelined requests already wait in the read
 * buffer are held and leave in one write when parsing stops (a runtime that
 * sends its response and its next /next together gets both answers in one
 * segment). Up to this much; a larger answer goes at once. */
#define SPATE_HTTP_CORK_MAX (64u * KIB)
/* TLS on the listener (http/server/tls.c): the bytes a client may send
 * before its handshake completes. A ClientHello is well under 2 KiB; a
 * client certificate chain of a few certificates fits in 16 KiB; 64 KiB
 * bounds what a connection that never finishes costs. Over it the
 * connection is closed. The handshake must also finish within the header
 * deadline (SPATE_HTTP_HEADER_TIMEOUT_MS), as a plain first request must. */
#define SPATE_TLS_HANDSHAKE_BYTES_MAX (64u * KIB)
/* Encrypted bytes read from a connection and not yet decrypted: reading
 * stops at this while the read buffer is full (pipelined requests behind a
 * slow one), as it does for plain connections. Four TLS records. */
#define SPATE_TLS_BUFFERED_MAX (64u * KIB)
/* A connection's buffer of encrypted output grows to its largest answer
 * (an answer is encrypted whole), and OpenSSL's memory BIO keeps that
 * allocation, zeroing all of it at every later reset: one answer of 6 MiB
 * made an idle keep-alive connection hold 6 MiB for its life. A buffer
 * larger than this is let go once sent; a few records' worth is kept. */
#define SPATE_TLS_WRITE_KEEP (64u * KIB)
/* Who is at the other end of a connection (http/peer.c) is asked of the
 * kernel over netlink: its answer about one socket is well under
 * SPATE_PEER_DIAG_REPLY_MAX bytes, and it answers at once, so the wait
 * (us) only bounds a loop that must never hang. */
#define SPATE_PEER_DIAG_REPLY_MAX 8192
#define SPATE_PEER_DIAG_TIMEOUT_US 200000

/* --- Functions ----------------------------------------------------------- */

/* Function names: [A-Za-z0-9][A-Za-z0-9_-]*, this many bytes at most. */
#define SPATE_NAME_MAX 64
/* Alias names (versions.c): as a function name but not all digits (a
 * qualifier of digits is a version), this many bytes at most; aliases one
 * function may have. */
#define SPATE_ALIAS_MAX 64
/* The highest version number: a qualifier names one in at most 9 digits
 * (versions.c); a cluster entry naming a higher one names none. */
#define SPATE_VERSION_MAX 999999999u
#define SPATE_ALIASES_PER_FUNCTION 64
/* Versions other than the active one that may each run in their own pool
 * at once, per function (invoked by number or through an alias): past it,
 * an invocation of another one is refused (429) until one stops idling. */
#define SPATE_SIDE_POOLS_MAX 4
/* Async invocations in one chain, each made by the one before's destination
 * record (A's on-success is spate.async.B, B's spate.async.A): the record that
 * would make one more goes to the dead letters instead. Lambda stops
 * recursive loops after about 16 invocations; a deliberate pipeline that long
 * through async topics is unlikely, and one through a plain topic and its
 * trigger is not counted. */
#define SPATE_ASYNC_HOPS_MAX 16
/* Topic names also allow '.', for "TOPIC.dlq". */
#define SPATE_TOPIC_NAME_MAX 128
/* In a cluster a topic is a JetStream stream, whose name JetStream takes up
 * to this long (name_topic_stream): 128 '.' or '_' do not fit. */
#define SPATE_JS_STREAM_NAME_MAX 255
/* Topics a node keeps (--max-topics): anyone who may publish makes one by
 * naming it, and each costs memory (about 1 KiB with its store row and
 * index entries) and a share of every listing, sample and scrape. 100,000
 * stays well inside a small node's memory (~100 MB) while each of those
 * costs is bounded by paging and slicing (docs/api.md "Topics"); the
 * ceiling, about 10 GiB of them, is past any node this runs on. */
#define SPATE_TOPICS_DEFAULT 100000u
#define SPATE_TOPICS_CEILING 10000000u
/* GET /v1/topics answers a page: by default this many topics, at most the
 * maximum (each is a few hundred bytes of JSON and a few microseconds of
 * the loop: 1,000 stays within a few ms). */
#define SPATE_TOPICS_PAGE_DEFAULT 500u
#define SPATE_TOPICS_PAGE_MAX 1000u
/* GET /v1/functions and /v1/triggers write a page over several loop turns,
 * each at most this long (microseconds; api/page.c): a page of 1,000
 * functions took 4-8 ms of loop in one go. An item's JSON is at most
 * SPATE_PAGE_ITEM_MAX bytes (a function's summary ~130, a trigger ~1 KiB). */
#define SPATE_PAGE_SLICE_US 500u
#define SPATE_PAGE_ITEM_MAX (16u * KIB)
/* GET /v1/functions pages the same way (a page costs its own functions). */
#define SPATE_FUNCTIONS_PAGE_DEFAULT 500u
#define SPATE_FUNCTIONS_PAGE_MAX 1000u
/* GET /v1/triggers too (?limit=&after=TOPIC/FUNCTION). */
#define SPATE_TRIGGERS_PAGE_DEFAULT 500u
#define SPATE_TRIGGERS_PAGE_MAX 1000u
/* Topics /metrics gives series of their own (--metrics-topics), the deepest
 * first: 6 series each, so 1,000 is 6,000 series (~400 KB a scrape); the
 * rest are counted (spate_topics, spate_topics_without_series). */
#define SPATE_METRICS_TOPICS_DEFAULT 1000u
/* /metrics and a page of /v1/topics are built over several loop turns,
 * each at most this long (microseconds), so that an invocation waits behind
 * them at most about this: 1 ms slices put a scraped node's invocation p50
 * at 0.57 ms (0.12 at rest), 100 us slices at 0.24 ms (bench/scale/topics).
 * A scrape of 100,000 topics then takes ~300 turns, ~30 ms in all. */
#define SPATE_METRICS_SLICE_US 100u
/* Output of one invocation: as for the payload, the Lambda limit. */
#define SPATE_RESPONSE_MAX (6u * MIB)
/* Error message a function may return with spate_fail. */
#define SPATE_ERROR_MESSAGE_MAX (4u * KIB)
/* Environment of a function: count and total bytes (Lambda allows 4 KiB). */
#define SPATE_ENV_COUNT_MAX 64
#define SPATE_ENV_BYTES_MAX (4u * KIB)

/* Deploy options: defaults and ranges. */
#define SPATE_MIN_DEFAULT 0
#define SPATE_MAX_DEFAULT 100
#define SPATE_MAX_CEILING 10000
#define SPATE_TIMEOUT_DEFAULT_MS 30000
#define SPATE_TIMEOUT_CEILING_MS (15 * 60 * 1000) /* Lambda's ceiling */
#define SPATE_MEMORY_DEFAULT_MB 128
#define SPATE_MEMORY_FLOOR_MB 16
#define SPATE_MEMORY_CEILING_MB 65536
/* CPU quota of one instance (deploy cpu=), thousandths of a core. */
#define SPATE_CPU_FLOOR_MILLIS 10
#define SPATE_CPU_CEILING_MILLIS 256000
/* By default no quota: the instances of a function share one cpu cgroup,
 * so the CPU is shared fairly between functions (runtime/isolate/). */
#define SPATE_CPU_DEFAULT_MILLIS 0
/* Size of an instance's private /tmp and /dev/shm (deploy tmp=), MB: Lambda's
 * default ephemeral storage. Its pages count against the instance's memory. */
#define SPATE_TMP_DEFAULT_MB 512
#define SPATE_TMP_FLOOR_MB 1
#define SPATE_TMP_CEILING_MB 10240 /* Lambda's ceiling */
/* The status line and headers of one answer, extra headers included: most
 * fit a connection's 1 KiB buffer; the largest are Lambda's
 * X-Amz-Log-Result (4 KiB of log in base64, api/lambda.c). */
#define SPATE_HTTP_ANSWER_HEAD_MAX (16u * KIB)
/* Function output (runtime/fnlog.h): a line longer than this is cut; each
 * function keeps its newest lines up to a count and bytes, and may write at
 * a sustained rate with a burst before its writes are made to wait. */
#define SPATE_LOG_LINE_MAX 4096
#define SPATE_LOG_LINES_KEPT 2000
#define SPATE_LOG_BYTES_KEPT (512u * KIB)
#define SPATE_LOG_RATE_BYTES 65536 /* per second */
#define SPATE_LOG_BURST_BYTES (256u * KIB)
#define SPATE_LOG_WAIT_MAX_MS 60000   /* a long poll of GET .../logs?wait= */
#define SPATE_LOG_FILE_MAX (8u * MIB) /* a function's log file; one older file is kept */
/* What spated's own log quotes of a function's words (why an instance failed
 * to start: its init error), at most: a line must still end with whose it is
 * (fn=...) within the log's line length (SPATE_LOG_MESSAGE_MAX), even once
 * control characters are escaped (4 bytes each). */
#define SPATE_LOG_QUOTE_MAX 300
/* One message of spated's (and spate-runner's) own log, before its time,
 * level and tag: longer ones are cut. */
#define SPATE_LOG_MESSAGE_MAX 2048
/* Functions run as uids from here on, one each (spated --uid-base): far
 * above the users of the host. */
#define SPATE_UID_BASE 2000000000u
/* Processes and threads one instance may have (cgroup pids.max), by default. */
#define SPATE_PIDS_DEFAULT 128
#define SPATE_KEEP_ALIVE_DEFAULT_MS 60000
#define SPATE_KEEP_ALIVE_CEILING_MS (24 * 3600 * 1000)

/* Invocations waiting for an instance of one function (default); beyond it:
 * 429. Each costs only its payload and a small record. */
#define SPATE_WAIT_QUEUE_DEFAULT 4096
#define SPATE_WAIT_QUEUE_CEILING 1000000
/* Why an invocation found its function unable to start, as it is told:
 * "cannot start function: " and the loader's message (an init error may
 * quote up to SPATE_ERROR_MESSAGE_MAX of the function), cut to this. */
#define SPATE_LOAD_ERROR_MAX 4200

/* The recent invocations each pool keeps for GET /v1/functions/NAME (the
 * console's function page): the newest few tell an operator what is
 * happening now; the metrics and logs keep the rest. Each entry is under
 * 256 bytes and a pool makes its ring at its first invocation, so 1,000
 * functions that have run keep ~5 MB at most. An error's text is cut
 * to SPATE_RECENT_ERROR_MAX bytes: the logs hold the whole of it. */
#define SPATE_RECENT_INVOCATIONS 20
#define SPATE_RECENT_ERROR_MAX 160

/* --- Topics and triggers -------------------------------------------------- */

/* One message (default): a line of an NDJSON batch or a whole body. Over it,
 * the batch is refused whole with 413. */
#define SPATE_MESSAGE_MAX (256u * KIB)
/* One publish request (default): the whole NDJSON batch. */
#define SPATE_PUBLISH_BODY_MAX (16u * MIB)
/* An ordering key: UTF-8 text, this many bytes at most. */
#define SPATE_KEY_MAX 1024
/* Retries: 100 ms doubling to 30 s, with jitter; attempts per message (default). */
#define SPATE_RETRY_BASE_MS 100
#define SPATE_RETRY_CAP_MS 30000
#define SPATE_MAX_ATTEMPTS_DEFAULT 3
#define SPATE_MAX_ATTEMPTS_CEILING 100
/* A trigger's batches (docs/functions.md "Batches"): at most this many
 * messages per invocation (Lambda's SQS maximum), a window of at most this
 * long to gather them, and at most this much event (the invoke payload
 * limit, Lambda's 6 MB). */
#define SPATE_BATCH_SIZE_MAX 10000
#define SPATE_BATCH_WINDOW_MAX_MS 300000
#define SPATE_BATCH_BYTES_MAX SPATE_INVOKE_PAYLOAD_MAX
/* The autoscaler looks again at least this often (ms), besides reacting to
 * publishes and completions at once. */
#define SPATE_AUTOSCALE_TICK_MS 50
/* How often topics no trigger reads are held to their retention (a topic
 * goes over its limits by at most this much time's publishes). */
#define SPATE_RETENTION_TICK_MS 1000
/* Instances on one node (default: one per 16 MiB of memory, within these). */
#define SPATE_NODE_INSTANCES_FLOOR 64
#define SPATE_NODE_INSTANCES_CEILING 10000

/* --- The queue on SQLite (src/store/queue/) ------------------------------- */

/* A subscription keeps up to this many committed messages (and bytes of
 * them) in memory, ready to lease; beyond, the rest waits in the store and is
 * fetched again once ready is down to a quarter of the count. Bounds a
 * subscription's memory whatever the backlog; the ceiling is the host's
 * memory, times the number of triggers. */
#define SPATE_QUEUE_READY_MAX 65536
#define SPATE_QUEUE_READY_BYTES (64u * MIB)
/* One fetch from the store reads at most this many rows or bytes: a chunk
 * read on the writer thread between two commits, so a larger one delays the
 * next commit (and every publish waiting for it). */
#define SPATE_QUEUE_FETCH_ROWS 4096
#define SPATE_QUEUE_FETCH_BYTES (16u * MIB)
/* An ordered subscription looks this far into ready for a message whose key
 * is not busy: the scan runs on every lease, so it is bounded; past it, the
 * subscription waits for a key to be settled. */
#define SPATE_QUEUE_ORDERED_SCAN 4096
/* Past this many bytes of messages waiting for a retry, a subscription takes
 * no new messages into memory (back-pressure: a failing function does not
 * pull its whole topic into memory). */
#define SPATE_QUEUE_RETRY_BYTES_MAX (64u * MIB)
/* One read of a topic (queue_read, a redrive) returns at most this many
 * messages; the API asks for at most 1000. Their pointers are on the stack. */
#define SPATE_QUEUE_READ_MAX 1024
/* A dead letter that could not be moved (out of memory, a failed commit) is
 * tried again this much later (ms), as a retry. */
#define SPATE_QUEUE_DEAD_LETTER_RETRY_MS 1000

/* --- Store ------------------------------------------------------------------ */

/* How long a connection to the database waits for the other's write lock
 * before its statement fails (ms). The store's own connection runs on the
 * loop thread, which stands still meanwhile, so it waits less; the writer
 * thread's failure fails a whole group commit, so it waits more. */
#define SPATE_STORE_BUSY_TIMEOUT_MS 5000
#define SPATE_WRITER_BUSY_TIMEOUT_MS 10000
/* The writer's page cache (KiB): the tables it writes stay in memory
 * between commits. Per node, one writer. */
#define SPATE_WRITER_CACHE_KIB 65536

/* --- Exec artifacts ------------------------------------------------------- */

/* An archive may hold at most this many entries and unpack to at most this
 * many bytes; beyond, it is refused (archive bombs). */
#define SPATE_ARCHIVE_ENTRIES_MAX 10000
#define SPATE_ARCHIVE_BYTES_MAX (512u * MIB)
/* An entry's path, bytes with its NUL, and its depth in directories; a
 * longer or deeper one is refused. Real archives stay far below; the path
 * buffer is on the stack. */
#define SPATE_ARCHIVE_NAME_MAX 1024
#define SPATE_ARCHIVE_DEPTH_MAX 64
/* Directories a tree removal (common/fs.h) goes down at most: each level
 * holds a descriptor, and an instance's temporary directory is a tree its
 * function made, maybe to hurt. At least the 64 path components an archive
 * entry may have (store/unpack.c), so an unpacked artifact goes whole. */
#define SPATE_TREE_DEPTH_MAX SPATE_ARCHIVE_DEPTH_MAX

/* --- Runtime --------------------------------------------------------------- */

/* One frame between spated and an instance: the largest payload or response
 * plus room for the invocation's metadata. */
#define SPATE_FRAME_MAX (SPATE_INVOKE_PAYLOAD_MAX + 64u * KIB)
/* A zygote must have loaded its object and run spate_preload within this (ms). */
#define SPATE_ZYGOTE_LOAD_TIMEOUT_MS 10000
/* An instance must have run spate_init and said it is ready within this (ms). */
#define SPATE_INSTANCE_INIT_TIMEOUT_MS 10000
/* Unless the machine starves it (runtime/instance.h: runnable, with less than
 * half the CPU it could have had): then it is looked at again every
 * SPATE_STARVED_GRACE_MS, up to this long from its start (ms). Killed at 10 s,
 * eight functions' starts on a node given a tenth of a core each had 60-190 ms
 * of CPU of the 300 ms they needed, were started again from nothing, and
 * never became ready (their messages went to the dead letters unrun); given
 * the time, they are ready in about 25 s. (An instance whose own processes
 * take its CPU is not starved: runtime/exec/process.c.) */
#define SPATE_STARVED_START_MAX_MS 60000
#define SPATE_STARVED_GRACE_MS 5000
/* The processes of an instance looked at to judge it starved (at most its
 * pids cgroup's limit are there; more are not read). */
#define SPATE_STARVED_PROCS_MAX 256
/* A deadline of an instance (its init's, or a running invocation's) or of
 * a waiting invocation, which the loop may not have seen in time, holds
 * only when seen passed again this
 * much later (ms), the loop having run in between. After spated itself did
 * not run for a while (SIGSTOP, a loaded machine), libuv runs the expired
 * timers before it accepts and reads what came in meanwhile: an instance
 * that asked for work in time (GET /next, the READY frame) was stopped as
 * never ready, an answer sent in time was a timeout. Reading an exec
 * instance's first request takes two turns of the loop (the accept, then the
 * read); this leaves hundreds. A look later than twice this is a stall
 * again: it starts over. Init deadlines are always looked at twice; a
 * running or waiting invocation's when its timer came more than
 * SPATE_STALL_MS late (a timeout is kept to the millisecond otherwise). */
#define SPATE_DEADLINE_CONFIRM_MS 500
#define SPATE_STALL_MS 100
/* Invocations queued on one busy instance (its mailbox), when that starts
 * them sooner than another instance could. Only small payloads are queued
 * this way, so a mailbox holds at most about 2 MiB. */
#define SPATE_PREFETCH_MAX 16
#define SPATE_PREFETCH_PAYLOAD_MAX (64u * KIB)
/* Counters in the page a zygote shares with spated and its instances: spated
 * bumps an instance's (its spawn number modulo this) when it sends it a
 * CANCEL, and the instance looks at it before each invocation rather than
 * ask its socket (runtime/frame.h). Instances that share one only look at
 * their socket more often. */
#define SPATE_CANCEL_COUNTERS 1024
/* What waking an idle instance costs, against which the dispatcher weighs
 * queueing behind a busy one (us; a socketpair round trip is 8-11 us here). */
#define SPATE_WAKE_COST_US 20
/* A busy instance is checked for a fork its pids cgroup refused after
 * SPATE_PIDS_FIRST_CHECK_MS (a fork bomb gets there within milliseconds),
 * then every SPATE_PIDS_CHECK_MS: one that reached its process limit is
 * stopped, as the memory limit stops a memory hog, rather than left spinning
 * until its timeout. Each look is one read of pids.events. */
#define SPATE_PIDS_FIRST_CHECK_MS 3
#define SPATE_PIDS_CHECK_MS 50
/* The looks after that one come at twice the previous interval, up to this
 * (ms): a fork bomb is caught in its first milliseconds, and one that
 * starts late within a second, while 2,000 busy instances no longer cost
 * 40,000 reads a second (17 us each on a loaded 2-core VM: most of the
 * loop, bench/scale/dispatch). */
#define SPATE_PIDS_CHECK_MAX_MS 1000
/* Looks are rounded up to a multiple of this (ms): the pool's timer walks
 * every busy instance when it fires, and looks at their own moments made it
 * fire up to a thousand times a second at 2,000 busy (13% of spated's CPU in
 * that walk alone, bench/scale/dispatch). */
#define SPATE_PIDS_CHECK_QUANTUM_MS 5
/* A mailbox bets that the invocation running ahead ends within a cold start.
 * One that has run past a cold start, four times the handler time estimate
 * and this floor (ms) has lost the bet: the estimate is stale (a function
 * fast at first, slow now). What waits behind it moves to other instances,
 * mailboxes stay off while it runs, and the handler time reported to the
 * autoscaler is at least what every running invocation has already lasted.
 * The floor keeps a microsecond handler that a loaded machine did not run
 * for a while from counting (stalls of 60 ms were seen under bench/invoke
 * with other work on the machine); handlers that end sooner correct the
 * estimate with their result. Looked at with the process limit, every
 * SPATE_PIDS_CHECK_MS. */
#define SPATE_OUTLASTED_MIN_MS 200
/* An invocation past that point is looked at again this much later (ms),
 * after the loop has read what the instances sent meanwhile: when spated
 * itself did not run for a while (a loaded machine), the timer comes before
 * the results that arrived, and every invocation looks long. */
#define SPATE_OUTLASTED_CONFIRM_MS 5
/* Sizing a pool by the autoscaler's rule (sched/autoscaler.h), direct
 * invokes and triggers alike: a pool grows to the instances the rule asks
 * for, and no further, while invocations wait. A few are always allowed:
 * the handler time leaves out what each call costs around it (frames,
 * wake-ups), which is most of a microsecond function's time, and these few
 * keep a closed loop of many connections fed (bench/invoke). */
#define SPATE_SCALE_FLOOR 4
/* Instances one pool starts at a time. A zygote forks them one after the
 * other: 500 asked at once filled its control socket (the rest failed with
 * EAGAIN) and each waited seconds behind the others, which the pool took
 * for its cold start time and so queued six calls per instance instead of
 * starting more (bench/scale/dispatch stalled at 464 instances for 1,000
 * calls in flight). As each one is ready the next starts. */
#define SPATE_STARTING_MAX 32
/* Instances starting at once on the node, over all functions (--max-starting;
 * by default this many per CPU, at least SPATE_NODE_STARTING_FLOOR). Starts
 * share the CPUs evenly: a node restarted under a backlog asked 32 of each
 * of its functions' Python bootstraps to start at once, none got far enough
 * in its 10 s to become ready, and each failed start cost a waiting message
 * an attempt (21 went to the dead letters unrun in a cluster campaign). With
 * fewer at once the first are ready in time and the rest follow. */
/* How long (ms) from a pool's first start the machine starved
 * (runtime/instance.h: runnable at its init deadline, with less than half
 * the CPU it could have had), while none becomes ready, such starts fail no
 * waiting call; after it each fails one, as any failed start does (a
 * bootstrap may starve itself). A node restarted under a backlog is over
 * its rush well within it. */
#define SPATE_STARVED_EXCUSED_MS 60000
/* And beyond it, how many starts killed starved while other functions'
 * starts were in progress are excused (none ready between): by then the
 * node starts that function's alone (instances.c: node_starved_window), and
 * one that cannot start alone fails a call. */
#define SPATE_STARVED_EXCUSED_KILLS 3
#define SPATE_NODE_STARTING_PER_CPU 8
#define SPATE_NODE_STARTING_FLOOR 16
#define SPATE_NODE_STARTING_CEILING 65536
/* A start the zygote could not take (its socket full, say) is tried again
 * this much later (ms) while invocations wait, not at the next event: with
 * every instance busy that may be a result seconds away. */
#define SPATE_SPAWN_RETRY_MS 100
/* While the rule holds invocations back, the pool looks again this often
 * (ms): the handler time's lower bound (what the oldest running invocation
 * has lasted) grows as a slow function's first calls run on. */
#define SPATE_SCALE_RECHECK_MS 25
/* The triggers' own sizing of a function (its topics' backlog, which the
 * pool does not see) holds this long (ms) after they last said it; they
 * say it every tick (50 ms). */
#define SPATE_SCALE_HINT_MS 500
/* Surplus instances: while more than SPATE_SURPLUS_FACTOR times the desired
 * count live (and more than the minimum), an instance idle this long (ms)
 * stops before its keep-alive; the rest keep the full keep-alive. While
 * some may be surplus the pool looks again every SPATE_SURPLUS_LOOK_MS. */
#define SPATE_SURPLUS_FACTOR 2
#define SPATE_SURPLUS_IDLE_MS 5000
#define SPATE_SURPLUS_LOOK_MS 1000
/* Instances of a function that keep failing (a crash, a timeout, a limit)
 * are restarted after a pause, so that a crash loop cannot keep the CPUs
 * busy with cold starts: the first SPATE_CRASH_FREE failures in a row
 * restart at once, the next after 25 ms doubling to 1 s, until one succeeds. */
#define SPATE_CRASH_FREE 3
#define SPATE_CRASH_BACKOFF_BASE_MS 25
#define SPATE_CRASH_BACKOFF_CAP_MS 1000
/* Zygote restarts after a crash are spaced at least this far apart (ms). */
#define SPATE_ZYGOTE_RESTART_BACKOFF_MS 1000
/* After loads that failed in a row, the wait doubles up to this (ms). */
#define SPATE_ZYGOTE_LOAD_BACKOFF_CAP_MS 60000
/* A zygote that waits for another's room (its idle instances stopping,
 * sched/pool/zygotes.c) looks again this often (ms): an instance's end is
 * reported within a few. */
#define SPATE_ZYGOTE_RECLAIM_LOOK_MS 5
/* A node limit (common/err.h) warns in spated's log when it first refuses a
 * start, and again only once starts went through and it refuses anew, at
 * most once per this many ms (a flapping limit): every refusal is counted in
 * /metrics whatever the log says. */
#define SPATE_LIMIT_LOG_INTERVAL_MS 10000
/* After a zygote could not fork an instance for a node limit, the pool's
 * next start waits this long (ms): each try costs a round trip to the zygote
 * and would otherwise follow at once. */
#define SPATE_LIMIT_RETRY_MS 100
/* A zygote reports an instance it forked (SPAWNED) or reaped (EXITED) within
 * microseconds; one silent for this long (ms) after spated needs the report
 * is lying or stuck, and is treated as broken. */
#define SPATE_ZYGOTE_REPORT_MS 2000
/* Processes a version's zygote cgroup holds beyond --pids-max: instances pass
 * through it between their fork and joining their own cgroups. */
#define SPATE_ZYGOTE_PIDS_HEADROOM 256
/* What each live instance costs its zygote's memory cgroup. The kernel
 * memory of a fork (task, kernel stack, the copy of the zygote's page tables,
 * its mappings' descriptors, ...) is charged to the cgroup of the process
 * that forks, and stays there when the child joins its own cgroup (cgroup v1
 * moves no kernel memory; CLONE_INTO_CGROUP is cgroup v2 only) until the
 * child exits. Measured on kernel 6.18 (one parent in a memory cgroup, 100
 * children moved to another): 108 KiB per child of a parent that had touched
 * nothing, 140 KiB at 16 MiB touched, 368 KiB at 128 MiB: about 108 KiB and
 * 2 KiB per MiB the parent holds (its page tables). A zygote held to the
 * function's memory alone was OOM-killed near 900 instances at 128 MB (and
 * near 100 at 16 MB), every instance with it; so its limit is the function's
 * memory plus this much per instance it may have (isolate_version_acquire),
 * with a margin over the measured figures. */
#define SPATE_ZYGOTE_FORK_KIB 160
#define SPATE_ZYGOTE_FORK_KIB_PER_MB 3
/* Instances beyond the function's maximum the zygote's limit leaves room
 * for: those that are stopping (their kernel memory goes as they exit). */
#define SPATE_ZYGOTE_FORK_SLACK 16

/* Zygotes run on demand (sched/pool/zygotes.c): at most this many at once
 * (spated --max-zygotes), each stopped after this long without an instance
 * (--zygote-idle). A native zygote costs about 1-2 MB and 3 descriptors. */
#define SPATE_ZYGOTES_DEFAULT 128
#define SPATE_ZYGOTES_CEILING 100000
#define SPATE_ZYGOTE_IDLE_DEFAULT_MS 300000
/* Spare instances (sched/pool/spares.c): a function used (invoked or
 * deployed) within this long keeps one instance started ahead (spated
 * --spare-idle; 0: none). About one idle instance (<= 512 KiB private, its
 * cgroups) per function in use, for a cold start that costs a hand-over. */
#define SPATE_SPARE_IDLE_DEFAULT_MS 60000
#define SPATE_SPARE_IDLE_CEILING_S 86400
/* Spares for deploys not invoked since start at most this many at once and
 * this many a second, node-wide (a token bucket): each is a spawn on the
 * loop (an exec one holds it until its exec, ~10 ms), and a spare for every
 * deploy of a storm made every deploy and every answer of the node wait. */
#define SPATE_SPARE_DEPLOY_BURST 4
#define SPATE_SPARE_DEPLOY_PER_S 4
/* After a node limit refused a spare's start, none is tried for this long;
 * after a spare died while it waited, as long, doubled for each one lost in
 * a row up to this many times (about a minute). */
#define SPATE_SPARE_RETRY_MS 1000
#define SPATE_SPARE_LOST_SHIFT_MAX 6
/* A spare is put off this long while an invocation of its function runs:
 * starting one holds the loop for a moment (an exec spawn until its exec). */
#define SPATE_SPARE_DEFER_MS 20
/* Finding which process holds a Runtime API client's socket reads one /proc
 * entry per process and per descriptor of the instance: a hostile instance
 * with thousands of descriptors in each of its processes made each of its
 * connections cost spated seconds of its event loop. One check reads at most
 * SPATE_RUNTIME_API_CHECK_MAX entries (the bootstrap's own first), and the
 * checks of one version's instances together at most
 * SPATE_RUNTIME_API_CHECK_RATE entries a second (a burst as large); a check
 * that would go beyond is a refusal. About 0.7 us an entry: a function can
 * cost spated at most ~25 ms a second this way, any single check ~6 ms. */
#define SPATE_RUNTIME_API_CHECK_MAX 8192
/* How long a managed runtime's first instance may take to import the
 * handler at deploy (runtime/launcher.c) before the deploy fails: what any
 * instance has to start, since one slower would fail every invocation. */
#define SPATE_RUNTIME_CHECK_TIMEOUT_MS SPATE_INSTANCE_INIT_TIMEOUT_MS
#define SPATE_RUNTIME_API_CHECK_RATE 32768
/* The bodies a Runtime API endpoint is reading or holding, all its
 * connections together: one response of the largest size and room for an
 * error beside it. Without it an instance's 16 connections each sending a
 * 6 MiB body made spated hold ~100 MB per instance, outside every cgroup. */
#define SPATE_RUNTIME_API_BODIES_MAX (SPATE_RESPONSE_MAX + 128u * KIB)
/* The environment spate-runner reads from --env-fd (the function's
 * variables, at most SPATE_ENV_BYTES_MAX, plus spate's and Lambda's). */
#define SPATE_RUNNER_ENV_MAX (64u * KIB)
/* Host paths an operator leaves writable in every instance (spated
 * --writable), at most; the rest of the host is read-only there. Each is a
 * bind mount in every zygote's and exec instance's namespace, so a few, not
 * a tree of them: bind a common parent instead. */
#define SPATE_WRITABLE_MAX 16
/* Slots (cgroups and temporary directory) of instances that ended cleanly,
 * kept emptied for the next instance: making them costs about as much as the
 * fork. Beyond this many, a slot is freed; each kept costs a few cgroups. */
#define SPATE_SPARE_SLOTS_MAX 64
/* Cgroups still busy when their instance ended (a process not yet reaped),
 * retried on a timer until they go. Beyond this many, one is left behind
 * with a warning. */
#define SPATE_STALE_CGROUPS_MAX 256

/* --- Cluster: the queue on JetStream (cluster/jsqueue/) ------------------------ */

/* Messages one fetch of a puller asks for at most: enough to fill a node's
 * free instances in a round trip or two. Each fetched message may be
 * SPATE_MESSAGE_MAX, so a fetch holds at most 16 MiB; its records are
 * arrays of this size. Ceiling: what a fetch may hold in memory. */
#define SPATE_JS_FETCH_MAX 64
/* A fetch waits this long (ms) for messages (a long poll), so a puller
 * notices a stop or a change of room at least this often. Ceiling: how long
 * removing a trigger or stopping spated may wait for its pullers. */
#define SPATE_JS_FETCH_WAIT_MS 1000
/* After a fetch failed other than by timing out, a puller waits this long
 * (ms): not a hot loop against a failing server. */
#define SPATE_JS_FETCH_RETRY_MS 250
/* How often (ms) the cluster's streams are listed and a subscription's
 * consumer figures read: what other nodes published or deleted shows within
 * it, and the autoscaler sees the cluster's backlog this fresh. Each look
 * is a JetStream request per stream and per consumer. */
#define SPATE_JS_STATS_MS 1000
/* How often (ms, and up to a second more at random) each node trims from
 * each topic's stream what every trigger has settled, as a node's store
 * deletes it: message by message (cluster/jsqueue/trim.c), WINDOW deletions
 * in flight at a time, each answer awaited up to WAIT ms (a stop waits for
 * the request in flight), at most MAX messages of a stream a round (the rest
 * the next round: a round's length stays bounded). Measured: 40,000 settled
 * messages of a three-node cluster's stream deleted within one round. */
#define SPATE_JS_TRIM_MS 5000
#define SPATE_JS_TRIM_WINDOW 256
#define SPATE_JS_TRIM_WAIT_MS 2000
#define SPATE_JS_TRIM_MAX 100000
/* How long (ms) a read of a topic's stored messages, or an ordered part's
 * look for a message JetStream skipped, waits for the stream's leader to
 * name the next one (cluster/jsqueue/streams.c). */
#define SPATE_JS_LOOKUP_WAIT_MS 2000
/* At most this many messages JetStream skipped (cluster/jsqueue/skipped.c)
 * are published again below one ordered delivery: it forgets one at a leader
 * change, and more means its part's mark is wrong. */
#define SPATE_JS_SKIPPED_MAX 8
/* A consumer's AckWait is the subscription's ack wait (the function's
 * timeout) plus this (ms): time to fetch, start and settle beyond the run.
 * What a dead node held goes to the others after it, so it is also how much
 * later than the timeout that happens. */
#define SPATE_JS_ACK_MARGIN_MS 5000
/* A fetched message runs only this soon after its fetch was asked for (ms):
 * JetStream's AckWait for it began after that, and a run begun by then
 * (the function's timeout at most) ends before the AckWait does, with a
 * second to settle. One older (its node was stopped, or cut off, while it
 * waited in the socket or in the ready list) may be another node's by now:
 * it is dropped, not run (jsqueue/pull.c). */
#define SPATE_JS_DELIVERY_FRESH_MS (SPATE_JS_ACK_MARGIN_MS - 1000)
/* A failed attempt's record or a dead letter that JetStream refuses (no
 * leader for a few seconds after a nats-server went; the cluster's nemesis
 * saw servers healthy again up to 19 s after a fault) is tried again this
 * often (ms), for this long after the first refusal (ms), before its
 * message is handed back. */
#define SPATE_JS_SETTLE_RETRY_MS 250
#define SPATE_JS_SETTLE_RETRY_FOR_MS 30000
/* An ack or term JetStream has not answered within this (ms) is sent again
 * (cluster/jsqueue/confirm.c), this many times while connected; at most
 * SPATE_JS_CONFIRM_MAX wait, the rest are sent unconfirmed. */
#define SPATE_JS_CONFIRM_MS 1000
#define SPATE_JS_CONFIRM_TRIES 60
#define SPATE_JS_CONFIRM_MAX 100000
/* An ordered trigger has a consumer per key part (and one for unkeyed
 * messages): the parts run in parallel, a part's messages one at a time.
 * Keys hash to parts in the subjects (spate.t.<topic>.k00 ...) and the
 * consumers' names, so every node and every existing stream depend on it:
 * not to be changed on a running cluster. Ceiling: 100 (two digits). */
#define SPATE_JS_KEY_PARTS 64
/* Messages a plain trigger's consumer may have delivered and not yet
 * settled, over all nodes (JetStream's MaxAckPending): far above what the
 * instances of a cluster run at once, so room, not this, bounds fetching. */
#define SPATE_JS_ACK_PENDING_MAX 100000
/* Consumers made side by side when a trigger is set up: a replicated
 * consumer takes JetStream ~0.5 s, and an ordered trigger has 65. A thread
 * each, for the set-up only. */
#define SPATE_JS_CONSUMER_MAKERS 8
/* A trigger's consumers are asked for (made, or deleted at its removal)
 * again after a time-out, or while JetStream has no meta leader, until the
 * set-up or removal has taken this long (ms); then it fails with why (503). Under make check's load
 * three 2 s time-outs in a row were seen; the HTTP caller waits, as for any JetStream call. */
#define SPATE_JS_CONSUMER_MAKE_FOR_MS 20000
/* A publish waits this long (ms) for JetStream's acknowledgement of its
 * batch before it fails (nothing acknowledged to the client). */
#define SPATE_JS_PUBLISH_ACK_WAIT_MS 10000
/* A batch is published in parts of this many messages, each a job of the
 * cluster's worker thread: a 16 MiB publish of one-byte lines (8 million
 * messages) held every other publish of its node for minutes (200,000:
 * 10 s). Under nats.c's 4,000 async publishes in flight, past which a
 * publish stalls and then fails. */
#define SPATE_JS_PUBLISH_PART 2048
/* Stored messages one read or redrive takes at most (the API asks for at
 * most 1000). Each may be SPATE_MESSAGE_MAX, and a read holds them all until
 * it is answered. */
#define SPATE_JS_READ_MAX 1024

/* --- Cluster (cluster/) ---------------------------------------------------- */

/* An artifact travels between nodes in chunks of this size, each one message
 * of the artifact stream: well under NATS's default 1 MiB message limit
 * (its ceiling), so a server with default settings carries them. */
#define SPATE_CLUSTER_CHUNK (256u * KIB)
/* An artifact fetched from another node may announce at most this size;
 * a count above it is refused as corrupt. Far above SPATE_ARTIFACT_MAX,
 * which bounds what a deploy can upload. */
#define SPATE_CLUSTER_ARTIFACT_MAX (1024ull * MIB)
/* Nodes a node keeps track of (heartbeats from more are not shown). */
#define SPATE_CLUSTER_NODES_MAX 64
/* Heartbeats go out this often (ms); a node unheard of for
 * SPATE_CLUSTER_NODE_DOWN_MS is down: five missed beats. */
#define SPATE_CLUSTER_HEARTBEAT_MS 1000
#define SPATE_CLUSTER_NODE_DOWN_MS 5000
/* PINGs to the NATS server this often (ms), two unanswered then the
 * connection counts as lost: a silent partition shows within ~6 s, not
 * nats.c's default of minutes. */
#define SPATE_CLUSTER_PING_MS 2000
/* A direct invoke larger than this runs where it arrived: routed ones travel
 * as one NATS message (default limit 1 MiB). */
#define SPATE_CLUSTER_ROUTED_PAYLOAD_MAX (512u * KIB)
/* A registry write is tried this many times, this far apart (ms): half a
 * minute, long enough for JetStream to elect new leaders after a server is
 * lost. */
#define SPATE_CLUSTER_JOB_TRIES 60
#define SPATE_CLUSTER_JOB_RETRY_MS 500
/* How long a message's record of failed attempts outlives it (ns): longer
 * than any retry schedule (SPATE_RETRY_CAP_MS times SPATE_MAX_ATTEMPTS_CEILING
 * is under an hour); one left behind goes by itself. */
#define SPATE_CLUSTER_ATTEMPTS_TTL_NS (7LL * 24 * 3600 * 1000000000)
/* A NATS creds file, NKey seed file, CA bundle, certificate or key given to
 * --cluster-creds / --cluster-tls-*: a creds file is under 2 KiB and a CA
 * bundle of every public root ~200 KiB; a larger file is refused as not
 * one of them. */
#define SPATE_CLUSTER_SECRET_FILE_MAX (1u * MIB)
/* A PEM file for TLS (the listener's certificate, key and client CA; a
 * source's ca, cert and key): a chain or a CA bundle fits well within it;
 * more is a wrong file, refused before OpenSSL reads it all. */
#define SPATE_PEM_FILE_MAX (1u * MIB)
/* A refusal by NATS (permissions) is logged at most once this often (ms):
 * a missing permission refuses every heartbeat, and one line says it. */
#define SPATE_CLUSTER_REFUSED_LOG_MS 10000
/* Leases (cluster/lease.c): what runs on one node of a cluster (schedules,
 * sources without a consumer group) runs where its lease in the registry
 * bucket is held. The holder rewrites it every SPATE_CLUSTER_LEASE_RENEW_MS;
 * another node takes it once its revision has not moved for
 * SPATE_CLUSTER_LEASE_TTL_MS as that node measures (its own clock: no
 * skew between nodes counts). The holder stops acting RENEW before its last
 * renewal is TTL old, so two holders never act at once (a process stalled
 * longer than that aside). TTL is five renewals: a NATS leader election
 * (a few seconds) does not move every lease; a dead holder's leases move
 * within TTL plus a tick. The lease thread looks at them every TICK. */
#define SPATE_CLUSTER_LEASE_TICK_MS 1000
#define SPATE_CLUSTER_LEASE_RENEW_MS 2000
#define SPATE_CLUSTER_LEASE_TTL_MS 10000
/* Leases one node follows: one per schedule and per leased source. */
#define SPATE_CLUSTER_LEASES_MAX 4096
/* A schedule's or a source's registry entry read from the bucket: a
 * schedule with its largest payload, a source with its longest URL, and
 * room for the JSON around them. Larger ones are ignored as corrupt. */
#define SPATE_CLUSTER_ENTRY_MAX (SPATE_SCHEDULE_PAYLOAD_MAX * 6 + 8u * KIB)
/* Copies of each artifact chunk (and count) the artifact stream keeps: with
 * a cluster key, a reader takes the newest copy whose seal holds, so chunks
 * a forger published after the real ones do not hide them (until it has
 * published this many of each). */
#define SPATE_CLUSTER_CHUNK_KEEP 4
/* Refused registry entries and chunks remembered (key and revision) so that
 * each is logged and counted once, however often it is read again. */
#define SPATE_CLUSTER_REFUSED_SLOTS 256
/* Of those, at most this many lines per kind in SPATE_CLUSTER_REFUSED_LOG_MS:
 * a NATS writer publishing entries under new keys wrote one line each in
 * every node's log, as fast as it published. The rest are counted, and the
 * next line logged says how many went unsaid. */
#define SPATE_CLUSTER_REFUSED_LOG_BURST 20
/* A refused message (heartbeat, routed invocation, its answer) is counted
 * each time, logged at most once in this many ms. */
#define SPATE_CLUSTER_REFUSED_LOG_MS 10000
/* With a cluster key, a heartbeat or routed invocation sent longer ago than
 * this (ms, by the sender's clock against the receiver's) is refused: a
 * recorded one cannot be replayed later. Loose, as SigV4's 5 minutes: the
 * nodes' clocks need NTP, not agreement to the second. */
#define SPATE_CLUSTER_MSG_SKEW_MS 300000
/* Routed invocations taken whose seals a node remembers while they are
 * fresh (16 bytes each: 256 KiB), so that a recorded one published again
 * as it was (its answer going to the asker, who has it already) does not
 * run the function again. A seal is looked for in SPATE_CLUSTER_INVOKED_WAYS
 * slots; when all hold fresh ones (more than the slots in
 * SPATE_CLUSTER_MSG_SKEW_MS), the oldest is forgotten. */
#define SPATE_CLUSTER_INVOKED_SLOTS 16384
#define SPATE_CLUSTER_INVOKED_WAYS 8

/* --- Daemon ----------------------------------------------------------------- */

/* Time given to in-flight invocations on SIGTERM before they are cut (ms). */
#define SPATE_SHUTDOWN_GRACE_MS 30000
/* After the grace, what may still take to end (instances killed, zygotes
 * stopped, the store committed) before spated kills what is left and exits
 * anyway (ms): shutdown is bounded whatever a function does. */
#define SPATE_SHUTDOWN_CUT_MS 3000
/* spated's configuration file (--config): a few dozen options fit in a few
 * KiB; anything near this is not one. */
#define SPATE_CONFIG_FILE_MAX (1u * MIB)

/* --- Client (spate) ------------------------------------------------------------ */

/* The most a variables file (--env-file, --secret-file) may hold, comments
 * included: its variables are at most SPATE_ENV_BYTES_MAX, so anything much
 * larger is not one (a FIFO or /dev/zero given by mistake would be read for
 * ever). */
#define SPATE_VARS_FILE_MAX (1024u * KIB)
/* The triggers `spate topics dlq` names for one dead-letter topic; more are
 * not listed. */
#define SPATE_DLQ_TARGETS_SHOWN 16

/* Schedules (schedules/). An expression and a zone are short text; a
 * payload is one message, kept in the registry, so it is kept small. */
#define SPATE_SCHEDULE_EXPR_MAX 255
#define SPATE_SCHEDULE_ZONE_MAX 63
#define SPATE_SCHEDULE_PAYLOAD_MAX (32u * KIB)
/* Runs missed while spated was down that are published at start (the most
 * recent ones; the rest are skipped and counted). One, as anacron does: a
 * job that was due runs once, however long the machine was off, so a daily
 * report after a week away is not sent seven times. --catch-up changes it. */
#define SPATE_SCHEDULE_CATCH_UP_DEFAULT 1
#define SPATE_SCHEDULE_CATCH_UP_CEILING 1000
/* How long a timer waits at most before it looks at the wall clock again
 * (a clock set forward or back is noticed within it). */
#define SPATE_SCHEDULE_TIMER_MAX_MS (60u * 60 * 1000)

/* --- Event sources (src/sources/) ------------------------------------------ */

/* A source's URL, credentials included (the registry keeps it whole). */
#define SPATE_SOURCE_URL_MAX 2048
/* The entry field a source takes the message key from. */
#define SPATE_SOURCE_FIELD_MAX 256
/* Sources one node runs: each is a thread and a connection upstream. */
#define SPATE_SOURCES_MAX 256
/* Entries one fetch takes upstream: one batch, one publish, one commit. */
#define SPATE_SOURCE_BATCH_MAX 256
/* How long a fetch blocks upstream waiting for entries (ms): also how long
 * a removed source may take to notice. */
#define SPATE_SOURCE_WAIT_MS 500
/* How long a fetch waits (ms) while the batch before it is being committed
 * (sources.c fetches one ahead): 0, only what is there already, so that
 * batch's ack does not wait for the upstream's next entry. */
#define SPATE_SOURCE_AHEAD_WAIT_MS 0
/* Connecting and every command but the blocking fetch (ms). */
#define SPATE_SOURCE_IO_TIMEOUT_MS 5000
/* Back-off after an error upstream or a refused publish: doubling from the
 * base to the cap (ms). */
#define SPATE_SOURCE_BACKOFF_BASE_MS 200
#define SPATE_SOURCE_BACKOFF_CAP_MS 10000
/* Entries pending with another consumer of the group this long (ms) are
 * taken for a dead consumer's and claimed (Redis XAUTOCLAIM), checked this
 * often (ms). */
#define SPATE_SOURCE_CLAIM_IDLE_MS 60000
#define SPATE_SOURCE_CLAIM_EVERY_MS 15000
/* Redis: a stream id's time part below this (2000-01-01, epoch ms) is not
 * a time (an explicit id such as 1-0): the entry has no upstream time. */
#define SPATE_SOURCE_REDIS_TS_MIN_MS 946684800000LL
/* An upstream entry's headers, as the JSON object kept with the message:
 * over it the entry is refused (dead-lettered), never cut. */
#define SPATE_SOURCE_HEADERS_MAX (8u * KIB)
/* An upstream id kept as a message's attribute (ids upstream are short: a
 * Redis stream id is at most 41 bytes); a longer one is not kept, so that
 * the attributes always fit an invocation frame's room for metadata
 * (SPATE_FRAME_MAX). */
#define SPATE_SOURCE_UPSTREAM_ID_MAX 1024
/* How often the upstream lag is asked for (ms). */
#define SPATE_SOURCE_LAG_EVERY_MS 2000
/* AMQP (sources/amqp.c). The prefetch (basic.qos) bounds the deliveries
 * the broker sends before an ack: what sits unacked in the client while a
 * batch is committed. The default is four batches: one committing, one
 * fetched ahead (sources.c) and two more the broker streams meanwhile
 * (unread, they wait in the socket's buffer; two gave 0.56x a bare consumer,
 * four 0.80x, bench/sources-amqp); the ceiling keeps a URL's ?prefetch= from making the client hold
 * more than a few batches of the largest messages in memory. */
#define SPATE_SOURCE_AMQP_PREFETCH_DEFAULT (4 * SPATE_SOURCE_BATCH_MAX)
#define SPATE_SOURCE_AMQP_PREFETCH_MAX 4096
/* The largest frame asked for at login: a message's body comes in frames of
 * at most this, and only one frame of a message over the topic's maximum is
 * held at a time (it is counted, not kept). */
#define SPATE_SOURCE_AMQP_FRAME_MAX (128u * KIB)
/* Heartbeat asked for (s): a broker gone silent (a cut network) is noticed
 * within about two of them. A batch whose commit takes longer than that
 * loses the connection: its deliveries come again (at least once). */
#define SPATE_SOURCE_AMQP_HEARTBEAT_S 30
/* Once a fetch has a delivery, how long it waits for the next one (ms)
 * before it hands over what it has: a stream that pauses does not hold a
 * batch back for the whole fetch wait. */
#define SPATE_SOURCE_AMQP_LINGER_MS 5
/* MQTT: the Receive Maximum a source asks of the broker (MQTT 5), i.e. how
 * many QoS 1 messages it may send before a PUBACK. libmosquitto PUBACKs a
 * message as it reads it, so what this bounds is what waits unread in the
 * socket (safe: not acknowledged); a batch's worth, so that the next batch
 * is there when a commit is done. What was read and not yet committed is
 * the one batch a fetch holds (SPATE_SOURCE_BATCH_MAX): the most a crash of
 * spated can lose. At most 65535 (MQTT). */
#define SPATE_SOURCE_MQTT_RECEIVE_MAX 256
/* MQTT: once a fetch has messages, how long (ms) it waits for one more
 * before handing the batch over (the batch fills while they keep coming,
 * up to SPATE_SOURCE_WAIT_MS). A latency of a few ms at low rates for whole
 * batches (one commit each) at high ones. */
#define SPATE_SOURCE_MQTT_LINGER_MS 2
/* MQTT keep-alive (s): PINGREQ goes from the fetch's network loop, so it
 * must outlast a slow publish into the topic (the broker drops a client
 * silent for 1.5 times this). */
#define SPATE_SOURCE_MQTT_KEEPALIVE_S 60
/* MQTT 5 Session Expiry Interval (s) the source asks: the broker keeps the
 * session, and queues QoS 1 messages for it, this long while spated is
 * down (a week). */
#define SPATE_SOURCE_MQTT_SESSION_S (7 * 24 * 3600)
/* A message's attributes as Runtime API header lines (/next of an exec
 * function): the answer's head is 1 KiB (http/server) and the Lambda
 * headers take about 300 bytes. Over it the upstream headers' line, then the
 * upstream id's, is left out and a Spate-...-Omitted line says so. */
#define SPATE_EXEC_ATTR_HEADERS_MAX 600
/* NATS (sources/nats.c). A subject in a source's URL (the server's own
 * limit is larger; this one keeps log lines and status readable). */
#define SPATE_SOURCE_NATS_SUBJECT_MAX 256
/* JetStream: how long the server waits for an ack before it delivers a
 * message again (s; ack_wait=S in the URL, up to the max). A fetched batch
 * is acked once committed, which takes far less unless the store refuses;
 * then a redelivery is a duplicate, never a loss. */
#define SPATE_SOURCE_NATS_ACK_WAIT_S 30
#define SPATE_SOURCE_NATS_ACK_WAIT_MAX_S 3600
/* JetStream: unacknowledged messages the durable consumer may have out at
 * once, all nodes together: two batches per node (one published, the next
 * pulled meanwhile), with room for 8 nodes (or a dead node's batches
 * waiting for their ack wait). Beyond it the server holds the rest. */
#define SPATE_SOURCE_NATS_ACK_PENDING (16 * SPATE_SOURCE_BATCH_MAX)
/* Core NATS: messages (and bytes) the library buffers for a subscription
 * before the source fetches them; beyond, it drops them (a slow consumer,
 * counted as the source's "dropped"): at most once, the bound is what a
 * crash or a slow topic can lose. */
#define SPATE_SOURCE_NATS_PENDING_MSGS 16384
#define SPATE_SOURCE_NATS_PENDING_BYTES (16 * 1024 * 1024)

/* Kafka (sources/kafka.c): what librdkafka may prefetch beyond the batch in
 * flight, in KiB for the consumer (queued.max.messages.kbytes; overshot by
 * at most one fetch, 1 MiB a partition) and in messages a partition
 * (queued.min.messages): an unacked backlog in the client stays within
 * about 16 MiB plus a fetch per assigned partition, whatever the topic
 * holds. Not smaller: librdkafka 2.0 stops fetching a partition whose queue
 * is over the bound for about a second, so the bound is also the most a
 * partition yields a second (4 MiB and 10,000 made it ~20,000 messages/s
 * over 3 partitions in bench/sources-kafka). */
#define SPATE_SOURCE_KAFKA_QUEUE_KB 16384
#define SPATE_SOURCE_KAFKA_QUEUE_MSGS 50000
/* The consumer group's session timeout a kafka:// URL may ask for (ms,
 * session_timeout_ms): how long the group waits for a dead node before its
 * partitions go to the others. Default: librdkafka's (45 s). */
#define SPATE_SOURCE_KAFKA_SESSION_MIN_MS 1000
#define SPATE_SOURCE_KAFKA_SESSION_MAX_MS 300000
/* How long a Kafka source's consumer may take to leave its group when it
 * stops (ms): past it, it is closed without (the group then waits for its
 * session timeout). */
#define SPATE_SOURCE_KAFKA_CLOSE_MS 3000
/* Brokers one kafka:// URL may list. */
#define SPATE_SOURCE_KAFKA_BROKERS_MAX 32

/* --- Amazon SQS (api/sqs.c) ------------------------------------------------ */

/* One SQS request's body: a batch's 256 KiB of messages, which the JSON
 * protocol may write as \uXXXX escapes (at most 6 bytes for each byte of
 * text: a tab or a newline escaped), with room for the rest. Before
 * authentication a request gets the small limit. */
#define SPATE_SQS_BODY_MAX (2u * MIB)
/* SQS's own limits: a message (and a batch's messages together), entries of
 * a batch, a queue name's and a batch entry id's length, the visibility
 * timeout (12 h) and a long poll (s). */
#define SPATE_SQS_MESSAGE_MAX (256u * KIB)
#define SPATE_SQS_BATCH_MAX 10
#define SPATE_SQS_NAME_MAX 80
#define SPATE_SQS_VISIBILITY_MAX 43200
#define SPATE_SQS_WAIT_MAX 20
/* DelaySeconds, of a queue or a message (SQS's limit). */
#define SPATE_SQS_DELAY_MAX 900
/* MessageRetentionPeriod, seconds (SQS's limits; its default is in
 * sched/triggers.h TRIGGERS_RETENTION_DEFAULT_S). */
#define SPATE_SQS_RETENTION_MIN 60
#define SPATE_SQS_RETENTION_MAX 1209600
/* A FIFO message's MessageGroupId and MessageDeduplicationId, and how long
 * (and how many) deduplication ids are remembered (SQS's 5 minutes). */
#define SPATE_SQS_FIFO_ID_MAX 128
#define SPATE_SQS_DEDUP_WINDOW_MS (5 * 60 * 1000)
#define SPATE_SQS_DEDUP_MAX 100000
/* Cluster mode: how long a ReceiveMessage that finds nothing here waits for
 * the fetch from JetStream it asked for, even a short poll (WaitTimeSeconds
 * 0): a little more than a fetch's wait (SPATE_JS_FETCH_WAIT_MS). */
#define SPATE_SQS_CLUSTER_POLL_MS 1500
/* Cluster mode: a received message is told held to JetStream every queue's
 * VisibilityTimeout, and no more often than this (a queue's timeout of 0). */
#define SPATE_SQS_TOUCH_MIN_MS 1000
/* Message attributes: at most this many a message, names (and data types)
 * at most this long (SQS's limits; their bytes count in the message's). */
#define SPATE_SQS_ATTRS_MAX 10
#define SPATE_SQS_ATTR_NAME_MAX 256
/* The visibility timeout of a queue created without one (SQS's default). */
#define SPATE_SQS_VISIBILITY_DEFAULT 30
/* A receipt handle longer than this is not one of ours. */
#define SPATE_SQS_HANDLE_MAX 128
/* A function sending to the queue that triggered it (or to one whose
 * function sends back) loops without end: as Lambda's recursive loop
 * detection, a message sent by a chain of this many triggered invocations
 * is not run (common/lambda.h LAMBDA_SQS_LINEAGE_ATTR). */
#define SPATE_SQS_LOOP_MAX 16

#endif /* SPATE_LIMITS_H */
