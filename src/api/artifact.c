#include "api/artifact.h"

#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"

enum kind {
    K_UNKNOWN,
    K_SHARED_OBJECT, /* ELF ET_DYN, no interpreter, not marked PIE: a library */
    K_EXECUTABLE,    /* ELF ET_EXEC, or ET_DYN marked PIE */
    K_SCRIPT,        /* #! */
    K_ZIP,
    K_TAR,
    K_COMPRESSED, /* gzip, bzip2, xz, zstd: a compressed tar, most likely */
};

/* An unsigned field of size n at off, in the file's byte order (little
 * endian: the hosts spate runs on); 0 when past the end. */
static uint64_t field(const uint8_t *d, size_t len, uint64_t off, unsigned n)
{
    if (off > len || n > len - off) return 0;
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)d[off + i] << (8 * i);
    return v;
}

/* An ELF file: a library, an executable, or unknown (another type, byte
 * order, or a header that does not hold together). A position-independent
 * executable is ET_DYN too: it has an interpreter (PT_INTERP) or, static,
 * DF_1_PIE in its dynamic section; a shared object has neither. */
static enum kind elf_kind(const uint8_t *d, size_t len)
{
    if (len < EI_NIDENT || d[EI_DATA] != ELFDATA2LSB) return K_UNKNOWN;
    int is64 = d[EI_CLASS] == ELFCLASS64;
    if (!is64 && d[EI_CLASS] != ELFCLASS32) return K_UNKNOWN;
    uint64_t type = field(d, len, 16, 2);
    if (type == ET_EXEC) return K_EXECUTABLE;
    if (type != ET_DYN) return K_UNKNOWN;
    uint64_t phoff = is64 ? field(d, len, 32, 8) : field(d, len, 28, 4);
    uint64_t phentsize = field(d, len, is64 ? 54 : 42, 2);
    uint64_t phnum = field(d, len, is64 ? 56 : 44, 2);
    if (!phoff || phentsize < (is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr))) return K_UNKNOWN;
    uint64_t dyn_off = 0, dyn_size = 0;
    for (uint64_t i = 0; i < phnum; i++) {
        uint64_t ph = phoff + i * phentsize;
        if (ph > len || phentsize > len - ph) return K_UNKNOWN;
        uint64_t ptype = field(d, len, ph, 4);
        if (ptype == PT_INTERP) return K_EXECUTABLE;
        if (ptype == PT_DYNAMIC) {
            dyn_off = is64 ? field(d, len, ph + 8, 8) : field(d, len, ph + 4, 4);
            dyn_size = is64 ? field(d, len, ph + 32, 8) : field(d, len, ph + 16, 4);
        }
    }
    unsigned word = is64 ? 8 : 4;
    for (uint64_t at = dyn_off; dyn_off && at + 2 * word <= dyn_off + dyn_size; at += 2 * word) {
        if (at > len || 2 * word > len - at) return K_UNKNOWN; /* cut short: say nothing */
        uint64_t tag = field(d, len, at, word);
        if (tag == DT_NULL) break;
        if (tag == DT_FLAGS_1 && (field(d, len, at + word, word) & DF_1_PIE)) return K_EXECUTABLE;
    }
    return K_SHARED_OBJECT;
}

static enum kind kind_of(const uint8_t *d, size_t len)
{
    if (len >= 4 && memcmp(d,
                           "\x7f"
                           "ELF",
                           4) == 0)
        return elf_kind(d, len);
    if (len >= 2 && memcmp(d, "#!", 2) == 0) return K_SCRIPT;
    if (len >= 4 && (memcmp(d, "PK\x03\x04", 4) == 0 || memcmp(d, "PK\x05\x06", 4) == 0))
        return K_ZIP;
    if (len >= 262 && memcmp(d + 257, "ustar", 5) == 0) return K_TAR;
    if ((len >= 2 && d[0] == 0x1f && d[1] == 0x8b) || (len >= 3 && memcmp(d, "BZh", 3) == 0) ||
        (len >= 6 && memcmp(d,
                            "\xfd"
                            "7zXZ\x00",
                            6) == 0) ||
        (len >= 4 && memcmp(d, "\x28\xb5\x2f\xfd", 4) == 0))
        return K_COMPRESSED;
    return K_UNKNOWN;
}

