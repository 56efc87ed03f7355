#define _GNU_SOURCE
#define XXH_INLINE_ALL
#include <xxhash.h>
#include "CXXHash.h"
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct ft_xxh3 { XXH3_state_t state; };

#if defined(__x86_64__)
void ft_xxh3_update_avx2(void *state, const void *bytes, size_t length);
static int use_avx2(void) {
    static int known = -1;
    if (known < 0) known = __builtin_cpu_supports("avx2") ? 1 : 0;
    return known;
}
#else
static int use_avx2(void) { return 0; }
#endif

ft_xxh3 *ft_xxh3_new(void) {
    ft_xxh3 *h = aligned_alloc(64, (sizeof(ft_xxh3) + 63) / 64 * 64);
    if (h) XXH3_128bits_reset(&h->state);
    return h;
}

void ft_xxh3_free(ft_xxh3 *h) { free(h); }
void ft_xxh3_reset(ft_xxh3 *h) { XXH3_128bits_reset(&h->state); }

void ft_xxh3_update(ft_xxh3 *h, const void *bytes, size_t length) {
#if defined(__x86_64__)
    if (use_avx2()) { ft_xxh3_update_avx2(&h->state, bytes, length); return; }
#endif
    XXH3_128bits_update(&h->state, bytes, length);
}

void ft_xxh3_digest(const ft_xxh3 *h, uint64_t *high, uint64_t *low) {
    XXH128_hash_t d = XXH3_128bits_digest(&h->state);
    *high = d.high64;
    *low = d.low64;
}

void ft_xxh3_oneshot(const void *bytes, size_t length, uint64_t *high, uint64_t *low) {
    ft_xxh3 h;
    XXH3_128bits_reset(&h.state);
    ft_xxh3_update(&h, bytes, length);
    ft_xxh3_digest(&h, high, low);
}

const char *ft_xxh3_implementation(void) { return use_avx2() ? "avx2" : "sse2"; }

// Per-thread landing spot for a SIGBUS raised while reading a mapping.
static __thread sigjmp_buf *guard;
static struct sigaction previous;
static pthread_once_t installed = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    if (guard) siglongjmp(*guard, 1);
    // Not ours: behave as before we were installed.
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) { previous.sa_sigaction(sig, info, context); return; }
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    signal(SIGBUS, SIG_DFL);
    raise(SIGBUS);
}

static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &previous);
}

int ft_xxh3_update_file(ft_xxh3 *h, int fd, uint64_t offset, uint64_t length, size_t window) {
    pthread_once(&installed, install);
    long page = sysconf(_SC_PAGESIZE);
    uint64_t at = offset, end = offset + length;
    while (at < end) {
        uint64_t base = at - at % (uint64_t)page;
        size_t span = (size_t)((end - base) < window ? (end - base) : window);
        void *map = mmap(NULL, span, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)base);
        if (map == MAP_FAILED) return -errno;
        sigjmp_buf here;
        volatile int faulted = 0;
        if (sigsetjmp(here, 1) == 0) {
            guard = &here;
            size_t skip = (size_t)(at - base);
            ft_xxh3_update(h, (const char *)map + skip, span - skip);
        } else {
            faulted = 1;
        }
        guard = NULL;
        munmap(map, span);
        if (faulted) return -EIO;
        at = base + span;
    }
    return 0;
}
