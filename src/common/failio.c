/* failio.c - the I/O-error injection of failio.h (built in with
 * SPATE_FAILPOINTS only). */
#ifdef SPATE_FAILPOINTS

#include "common/failio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#define PATH_MAX_ 1024

typedef struct rule {
    int op;        /* enum failio_op, or -1 for "full" (a write) */
    int file;      /* enum failio_file, or -1 for any */
    uint64_t left; /* COUNT given: failures left */
    int counted;
    int said;
} rule;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char path[PATH_MAX_];
static atomic_int enabled;
static atomic_uint_fast64_t fired;
static int64_t checked_ms; /* under mu */
static struct stat seen;   /* under mu: what was read last (st_ino 0: nothing) */
static rule rules[FAILIO_RULES_MAX];
static int nrules;

static void say(const char *fmt, const char *a, const char *b)
{
    char msg[256];
    int len = snprintf(msg, sizeof msg, fmt, a, b);
    if (len > (int)sizeof msg - 1) len = (int)sizeof msg - 1;
    if (len > 0 && write(STDERR_FILENO, msg, (size_t)len) < 0) {
        /* Nowhere else to say it. */
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const op_names[] = {"read", "write", "sync", "rename"};
static const char *const file_names[] = {"db", "wal", "journal", "artifact", "other"};

static int lookup(const char *const *names, int n, const char *word)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], word) == 0) return i;
    return -2;
}

/* Parses the control file's text into rules (under mu). */
static void parse(char *text)
{
    nrules = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char op[16], file[16], extra[8];
        unsigned long long count = 0;
        int n = sscanf(line, "%15s %15s %llu %7s", op, file, &count, extra);
        if (n <= 0) continue;
        rule r = {0};
        r.op = strcmp(op, "full") == 0 ? -1 : lookup(op_names, 4, op);
        r.file = strcmp(file, "any") == 0 ? -1 : lookup(file_names, 4, file);
        if (n < 2 || n > 3 || r.op == -2 || r.file == -2) {
            say("failio: ignored the line '%s'%s: want OP FILE [COUNT]\n", line, "");
            continue;
        }
        if (nrules == FAILIO_RULES_MAX) {
            say("failio: more than %s rules; the rest ignored%s\n", "16", "");
            break;
        }
        r.counted = n == 3 && count > 0;
        r.left = count;
        rules[nrules++] = r;
    }
}

/* Reads the control file again when it changed (under mu). */
static void reload(void)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (seen.st_ino) nrules = 0;
        memset(&seen, 0, sizeof seen);
        return;
    }
    if (st.st_ino == seen.st_ino && st.st_size == seen.st_size &&
        st.st_mtim.tv_sec == seen.st_mtim.tv_sec && st.st_mtim.tv_nsec == seen.st_mtim.tv_nsec)
        return;
    seen = st;
    char text[FAILIO_FILE_MAX + 1];
    ssize_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, text, FAILIO_FILE_MAX);
        close(fd);
    }
    if (n < 0) n = 0;
    if (st.st_size > FAILIO_FILE_MAX)
        say("failio: '%s' is longer than 4096 bytes: the rest is ignored%s\n", path, "");
    text[n] = '\0';
    parse(text);
}

int failio_check(enum failio_op op, enum failio_file file)
{
    if (!atomic_load_explicit(&enabled, memory_order_relaxed)) return FAILIO_PASS;
    int result = FAILIO_PASS;
    pthread_mutex_lock(&mu);
    int64_t now = mono_ms();
    if (now - checked_ms >= FAILIO_RECHECK_MS) {
        checked_ms = now;
        reload();
    }
    for (int i = 0; i < nrules && !result; i++) {
        rule *r = &rules[i];
        int op_matches = r->op == -1 ? op == FAILIO_WRITE : r->op == (int)op;
        if (!op_matches || (r->file != -1 && r->file != (int)file)) continue;
        if (r->counted) {
            if (r->left == 0) continue;
            r->left--;
        }
        result = r->op == -1 ? FAILIO_FULL : FAILIO_EIO;
        if (!r->said) {
            r->said = 1;
            say("failio: injected: %s %s\n", r->op == -1 ? "full" : op_names[r->op],
                r->file == -1 ? "any" : file_names[r->file]);
        }
    }
    pthread_mutex_unlock(&mu);
    if (result) atomic_fetch_add(&fired, 1);
    return result;
}

void failio_watch(const char *p)
{
    pthread_mutex_lock(&mu);
    atomic_store(&enabled, 0);
    nrules = 0;
    memset(&seen, 0, sizeof seen);
    checked_ms = 0;
    if (p && *p) {
        snprintf(path, sizeof path, "%s", p);
        reload();
        checked_ms = mono_ms();
        atomic_store(&enabled, 1);
    }
    pthread_mutex_unlock(&mu);
}

int failio_enabled(void)
{
    return atomic_load(&enabled);
}

uint64_t failio_fired(void)
{
    return atomic_load(&fired);
}

int failio_init_env(void)
{
    const char *p = getenv("SPATE_FAIL_IO");
    int set = p && *p;
    if (set) {
        if (strlen(p) >= PATH_MAX_ - 1) {
            say("failio: SPATE_FAIL_IO is longer than %s bytes: not armed%s\n", "1022", "");
            set = 0;
        } else {
            failio_watch(p);
            say("failio: armed: the control file is '%s'%s\n", p, "");
        }
    }
    unsetenv("SPATE_FAIL_IO");
    return set;
}

#else
/* ISO C wants something in a translation unit. */
typedef int failio_not_built;
#endif
