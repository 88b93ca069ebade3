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

/* --- Functions ----------------------------------------------------------- */

/* Function names: [A-Za-z0-9][A-Za-z0-9_-]*, this many bytes at most. */
#define SPATE_NAME_MAX 64
/* Topic names also allow '.', for "TOPIC.dlq". */
#define SPATE_TOPIC_NAME_MAX 128
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
 * so the CPU is shared fairly between functions (runtime/isolate.c). */
#define SPATE_CPU_DEFAULT_MILLIS 0
/* Size of an instance's private /tmp and /dev/shm (deploy tmp=), MB: Lambda's
 * default ephemeral storage. Its pages count against the instance's memory. */
#define SPATE_TMP_DEFAULT_MB 512
#define SPATE_TMP_FLOOR_MB 1
#define SPATE_TMP_CEILING_MB 10240 /* Lambda's ceiling */
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
 * (fn=...) within the log's line length, even once control characters are
 * escaped (4 bytes each). */
#define SPATE_LOG_QUOTE_MAX 300
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
/* The autoscaler looks again at least this often (ms), besides reacting to
 * publishes and completions at once. */
#define SPATE_AUTOSCALE_TICK_MS 50
/* How often topics no trigger reads are held to their retention (a topic
 * goes over its limits by at most this much time's publishes). */
#define SPATE_RETENTION_TICK_MS 1000
/* Instances on one node (default: one per 16 MiB of memory, within these). */
#define SPATE_NODE_INSTANCES_FLOOR 64
#define SPATE_NODE_INSTANCES_CEILING 10000

/* --- Exec artifacts ------------------------------------------------------- */

/* An archive may hold at most this many entries and unpack to at most this
 * many bytes; beyond, it is refused (archive bombs). */
#define SPATE_ARCHIVE_ENTRIES_MAX 10000
#define SPATE_ARCHIVE_BYTES_MAX (512u * MIB)

/* --- Runtime --------------------------------------------------------------- */

/* One frame between spated and an instance: the largest payload or response
 * plus room for the invocation's metadata. */
#define SPATE_FRAME_MAX (SPATE_INVOKE_PAYLOAD_MAX + 64u * KIB)
/* A zygote must have loaded its object and run spate_preload within this (ms). */
#define SPATE_ZYGOTE_LOAD_TIMEOUT_MS 10000
/* An instance must have run spate_init and said it is ready within this (ms). */
#define SPATE_INSTANCE_INIT_TIMEOUT_MS 10000
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
/* Instances of a function that keep failing (a crash, a timeout, a limit)
 * are restarted after a pause, so that a crash loop cannot keep the CPUs
 * busy with cold starts: the first SPATE_CRASH_FREE failures in a row
 * restart at once, the next after 25 ms doubling to 1 s, until one succeeds. */
#define SPATE_CRASH_FREE 3
#define SPATE_CRASH_BACKOFF_BASE_MS 25
#define SPATE_CRASH_BACKOFF_CAP_MS 1000
/* Zygote restarts after a crash are spaced at least this far apart (ms). */
#define SPATE_ZYGOTE_RESTART_BACKOFF_MS 1000
/* A zygote reports an instance it forked (SPAWNED) or reaped (EXITED) within
 * microseconds; one silent for this long (ms) after spated needs the report
 * is lying or stuck, and is treated as broken. */
#define SPATE_ZYGOTE_REPORT_MS 2000
/* Processes a version's zygote cgroup holds beyond --pids-max: instances pass
 * through it between their fork and joining their own cgroups. */
#define SPATE_ZYGOTE_PIDS_HEADROOM 256
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

/* --- Daemon ----------------------------------------------------------------- */

/* Time given to in-flight invocations on SIGTERM before they are cut (ms). */
#define SPATE_SHUTDOWN_GRACE_MS 30000
/* After the grace, what may still take to end (instances killed, zygotes
 * stopped, the store committed) before spated kills what is left and exits
 * anyway (ms): shutdown is bounded whatever a function does. */
#define SPATE_SHUTDOWN_CUT_MS 3000

#endif /* SPATE_LIMITS_H */
