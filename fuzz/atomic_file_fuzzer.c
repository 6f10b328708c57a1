/*
 * atomic_file_fuzzer: the crash-safe save (codec/src/atomic_file.c, behind every sqkv_writer_save) under
 * fuzzer-chosen paths, existing targets, fill outcomes and injected system-call failures.
 *
 * Fault injection: this file defines open, fsync, close and rename. The fuzzer binary is linked
 * statically against the codec, so atomic_file.c's calls bind to these definitions; they pass through to
 * the kernel (syscall(2)) except while a case is armed, when the n-th call of a kind may fail with a
 * fuzzer-chosen errno instead. Linux semantics are kept: a failed close still closes the descriptor.
 *
 * Oracle (besides ASan/UBSan/LSan), from the contract in atomic_file.h:
 *   - an empty path or one ending in '/' gives INVALID_ARGUMENT before any system call;
 *   - every temporary file is named "<path>.tmp.<16 lowercase hex digits>" and none is left behind;
 *   - no file descriptor leaks;
 *   - before the rename succeeds, the target is exactly as it was (absent, old bytes, a directory, a
 *     link and the file it points to); after it, the target holds exactly the filled bytes;
 *   - the result is OK exactly when the fill succeeded and no fault other than a retried one (EINTR on
 *     fsync, EEXIST or EINTR on fewer than 16 temporary-file creations, any on /dev/urandom, EINVAL on
 *     the directory fsync) hit; a failing fill's own error and message come back unchanged; other
 *     failures are SQKV_ERR_IO with a message; a failure after the rename (directory open or fsync) is
 *     SQKV_ERR_IO with the new file in place;
 *   - on failure the message is a NUL-terminated string inside detail_size bytes (the buffer is allocated
 *     at exactly that size, so ASan sees any overrun).
 * The sandbox is a per-process directory on tmpfs (/dev/shm) when it exists: fsync is cheap there. It
 * is removed at exit (kept after a crash, for the post-mortem). SQKV_FUZZ_DEBUG=1 prints each fault.
 */
#define _GNU_SOURCE /* syscall(2) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "atomic_file.h"
#include "fuzz_common.h"

/* ---- fault injection ----------------------------------------------------------------------------- */

enum { CALL_OPEN_RANDOM, CALL_OPEN_TEMP, CALL_OPEN_DIR, CALL_FSYNC_FILE, CALL_FSYNC_DIR, CALL_CLOSE, CALL_RENAME,
       CALL_KINDS };
#define MAX_FAULTS 4

typedef struct fault {
    int kind;
    unsigned nth; /* fail the nth call of this kind (0-based) */
    int errnum;
} fault;

static struct {
    int armed;
    unsigned calls[CALL_KINDS];
    fault faults[MAX_FAULTS];
    unsigned n_faults;
    int rename_done;      /* the kernel renamed the temporary file over the target */
    const char *path;     /* the target, for the temporary file's name */
    int dir_fd;           /* the last directory opened through open() while armed */
    int temp_fd;          /* the temporary file */
    int fatal_fault;      /* a fault that must make the save fail */
    int bad_temp_name;    /* a temporary file name that breaks the contract */
    unsigned temp_failures; /* creations that failed with EEXIST or EINTR (retried by the saver) */
} fi;

static int injected(int kind) {
    if (!fi.armed) return 0;
    const unsigned n = fi.calls[kind]++;
    for (unsigned i = 0; i < fi.n_faults; i++) {
        if (fi.faults[i].kind == kind && fi.faults[i].nth == n) {
            if (getenv("SQKV_FUZZ_DEBUG")) fprintf(stderr, "inject call kind %d, call %u: errno %d\n", kind, n,
                                                   fi.faults[i].errnum);
            errno = fi.faults[i].errnum;
            return 1;
        }
    }
    return 0;
}

static int is_temp_name(const char *path) { return strstr(path, ".tmp.") != NULL; }

