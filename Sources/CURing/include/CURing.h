// Bridge to liburing for Swift.
//
// liburing.h defines _XOPEN_SOURCE, after which its view of fd_set and
// AT_FDCWD clashes with the Glibc module Swift already imported. Including
// the system headers first pins those definitions, so Swift can call
// liburing's static inline helpers (io_uring_prep_*, io_uring_get_sqe ...)
// directly. Only what Swift cannot reach lives here: flag macros built with
// shifts, and syscalls glibc does not wrap or hides behind _GNU_SOURCE.
#ifndef FT_CURING_H
#define FT_CURING_H

#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <stdint.h>
// swift-system's CSystem module includes the kernel's <linux/io_uring.h>.
// liburing ships its own copy under the same include guard with slightly
// different field types, and Clang refuses two definitions of one struct.
// Taking the kernel's copy first makes liburing use it too.
#include <linux/io_uring.h>
#include <liburing.h>

// SQE flags (shift expressions are not imported as Swift constants).
static const uint8_t FT_IOSQE_IO_LINK = IOSQE_IO_LINK;
static const uint8_t FT_IOSQE_ASYNC = IOSQE_ASYNC;
static const uint8_t FT_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE;
static const uint8_t FT_IOSQE_CQE_SKIP_SUCCESS = IOSQE_CQE_SKIP_SUCCESS;
static const uint32_t FT_IORING_CQE_F_MORE = IORING_CQE_F_MORE;
static const uint32_t FT_IORING_CQE_F_NOTIF = IORING_CQE_F_NOTIF;
static const uint32_t FT_IORING_SETUP_SINGLE_ISSUER = IORING_SETUP_SINGLE_ISSUER;
static const uint32_t FT_IORING_SETUP_COOP_TASKRUN = IORING_SETUP_COOP_TASKRUN;
static const uint32_t FT_IORING_SETUP_SUBMIT_ALL = IORING_SETUP_SUBMIT_ALL;
static const uint32_t FT_IORING_SETUP_DEFER_TASKRUN = IORING_SETUP_DEFER_TASKRUN;
static const int FT_IORING_ASYNC_CANCEL_ALL_FD = IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD;

// Socket types: Glibc's __socket_type enum lands in whichever Clang module
// includes <bits/socket_type.h> first, so Swift sees it under Glibc in one
// build and under this module in another. Plain ints are stable.
static const int FT_SOCK_STREAM = SOCK_STREAM;
static const int FT_SOCK_DGRAM = SOCK_DGRAM;
static const int FT_SOCK_CLOEXEC = SOCK_CLOEXEC;

// splice(2) flags and pipe sizing (_GNU_SOURCE only).
static const unsigned FT_SPLICE_F_MOVE = 1;
static const unsigned FT_SPLICE_F_NONBLOCK = 2;
static const unsigned FT_SPLICE_F_MORE = 4;
static const int FT_F_SETPIPE_SZ = 1031;
static const int FT_F_GETPIPE_SZ = 1032;

// openat2(2) resolve flags; glibc 2.36 has no wrapper.
static const uint64_t FT_RESOLVE_NO_XDEV = 0x01;
static const uint64_t FT_RESOLVE_NO_MAGICLINKS = 0x02;
static const uint64_t FT_RESOLVE_NO_SYMLINKS = 0x04;
static const uint64_t FT_RESOLVE_BENEATH = 0x08;
static const unsigned FT_RENAME_NOREPLACE = 1;
static const int FT_O_TMPFILE = 020200000;
static const int FT_AT_EMPTY_PATH = 0x1000;
static const int FT_O_PATH = 010000000;
static const long FT_UTIME_OMIT = ((1l << 30) - 2l);

// Each returns the syscall's result; on failure -1 with errno set.
int ft_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
int ft_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags);
ssize_t ft_splice(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned flags);
ssize_t ft_tee(int fd_in, int fd_out, size_t len, unsigned flags);
ssize_t ft_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count);
int ft_pipe2(int fds[2], int flags);
int ft_accept4(int fd, int flags);
/// copy_file_range(2) (glibc declares it only under _GNU_SOURCE).
long ft_copy_file_range(int in_fd, int64_t *in_off, int out_fd, int64_t *out_off, size_t len);
/// pread(2) that fails with EAGAIN instead of waiting for the disk
/// (preadv2 with RWF_NOWAIT; EOPNOTSUPP where the filesystem has no such
/// mode).
ssize_t ft_pread_nowait(int fd, void *buf, size_t len, int64_t offset);

// 1 if `fd` is on tmpfs (its pages are memory: a read never waits on a
// device), else 0.
int ft_is_tmpfs(int fd);
/// CPUs this thread may run on (sched_getaffinity), at least 1.
int ft_usable_cpus(void);
/// The filesystem type (statfs f_type) holding `path`, or -errno.
long ft_filesystem_type(const char *path);
/* The commit this binary was built from, or "unknown". */
const char *ft_git_commit(void);
int ft_eventfd(void);
int ft_fallocate(int fd, int mode, int64_t offset, int64_t len);
int ft_fcntl_int(int fd, int cmd, int arg);
int ft_fcntl(int fd, int cmd);

// Keeps malloc blocks up to 32 MiB in the heap (no mmap/munmap per block),
// so a 1 MiB buffer allocated per chunk is reused instead of faulted in.
void ft_malloc_reuse_large_blocks(void);

// io_uring_setup with no side effects, for the startup probe.
int ft_io_uring_probe_setup(void);

#endif
