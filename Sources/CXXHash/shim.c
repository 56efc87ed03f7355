#define _GNU_SOURCE
#define XXH_INLINE_ALL
#include <xxhash.h>
#include "CXXHash.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
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

int ft_xxh3_update_read(ft_xxh3 *h, int fd, uint64_t offset, uint64_t length, void *buffer, size_t size) {
    uint64_t at = offset, end = offset + length;
    while (at < end) {
        size_t want = (size_t)((end - at) < size ? (end - at) : size);
        ssize_t n = pread(fd, buffer, want, (off_t)at);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -EIO;  // the file shrank underneath
        ft_xxh3_update(h, buffer, (size_t)n);
        at += (uint64_t)n;
    }
    return 0;
}
