// xxh3 compiled for AVX2, called only after the CPU said it has AVX2.
#if defined(__x86_64__)
// xxhash.h includes the intrinsics only when the whole file targets AVX2.
#include <immintrin.h>
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>
#pragma clang attribute pop

void ft_xxh3_update_avx2(void *state, const void *bytes, size_t length) {
    XXH3_128bits_update((XXH3_state_t *)state, bytes, length);
}
#endif