/* "<target>.tmp.<16 lowercase hex digits>", nothing else. */
static int is_contract_temp_name(const char *name, const char *target) {
    const size_t n = strlen(target);
    if (strncmp(name, target, n) != 0 || strncmp(name + n, ".tmp.", 5) != 0) return 0;
    const char *hex = name + n + 5;
    for (int i = 0; i < 16; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'))) return 0;
    return hex[16] == '\0';
}

int open(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (fi.armed) {
        const int kind = strcmp(path, "/dev/urandom") == 0 ? CALL_OPEN_RANDOM
                         : is_temp_name(path)              ? CALL_OPEN_TEMP
                                                           : CALL_OPEN_DIR;
        if (kind == CALL_OPEN_TEMP && !is_contract_temp_name(path, fi.path)) fi.bad_temp_name = 1;
        if (injected(kind)) {
            if (kind == CALL_OPEN_TEMP) {
                if (errno == EEXIST || errno == EINTR) fi.temp_failures++;
                else fi.fatal_fault = 1;
            } else if (kind == CALL_OPEN_DIR) {
                fi.fatal_fault = 1;
            }
            return -1;
        }
    }
    const int fd = (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
    if (fi.armed && fd >= 0 && !(flags & O_CREAT) && strcmp(path, "/dev/urandom") != 0) fi.dir_fd = fd;
    if (fi.armed && fd >= 0 && (flags & O_CREAT)) fi.temp_fd = fd;
    return fd;
}

int fsync(int fd) {
    const int kind = fi.armed && fd == fi.dir_fd ? CALL_FSYNC_DIR : CALL_FSYNC_FILE;
    if (injected(kind)) {
        if (errno != EINTR && !(kind == CALL_FSYNC_DIR && errno == EINVAL)) fi.fatal_fault = 1;
        return -1;
    }
    return (int)syscall(SYS_fsync, fd);
}

int close(int fd) {
    const int fail = injected(CALL_CLOSE);
    const int saved = errno;
    const int rc = (int)syscall(SYS_close, fd); /* Linux: the descriptor is gone even when close fails */
    const int was_temp = fi.armed && fd == fi.temp_fd;
    if (was_temp) fi.temp_fd = -1; /* the number is free for the directory's descriptor */
    if (fi.armed && fd == fi.dir_fd) fi.dir_fd = -1;
    if (fail) {
        /* A failing close of the temporary file must fail the save; of /dev/urandom or the directory,
         * it is harmless (atomic_file.c ignores those results). */
        if (was_temp) fi.fatal_fault = 1;
        errno = saved;
        return -1;
    }
    return rc;
}

int rename(const char *from, const char *to) {
    if (injected(CALL_RENAME)) {
        fi.fatal_fault = 1;
        return -1;
    }
    const int rc = (int)syscall(SYS_renameat, AT_FDCWD, from, AT_FDCWD, to);
    if (fi.armed && rc == 0) fi.rename_done = 1;
    return rc;
}

/* ---- the sandbox ----------------------------------------------------------------------------------- */

static char sandbox[256];

static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        FUZZ_CHECK(d != NULL, "opendir %s: %s", path, strerror(errno));
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char child[1024];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        closedir(d);
        FUZZ_CHECK(rmdir(path) == 0, "rmdir %s: %s", path, strerror(errno));
    } else {
        FUZZ_CHECK(unlink(path) == 0, "unlink %s: %s", path, strerror(errno));
    }
}

static void remove_sandbox(void) { remove_tree(sandbox); }

static void make_sandbox(void) {
    if (sandbox[0]) return;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(sandbox, sizeof sandbox, "%s/sqkv-atomic-fuzz-%ld", base, (long)getpid());
    remove_tree(sandbox);
    FUZZ_CHECK(mkdir(sandbox, 0777) == 0, "mkdir %s: %s", sandbox, strerror(errno));
    atexit(remove_sandbox);
}

static void clear_sandbox(void) {
    DIR *d = opendir(sandbox);
    FUZZ_CHECK(d != NULL, "opendir %s: %s", sandbox, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char child[1024];
        snprintf(child, sizeof child, "%s/%s", sandbox, e->d_name);
        remove_tree(child);
    }
    closedir(d);
}