int api_artifact_check(const void *data, size_t len, enum fn_runtime rt, char *why, size_t cap)
{
    static const char *const names[] = {
        [K_EXECUTABLE] = "an executable",
        [K_SCRIPT] = "a script",
        [K_ZIP] = "a zip archive",
        [K_TAR] = "a tar archive",
        [K_COMPRESSED] = "a compressed archive",
    };
    enum kind k = kind_of(data, len);
    if (rt == RUNTIME_NATIVE && k != K_UNKNOWN && k != K_SHARED_OBJECT) {
        snprintf(why, cap,
                 "the artifact is %s, not a shared object: runtime native loads a shared object "
                 "(.so); an executable, or an archive with a bootstrap at its root, runs with "
                 "runtime=exec (use --runtime exec)",
                 names[k]);
        return ERR_INVAL;
    }
    if (fnconfig_runtime_is_managed(rt) && (k == K_EXECUTABLE || k == K_SHARED_OBJECT)) {
        snprintf(why, cap,
                 "the artifact is an ELF file, not %s code: runtime %s runs a source file or a "
                 "zip archive with the handler's module at its root (an executable runs with "
                 "runtime=exec)",
                 rt == RUNTIME_PYTHON3 ? "Python" : "JavaScript", fnconfig_runtime_name(rt));
        return ERR_INVAL;
    }
    if (rt == RUNTIME_EXEC && k == K_SHARED_OBJECT) {
        snprintf(why, cap,
                 "the artifact is a shared object (an ELF library without an interpreter), "
                 "which cannot run as a bootstrap: runtime exec runs an executable, or an archive "
                 "with a bootstrap at its root; a shared object runs with runtime=native (use "
                 "--runtime native)");
        return ERR_INVAL;
    }
    return 0;
}

/* The extensions of a runtime's source files. */
static int source_extension(enum fn_runtime rt, const char *file)
{
    const char *dot = strrchr(file, '.');
    if (!dot) return 0;
    if (rt == RUNTIME_PYTHON3) return strcmp(dot, ".py") == 0;
    return strcmp(dot, ".js") == 0 || strcmp(dot, ".mjs") == 0 || strcmp(dot, ".cjs") == 0;
}

static int source_name_ok(const char *file)
{
    size_t n = strlen(file);
    if (n == 0 || n > API_SOURCE_NAME_MAX || file[0] == '/' || file[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = file[i];
        int plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
        /* No component may start with '.': no "..", no hidden file. */
        if (ch == '/' && (i + 1 == n || file[i + 1] == '.' || file[i + 1] == '/')) return 0;
        if (!plain && ch != '/') return 0;
    }
    return 1;
}

int api_artifact_wrap_source(buf *body, enum fn_runtime rt, const char *file, char *why, size_t cap)
{
    enum kind k = kind_of((const uint8_t *)body->data, body->len);
    if (k == K_ZIP || k == K_TAR || k == K_COMPRESSED) return 0;
    if (!source_name_ok(file) || !source_extension(rt, file)) {
        snprintf(why, cap,
                 "the source file name '%.64s' is not a relative name of letters, digits, '_', "
                 "'-' and '.' ending in %s",
                 file, rt == RUNTIME_PYTHON3 ? ".py" : ".js, .mjs or .cjs");
        return ERR_INVAL;
    }
    /* One ustar entry, its data padded to 512 bytes, then two zero blocks;
     * the mtime is 0 so that the same source hashes the same. */
    size_t padded = (body->len + 511) / 512 * 512;
    buf tar;
    buf_init(&tar, 512 + padded + 1024);
    if (buf_reserve(&tar, 512 + padded + 1024) != 0) return ERR_NOMEM;
    char *h = tar.data;
    memset(h, 0, 512 + padded + 1024);
    snprintf(h, 100, "%s", file);
    memcpy(h + 100, "0000644", 7);
    memcpy(h + 108, "0000000", 7);
    memcpy(h + 116, "0000000", 7);
    snprintf(h + 124, 12, "%011llo", (unsigned long long)body->len);
    memcpy(h + 136, "00000000000", 11);
    memset(h + 148, ' ', 8);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    h[155] = ' ';
    memcpy(h + 512, body->data, body->len);
    tar.len = 512 + padded + 1024;
    buf_free(body);
    buf_move(body, &tar);
    return 0;
}

int api_artifact_prepare(buf *body, const fn_config *cfg, const char *file, char *why, size_t cap)
{
    if (body->len == 0) {
        snprintf(why, cap, "the artifact is empty");
        return ERR_INVAL;
    }
    int rc = api_artifact_check(body->data, body->len, cfg->runtime, why, cap);
    if (rc != 0 || !fnconfig_runtime_is_managed(cfg->runtime)) return rc;
    char name[API_SOURCE_NAME_MAX + 1];
    const char *dot = strrchr(cfg->handler, '.');
    if (file[0])
        snprintf(name, sizeof name, "%s", file);
    else /* fnconfig_check made sure a managed runtime's handler has its '.' */
        snprintf(name, sizeof name, "%.*s%s", dot ? (int)(dot - cfg->handler) : 0, cfg->handler,
                 cfg->runtime == RUNTIME_PYTHON3 ? ".py" : ".js");
    return api_artifact_wrap_source(body, cfg->runtime, name, why, cap);
}
