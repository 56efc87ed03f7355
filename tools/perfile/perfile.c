// Per-file kernel cost of the ways a receiver can create a small file and a
// sender can read one, synchronous and batched on an io_uring ring. It
// answers one design question: does batching per-file work on the ring pay
// on this kernel? Built and run by tools/bench-perfile.
//
//   perfile MODE FILES DIR [BATCH]
//
// Receiver modes write FILES files of 4 KiB into the empty directory DIR:
//   plain    open(O_CREAT|O_EXCL) under the final name, write, futimens,
//            close: what `tar x` does (a crash leaves a torn file)
//   tmpfile  open(O_TMPFILE), pwrite, futimens, linkat, close: what ft
//            does (the name appears only once the bytes are there)
//   rename   a temporary name, write, futimens, renameat2(NOREPLACE), close
//   ring     tmpfile's steps as batches of BATCH ring operations per step
//            (futimens stays synchronous: io_uring has no such operation)
// Sender modes read FILES files named f0000000... in DIR (run a receiver
// mode first):
//   read      openat, fstat, read, close
//   readring  openat, statx and read, close as batches of BATCH
// Prints microseconds per file: wall, and CPU of the whole process (io-wq
// workers included).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { FILE_BYTES = 4096, MAX_BATCH = 1024 };

static char payload[FILE_BYTES];
static const struct timespec mtime[2] = {{1000000000, 0}, {1000000000, 0}};

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what, int err) {
    fprintf(stderr, "perfile: %s: %s\n", what, strerror(err));
    exit(1);
}

static void name_of(char *out, int i) { snprintf(out, 32, "f%07d", i); }

static void create_sync(int dir, int files, const char *mode) {
    char name[32], temp[32];
    for (int i = 0; i < files; i++) {
        name_of(name, i);
        int fd;
        if (!strcmp(mode, "plain")) {
            fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        } else if (!strcmp(mode, "tmpfile")) {
            fd = openat(dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
        } else {
            snprintf(temp, sizeof temp, ".t%07d", i);
            fd = openat(dir, temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        }
        if (fd < 0) die("open", errno);
        if (pwrite(fd, payload, FILE_BYTES, 0) != FILE_BYTES) die("write", errno);
        if (futimens(fd, mtime)) die("futimens", errno);
        if (!strcmp(mode, "tmpfile") && linkat(fd, "", dir, name, AT_EMPTY_PATH)) die("linkat", errno);
        if (!strcmp(mode, "rename") && renameat2(dir, temp, dir, name, RENAME_NOREPLACE)) die("renameat2", errno);
        close(fd);
    }
}

static struct io_uring ring;

// Submits what is queued and reaps `count` completions into res[user_data].
static void reap(int count, int *res) {
    int r = io_uring_submit_and_wait(&ring, count);
    if (r < 0) die("io_uring_submit_and_wait", -r);
    for (int k = 0; k < count; k++) {
        struct io_uring_cqe *c;
        if ((r = io_uring_wait_cqe(&ring, &c))) die("io_uring_wait_cqe", -r);
        if (res) res[c->user_data] = c->res;
        else if (c->res < 0) die("ring operation", -c->res);
        io_uring_cqe_seen(&ring, c);
    }
}

static struct io_uring_sqe *sqe(unsigned long long tag) {
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    if (!s) die("io_uring_get_sqe", EBUSY);
    s->user_data = tag;
    return s;
}

static void create_ring(int dir, int files, int batch) {
    static int fds[MAX_BATCH];
    static char names[MAX_BATCH][32];
    struct open_how how = {.flags = O_TMPFILE | O_RDWR | O_CLOEXEC, .mode = 0644};
    for (int base = 0; base < files; base += batch) {
        int m = files - base < batch ? files - base : batch;
        for (int i = 0; i < m; i++) io_uring_prep_openat2(sqe(i), dir, ".", &how);
        reap(m, fds);
        for (int i = 0; i < m; i++) {
            if (fds[i] < 0) die("ring openat2", -fds[i]);
            io_uring_prep_write(sqe(i), fds[i], payload, FILE_BYTES, 0);
        }
        reap(m, NULL);
        for (int i = 0; i < m; i++) if (futimens(fds[i], mtime)) die("futimens", errno);
        for (int i = 0; i < m; i++) {
            name_of(names[i], base + i);
            io_uring_prep_linkat(sqe(i), fds[i], "", dir, names[i], AT_EMPTY_PATH);
        }
        reap(m, NULL);
        for (int i = 0; i < m; i++) io_uring_prep_close(sqe(i), fds[i]);
        reap(m, NULL);
    }
}

static void read_sync(int dir, int files) {
    static char buf[FILE_BYTES];
    char name[32];
    for (int i = 0; i < files; i++) {
        name_of(name, i);
        int fd = openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) die("open", errno);
        struct stat st;
        if (fstat(fd, &st)) die("fstat", errno);
        if (read(fd, buf, FILE_BYTES) < 0) die("read", errno);
        close(fd);
    }
}

static void read_ring(int dir, int files, int batch) {
    static char bufs[MAX_BATCH][FILE_BYTES];
    static struct statx stx[MAX_BATCH];
    static int fds[MAX_BATCH];
    static char names[MAX_BATCH][32];
    for (int base = 0; base < files; base += batch) {
        int m = files - base < batch ? files - base : batch;
        for (int i = 0; i < m; i++) {
            name_of(names[i], base + i);
            io_uring_prep_openat(sqe(i), dir, names[i], O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
        }
        reap(m, fds);
        for (int i = 0; i < m; i++) {
            if (fds[i] < 0) die("ring openat", -fds[i]);
            io_uring_prep_statx(sqe(i), fds[i], "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx[i]);
            io_uring_prep_read(sqe(i), fds[i], bufs[i], FILE_BYTES, 0);
        }
        reap(2 * m, NULL);
        for (int i = 0; i < m; i++) io_uring_prep_close(sqe(i), fds[i]);
        reap(m, NULL);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: perfile plain|tmpfile|rename|ring|read|readring FILES DIR [BATCH]\n");
        return 2;
    }
    const char *mode = argv[1];
    int files = atoi(argv[2]);
    int batch = argc > 4 ? atoi(argv[4]) : 64;
    if (files <= 0 || batch <= 0 || batch > MAX_BATCH) {
        fprintf(stderr, "perfile: FILES > 0 and 0 < BATCH <= %d\n", MAX_BATCH);
        return 2;
    }
    memset(payload, 'x', sizeof payload);
    int dir = open(argv[3], O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (dir < 0) die(argv[3], errno);
    if (!strcmp(mode, "ring") || !strcmp(mode, "readring")) {
        struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
        int r = io_uring_queue_init_params(4 * batch, &ring, &p);
        if (r) die("io_uring_queue_init_params", -r);
    }
    double t0 = seconds(), c0 = cpu_seconds();
    if (!strcmp(mode, "plain") || !strcmp(mode, "tmpfile") || !strcmp(mode, "rename")) create_sync(dir, files, mode);
    else if (!strcmp(mode, "ring")) create_ring(dir, files, batch);
    else if (!strcmp(mode, "read")) read_sync(dir, files);
    else if (!strcmp(mode, "readring")) read_ring(dir, files, batch);
    else { fprintf(stderr, "perfile: unknown mode '%s'\n", mode); return 2; }
    printf("%.2f %.2f\n", (seconds() - t0) / files * 1e6, (cpu_seconds() - c0) / files * 1e6);
    return 0;
}