static void write_whole(const char *path, const uint8_t *bytes, size_t size) {
    const int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    FUZZ_CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
    FUZZ_CHECK(write(fd, bytes, size) == (ssize_t)size, "write %s", path);
    syscall(SYS_close, fd);
}

/* The whole file at path, or NULL (and *size = 0) when it is not a regular file. */
static uint8_t *read_whole(const char *path, size_t *size) {
    *size = 0;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return NULL;
    uint8_t *bytes = (uint8_t *)malloc((size_t)st.st_size + 1);
    FUZZ_CHECK(bytes != NULL, "out of memory");
    const int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    FUZZ_CHECK(fd >= 0, "open %s", path);
    FUZZ_CHECK(read(fd, bytes, (size_t)st.st_size) == (ssize_t)st.st_size, "read %s", path);
    syscall(SYS_close, fd);
    *size = (size_t)st.st_size;
    return bytes;
}

static unsigned count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    unsigned n = 0;
    while (readdir(d) != NULL) n++;
    closedir(d);
    return n;
}

/* ---- the case ---------------------------------------------------------------------------------------- */

enum { PATH_PLAIN, PATH_NESTED, PATH_MISSING_DIR, PATH_BARE_NAME, PATH_EMPTY, PATH_TRAILING_SLASH, PATH_IS_DIR,
       PATH_NAME_TOO_LONG, PATH_KINDS };
enum { OLD_NONE, OLD_FILE, OLD_LINK, OLD_KINDS };
#define MAX_CHUNKS 4
#define MAX_CHUNK 6000u

typedef struct fill_plan {
    const uint8_t *bytes; /* the content, in chunks */
    size_t chunk[MAX_CHUNKS];
    unsigned n_chunks;
    sqkv_error result;    /* what the fill returns after writing its chunks */
    int called;
} fill_plan;

static sqkv_error fill(void *ctx, int fd, char *detail, size_t detail_size) {
    fill_plan *p = (fill_plan *)ctx;
    p->called = 1;
    size_t at = 0;
    for (unsigned i = 0; i < p->n_chunks; i++) {
        FUZZ_CHECK(write(fd, p->bytes + at, p->chunk[i]) == (ssize_t)p->chunk[i], "write to the temporary file");
        at += p->chunk[i];
    }
    if (p->result != SQKV_OK) snprintf(detail, detail_size, "fill failed on purpose");
    return p->result;
}

static uint64_t next_random(uint64_t *state) {
    *state += 0x9E3779B97F4A7C15ull;
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* No name in dir may look like a temporary file of the saver. */
static void check_no_temp_left(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) FUZZ_CHECK(!is_temp_name(e->d_name), "temporary file %s/%s left behind", dir, e->d_name);
    closedir(d);
}

static sqkv_error run_case(const uint8_t *data, size_t size);

