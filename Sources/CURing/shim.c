#define _GNU_SOURCE
#include "CURing.h"
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <linux/openat2.h>
#include <malloc.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <sched.h>

int ft_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how = { .flags = flags, .mode = mode, .resolve = resolve };
    int r;
    do { r = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how); } while (r < 0 && errno == EINTR);
    return r;
}

int ft_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

ssize_t ft_splice(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned flags) {
    return splice(fd_in, (loff_t *)off_in, fd_out, (loff_t *)off_out, len, flags);
}

ssize_t ft_tee(int fd_in, int fd_out, size_t len, unsigned flags) {
    return tee(fd_in, fd_out, len, flags);
}

ssize_t ft_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count) {
    return sendfile(out_fd, in_fd, (off_t *)offset, count);
}

int ft_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
int ft_accept4(int fd, int flags) { return accept4(fd, NULL, NULL, flags); }

int ft_fallocate(int fd, int mode, int64_t offset, int64_t len) {
    return fallocate(fd, mode, (off_t)offset, (off_t)len);
}

int ft_fcntl_int(int fd, int cmd, int arg) { return fcntl(fd, cmd, arg); }
int ft_fcntl(int fd, int cmd) { return fcntl(fd, cmd); }

int ft_io_uring_probe_setup(void) {
    struct io_uring_params p = {0};
    int fd = (int)syscall(__NR_io_uring_setup, 2, &p);
    if (fd < 0) return -errno;
    close(fd);
    return 0;
}

int ft_eventfd(void) { return eventfd(0, EFD_CLOEXEC); }

long ft_copy_file_range(int in_fd, int64_t *in_off, int out_fd, int64_t *out_off, size_t len) {
    loff_t i = *in_off, o = *out_off;
    ssize_t n = copy_file_range(in_fd, &i, out_fd, &o, len, 0);
    if (n < 0) return -errno;
    *in_off = i;
    *out_off = o;
    return n;
}

long ft_filesystem_type(const char *path) {
    struct statfs s;
    if (statfs(path, &s) != 0) return -errno;
    return (long)s.f_type;
}

void ft_malloc_reuse_large_blocks(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

/* tools/package writes ft_build_info.h (not in git) with the commit it
 * builds; a development build says "unknown". */
#if __has_include("ft_build_info.h")
#include "ft_build_info.h"
#endif
#ifndef FT_GIT_COMMIT
#define FT_GIT_COMMIT "unknown"
#endif
const char *ft_git_commit(void) { return FT_GIT_COMMIT; }

int ft_is_tmpfs(int fd) {
    struct statfs s;
    return fstatfs(fd, &s) == 0 && s.f_type == 0x01021994;  // TMPFS_MAGIC
}

int ft_usable_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

ssize_t ft_pread_nowait(int fd, void *buf, size_t len, int64_t offset) {
    struct iovec v = { .iov_base = buf, .iov_len = len };
    return preadv2(fd, &v, 1, (off_t)offset, RWF_NOWAIT);
}
