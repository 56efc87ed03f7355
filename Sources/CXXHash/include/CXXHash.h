// xxh3-128 from the system libxxhash (libxxhash-dev).
#ifndef FT_CXXHASH_H
#define FT_CXXHASH_H
#include <stddef.h>
#include <xxhash.h>
#endif