/* Each case runs inside the sandbox (for the bare-name path and the relative helper paths), and the
 * fuzzer's own working directory comes back afterwards: it opens its corpus by relative names. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    make_sandbox();
    const int home = (int)syscall(SYS_openat, AT_FDCWD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FUZZ_CHECK(home >= 0, "open .: %s", strerror(errno));
    FUZZ_CHECK(chdir(sandbox) == 0, "chdir %s: %s", sandbox, strerror(errno));
    run_case(data, size);
    FUZZ_CHECK(fchdir(home) == 0, "fchdir: %s", strerror(errno));
    syscall(SYS_close, home);
    return 0;
}

static sqkv_error run_case(const uint8_t *data, size_t size) {
    clear_sandbox();
    fuzz_bytes in = {data, size, 0};
    const unsigned path_kind = fuzz_u8(&in) % PATH_KINDS;
    const unsigned old_kind = fuzz_u8(&in) % OLD_KINDS;
    uint64_t rng = fuzz_u32(&in);

    /* The target and the directory it lives in. */
    char path[700], dir[700];
    FUZZ_CHECK(mkdir("d", 0777) == 0, "mkdir d");
    snprintf(dir, sizeof dir, "%s", sandbox);
    switch (path_kind) {
    case PATH_NESTED: snprintf(path, sizeof path, "%s/d/cache.sqkv", sandbox); snprintf(dir, sizeof dir, "%s/d", sandbox); break;
    case PATH_MISSING_DIR: snprintf(path, sizeof path, "%s/missing/cache.sqkv", sandbox); break;
    case PATH_BARE_NAME: snprintf(path, sizeof path, "cache.sqkv"); break;
    case PATH_EMPTY: path[0] = '\0'; break;
    case PATH_TRAILING_SLASH: snprintf(path, sizeof path, "%s/cache.sqkv/", sandbox); break;
    case PATH_IS_DIR: snprintf(path, sizeof path, "%s/d", sandbox); break;
    case PATH_NAME_TOO_LONG: {
        int n = snprintf(path, sizeof path, "%s/", sandbox);
        for (; n < 600; n++) path[n] = 'n'; /* one component of ~500 characters: ENAMETOOLONG */
        path[n] = '\0';
        break;
    }
    default: snprintf(path, sizeof path, "%s/cache.sqkv", sandbox); break;
    }
    const int path_valid = path_kind != PATH_EMPTY && path_kind != PATH_TRAILING_SLASH;
    const int target_writable = path_kind == PATH_PLAIN || path_kind == PATH_NESTED || path_kind == PATH_BARE_NAME;

    /* What is there before: nothing, an old file, or a link to a file (rename replaces the link only). */
    uint8_t old_bytes[64];
    const size_t old_size = fuzz_range(&in, 0, sizeof old_bytes);
    for (size_t i = 0; i < old_size; i++) old_bytes[i] = (uint8_t)next_random(&rng);
    if (target_writable && old_kind == OLD_FILE) write_whole(path, old_bytes, old_size);
    if (target_writable && old_kind == OLD_LINK) {
        write_whole("pointee", old_bytes, old_size);
        char link_to[800];
        snprintf(link_to, sizeof link_to, "%s/pointee", sandbox);
        FUZZ_CHECK(symlink(link_to, path) == 0, "symlink %s", path);
    }

    /* The fill: chunks of PRNG bytes, then a result. */
    static uint8_t content[MAX_CHUNKS * MAX_CHUNK];
    fill_plan plan = {content, {0}, fuzz_range(&in, 0, MAX_CHUNKS), SQKV_OK, 0};
    size_t content_size = 0;
    for (unsigned i = 0; i < plan.n_chunks; i++) {
        plan.chunk[i] = fuzz_u16(&in) % (MAX_CHUNK + 1);
        content_size += plan.chunk[i];
    }
    for (size_t i = 0; i < content_size; i++) content[i] = (uint8_t)next_random(&rng);
    const uint8_t fill_outcome = fuzz_u8(&in);
    plan.result = fill_outcome < 200 ? SQKV_OK : fill_outcome < 230 ? SQKV_ERR_IO : SQKV_ERR_OUT_OF_MEMORY;

    /* The faults. */
    static const int errnums[] = {EINTR, EEXIST, EIO, ENOSPC, EACCES, EINVAL, EXDEV, EDQUOT};
    memset(&fi, 0, sizeof fi);
    fi.dir_fd = -1;
    fi.temp_fd = -1;
    fi.path = path;
    fi.n_faults = fuzz_range(&in, 0, MAX_FAULTS);
    for (unsigned i = 0; i < fi.n_faults; i++) {
        fi.faults[i].kind = (int)(fuzz_u8(&in) % CALL_KINDS);
        fi.faults[i].nth = fuzz_range(&in, 0, 17);
        fi.faults[i].errnum = errnums[fuzz_u8(&in) % (sizeof errnums / sizeof errnums[0])];
    }
    const size_t detail_size = 1 + fuzz_range(&in, 0, 255);
    char *detail = (char *)malloc(detail_size);
    FUZZ_CHECK(detail != NULL, "out of memory");
    memset(detail, 0x5A, detail_size);

    const unsigned fds_before = count_open_fds();
    fi.armed = 1;
    const sqkv_error err = sqkv_atomic_file_write(path, fill, &plan, detail, detail_size);
    fi.armed = 0;

    /* The message: terminated inside the buffer, and present on failure. */
    if (err != SQKV_OK) { /* on success the buffer is not the saver's to write */
        FUZZ_CHECK(memchr(detail, '\0', detail_size) != NULL, "detail not terminated (err %d)", (int)err);
        FUZZ_CHECK(detail_size == 1 || detail[0] != '\0', "no message for error %d", (int)err);
    }
    FUZZ_CHECK(count_open_fds() == fds_before, "file descriptor leak: %u -> %u", fds_before, count_open_fds());
    check_no_temp_left(dir);
    check_no_temp_left(sandbox);
    FUZZ_CHECK(!fi.bad_temp_name, "a temporary file name outside the contract for \"%s\"", path);

    if (!path_valid) {
        FUZZ_CHECK(err == SQKV_ERR_INVALID_ARGUMENT, "path \"%s\": %d", path, (int)err);
        FUZZ_CHECK(!plan.called && !fi.calls[CALL_OPEN_TEMP], "a system call for an invalid path");
        free(detail);
        return err;
    }

    /* The temporary file creations that the saver retries: at most CREATE_ATTEMPTS (16) in all. */
    const int temp_exhausted = fi.temp_failures >= 16;
    const int expect_ok = target_writable && plan.result == SQKV_OK && !fi.fatal_fault && !temp_exhausted;
    if (plan.called && plan.result != SQKV_OK) {
        FUZZ_CHECK(err == plan.result, "the fill's error %d came back as %d", (int)plan.result, (int)err);
        FUZZ_CHECK(detail_size == 1 || strncmp(detail, "fill failed on purpose", detail_size - 1) == 0,
                   "the fill's message came back as \"%.*s\"", (int)detail_size, detail);
    } else if (expect_ok) {
        FUZZ_CHECK(err == SQKV_OK, "save failed with %d (%.*s) with no fatal fault", (int)err, (int)detail_size, detail);
    } else {
        FUZZ_CHECK(err == SQKV_ERR_IO, "expected SQKV_ERR_IO, got %d (%.*s); path kind %u, fill %d, fatal fault %d",
                   (int)err, (int)detail_size, detail, path_kind, (int)plan.result, fi.fatal_fault);
    }
    if (err == SQKV_OK) FUZZ_CHECK(fi.rename_done, "OK without a rename");

    /* The target: new content after the rename, exactly as before otherwise. */
    size_t now_size;
    uint8_t *now = read_whole(path, &now_size);
    if (fi.rename_done) {
        FUZZ_CHECK(err == SQKV_OK || err == SQKV_ERR_IO, "error %d after the rename", (int)err);
        FUZZ_CHECK(now && now_size == content_size && memcmp(now, content, content_size) == 0,
                   "target is not the new content after the rename (%zu vs %zu bytes)", now_size, content_size);
        struct stat st;
        FUZZ_CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode), "target is not a regular file");
    } else if (path_kind == PATH_IS_DIR) {
        struct stat st;
        FUZZ_CHECK(lstat(path, &st) == 0 && S_ISDIR(st.st_mode), "the directory target was replaced");
    } else if (target_writable && old_kind == OLD_NONE) {
        struct stat st;
        FUZZ_CHECK(lstat(path, &st) != 0, "a target appeared although the save failed");
    } else if (target_writable) {
        FUZZ_CHECK(now && now_size == old_size && memcmp(now, old_bytes, old_size) == 0,
                   "the old target changed although the save failed");
        if (old_kind == OLD_LINK) {
            struct stat st;
            FUZZ_CHECK(lstat(path, &st) == 0 && S_ISLNK(st.st_mode), "the link was replaced although the save failed");
        }
    }
    if (target_writable && old_kind == OLD_LINK) { /* the file the link pointed to is never written */
        size_t pointee_size;
        uint8_t *pointee = read_whole("pointee", &pointee_size);
        FUZZ_CHECK(pointee && pointee_size == old_size && memcmp(pointee, old_bytes, old_size) == 0,
                   "the link's target file changed");
        free(pointee);
    }
    free(now);
    free(detail);
    return err;
}
