/* memdiag/_native/encode.h: column chunks and their encoding, as
 * snapfile.encode does it.
 *
 * A column fills a chunk of up to CHUNK values (Col); encode_into turns a
 * full one into the bytes the file stores before compression: delta from 0
 * at the chunk start, zig-zag, byte shuffle, little-endian (format.h's
 * CODING gives each column's width and transform), and narrows a shuffled
 * column without delta coding to the fewest bytes that hold its values.
 * No Python object is touched: the sink's worker threads could run it.
 */
#ifndef MD_ENCODE_H
#define MD_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"

#pragma GCC visibility push(hidden)

typedef struct {
    void *vals;             /* CHUNK values: uint64 (width 8), uint32, or bytes (STR_DATA) */
    uint32_t n;
    uint32_t limit;         /* flushed at this many: CHUNK but for the first */
} Col;

/* The bytes of a column's chunk buffer (its values as held, not encoded). */
static inline size_t col_bytes(int column)
{
    if (column == COL_STR_DATA) {
        return CHUNK;
    }
    return (size_t)CHUNK * (CODING[column].width == 8 ? 8 : 4);
}

/* Encode c's values (which are spent) into out (room for CHUNK * 8 bytes):
 * the encoded length, *width_out the width written. */
size_t encode_into(Col *c, int column, uint8_t *out, int *width_out);

#pragma GCC visibility pop

#endif
