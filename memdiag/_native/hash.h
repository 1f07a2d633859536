/* memdiag/_native/hash.h: the address hash of every table in memdiag's C code
 * (the walker's object index and pointer maps, _fastmatch's hash join).
 *
 * Objects are at least 16-byte aligned, so an address's low 4 bits carry
 * nothing; the rest is multiplied by 2^64 / golden ratio (Fibonacci hashing),
 * which spreads neighbouring addresses (objects allocated one after another)
 * over the whole hash. A table takes a slot from the hash's high bits.
 */
#ifndef MD_HASH_H
#define MD_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t md_hash_addr(uint64_t addr)
{
    return (addr >> 4) * 0x9E3779B97F4A7C15ULL;
}

static inline uint64_t md_hash_ptr(const void *p)
{
    return md_hash_addr((uint64_t)(uintptr_t)p);
}

/* The slot of hash h in a table of cap slots, any cap (multiply-shift). */
static inline size_t md_slot_of(uint64_t h, size_t cap)
{
    return (size_t)(((unsigned __int128)h * cap) >> 64);
}

/* The slot of hash h in a table of 2^bits slots. */
static inline size_t md_slot_bits(uint64_t h, int bits)
{
    return (size_t)(h >> (64 - bits));
}

#endif
