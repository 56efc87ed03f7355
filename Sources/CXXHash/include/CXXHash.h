// xxh3-128 for ft: xxHash's own code (libxxhash-dev's header), compiled
// here twice, for SSE2 and for AVX2, and picked at run time. Debian's
// libxxhash.so is built for SSE2 only; on data already in cache (the
// receiver hashes each chunk right after it lands) AVX2 hashes ~2x faster.
// Digests are identical whichever code runs.
#ifndef FT_CXXHASH_H
#define FT_CXXHASH_H
#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

typedef struct ft_xxh3 ft_xxh3;

ft_xxh3 *ft_xxh3_new(void);
void ft_xxh3_free(ft_xxh3 *h);
void ft_xxh3_reset(ft_xxh3 *h);
void ft_xxh3_update(ft_xxh3 *h, const void *bytes, size_t length);
void ft_xxh3_digest(const ft_xxh3 *h, uint64_t *high, uint64_t *low);
void ft_xxh3_oneshot(const void *bytes, size_t length, uint64_t *high, uint64_t *low);
/// "avx2" or "sse2": which code hashes on this CPU.
const char *ft_xxh3_implementation(void);

// Feeds `length` bytes of `fd` from `offset`, read through `buffer`
// (`size` bytes, cache-sized so each piece is hashed while hot). A file
// that ends early is -EIO. Returns 0 or -errno.
int ft_xxh3_update_read(ft_xxh3 *h, int fd, uint64_t offset, uint64_t length, void *buffer, size_t size);
#endif
