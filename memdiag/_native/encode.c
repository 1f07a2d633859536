/* memdiag/_native/encode.c: the column transform of snapfile.encode, with
 * SSE2 byte shuffling (see encode.h). */

#include "encode.h"

#include <string.h>
#if defined(__SSE2__)
#  include <emmintrin.h>
#endif

/* Byte planes (the shuffle): plane k holds byte k of every value. */
static void shuffle8(const uint64_t *v, size_t n, uint8_t *out)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 8 <= n; i += 8) {
        __m128i a = _mm_loadu_si128((const __m128i *)(v + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(v + i + 2));
        __m128i c = _mm_loadu_si128((const __m128i *)(v + i + 4));
        __m128i d = _mm_loadu_si128((const __m128i *)(v + i + 6));
        __m128i x0 = _mm_unpacklo_epi8(a, b), x1 = _mm_unpackhi_epi8(a, b);
        __m128i x2 = _mm_unpacklo_epi8(c, d), x3 = _mm_unpackhi_epi8(c, d);
        __m128i y0 = _mm_unpacklo_epi8(x0, x1), y1 = _mm_unpackhi_epi8(x0, x1);
        __m128i y2 = _mm_unpacklo_epi8(x2, x3), y3 = _mm_unpackhi_epi8(x2, x3);
        __m128i z[4] = {_mm_unpacklo_epi32(y0, y2), _mm_unpackhi_epi32(y0, y2),
                        _mm_unpacklo_epi32(y1, y3), _mm_unpackhi_epi32(y1, y3)};
        for (int k = 0; k < 4; k++) {
            _mm_storel_epi64((__m128i *)(out + (size_t)(2 * k) * n + i), z[k]);
            _mm_storel_epi64((__m128i *)(out + (size_t)(2 * k + 1) * n + i),
                             _mm_unpackhi_epi64(z[k], z[k]));
        }
    }
#endif
    for (; i < n; i++) {
        uint64_t x = v[i];
        for (int k = 0; k < 8; k++) {
            out[(size_t)k * n + i] = (uint8_t)(x >> (8 * k));
        }
    }
}

static void shuffle4(const uint32_t *v, size_t n, uint8_t *out)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 8 <= n; i += 8) {
        __m128i a = _mm_loadu_si128((const __m128i *)(v + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(v + i + 4));
        /* a = v0..v3, b = v4..v7 */
        __m128i x0 = _mm_unpacklo_epi8(a, b), x1 = _mm_unpackhi_epi8(a, b);
        __m128i y0 = _mm_unpacklo_epi8(x0, x1), y1 = _mm_unpackhi_epi8(x0, x1);
        __m128i z0 = _mm_unpacklo_epi8(y0, y1), z1 = _mm_unpackhi_epi8(y0, y1);
        _mm_storel_epi64((__m128i *)(out + i), z0);
        _mm_storel_epi64((__m128i *)(out + n + i), _mm_unpackhi_epi64(z0, z0));
        _mm_storel_epi64((__m128i *)(out + 2 * n + i), z1);
        _mm_storel_epi64((__m128i *)(out + 3 * n + i), _mm_unpackhi_epi64(z1, z1));
    }
#endif
    for (; i < n; i++) {
        uint32_t x = v[i];
        out[i] = (uint8_t)x;
        out[n + i] = (uint8_t)(x >> 8);
        out[2 * n + i] = (uint8_t)(x >> 16);
        out[3 * n + i] = (uint8_t)(x >> 24);
    }
}

/* The narrowest width (1, 2, 4, 8) that holds every bit in `all`. */
static inline int width_of(uint64_t all)
{
    return all >> 32 ? 8 : all >> 16 ? 4 : all >> 8 ? 2 : 1;
}

/* The column transform of snapfile.encode (delta from 0 at the chunk start,
 * zig-zag, byte shuffle, little-endian), into out; the values are spent.
 * A shuffled column without delta coding is written in the narrowest width
 * that holds its values in this chunk (*width): the byte planes above it,
 * all zero, are dropped. Delta-coded columns keep their width (their deltas
 * wrap modulo 2^(8 * width)). */
size_t encode_into(Col *c, int column, uint8_t *out, int *width_out)
{
    size_t n = c->n;
    int width = CODING[column].width, tr = CODING[column].transform;
    *width_out = width;
    if (column == COL_STR_DATA) {
        memcpy(out, c->vals, n);
        return n;
    }
    int narrow = (tr & T_SHUFFLE) && !(tr & T_DELTA);
    if (width == 8) {
        uint64_t *v = c->vals;
        if (narrow) {
            uint64_t all = 0;
            for (size_t i = 0; i < n; i++) {
                all |= v[i];
            }
            *width_out = width_of(all);
        }
        if (tr & T_DELTA) {
            uint64_t prev = 0;
            for (size_t i = 0; i < n; i++) {
                uint64_t cur = v[i], d = cur - prev;
                prev = cur;
                if (tr & T_ZIGZAG) {
                    d = (d << 1) ^ (uint64_t)((int64_t)d >> 63);
                }
                v[i] = d;
            }
        }
        shuffle8(v, n, out);    /* the planes kept come first */
        return n * (size_t)*width_out;
    }
    uint32_t *v = c->vals;
    if (narrow) {
        uint32_t all = 0;
        for (size_t i = 0; i < n; i++) {
            all |= v[i];
        }
        *width_out = width_of(all);
    }
    if (tr & T_DELTA) {
        uint32_t prev = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t cur = v[i], d = cur - prev;
            prev = cur;
            if (tr & T_ZIGZAG) {
                d = (d << 1) ^ (uint32_t)((int32_t)d >> 31);
            }
            v[i] = d;
        }
    }
    if (*width_out == 1) {     /* a 1-byte column, or one narrowed to 1 byte */
        for (size_t i = 0; i < n; i++) {
            out[i] = (uint8_t)v[i];
        }
        return n;
    }
    shuffle4(v, n, out);   /* every other column is 4 bytes wide */
    return n * (size_t)*width_out;
}
