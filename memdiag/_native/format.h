/* memdiag/_native/format.h: the snapshot format's constants, for the C walker.
 *
 * GENERATED from memdiag/snapfile.py (their one source) by
 * scripts/gen-format-h: do not edit. After a change to snapfile.py, run
 * scripts/gen-format-h (tests/test_native.py fails while this file is
 * stale). */
#ifndef MD_FORMAT_H
#define MD_FORMAT_H

#include <stdint.h>

#define MD_MAGIC "\x89MDSNAP\x0a"
#define MD_VERSION_MAJOR 1
#define MD_VERSION_MINOR 0

/* values per column chunk */
#define CHUNK 65536

/* column transforms, applied in this order: delta, zig-zag, byte shuffle */
#define T_DELTA 1
#define T_ZIGZAG 2
#define T_SHUFFLE 4

/* column ids */
enum {
    COL_ADDR = 1,
    COL_TYPE = 2,
    COL_SIZE = 3,
    COL_LENGTH = 4,
    COL_NEDGES = 5,
    COL_PARENT = 6,
    COL_PLABEL = 7,
    COL_SITE = 8,
    COL_ETARGET = 9,
    COL_ELABEL = 10,
    COL_ROOT_OBJ = 11,
    COL_ROOT_KIND = 12,
    COL_ROOT_DESC = 13,
    COL_ROOT_NAME = 14,
    COL_STR_OBJ = 15,
    COL_STR_LEN = 16,
    COL_STR_DATA = 17,
    NCOLS = 18
};

/* the width (bytes) and transform of each column, by id */
static const struct { uint8_t width, transform; } CODING[NCOLS] = {
    {0, 0},
    {8, T_DELTA | T_ZIGZAG | T_SHUFFLE},  /* addr */
    {4, T_SHUFFLE},                       /* type */
    {8, T_SHUFFLE},                       /* size */
    {8, T_SHUFFLE},                       /* length */
    {4, T_SHUFFLE},                       /* nedges */
    {4, T_DELTA | T_ZIGZAG | T_SHUFFLE},  /* parent */
    {4, T_SHUFFLE},                       /* plabel */
    {4, T_SHUFFLE},                       /* site */
    {4, T_DELTA | T_ZIGZAG | T_SHUFFLE},  /* etarget */
    {4, T_SHUFFLE},                       /* elabel */
    {4, T_SHUFFLE},                       /* root_obj */
    {1, 0},                               /* root_kind */
    {4, T_SHUFFLE},                       /* root_desc */
    {4, T_SHUFFLE},                       /* root_name */
    {4, T_SHUFFLE},                       /* str_obj */
    {4, T_SHUFFLE},                       /* str_len */
    {1, 0},                               /* str_data */
};

/* root kinds */
#define ROOT_MODULE 1
#define ROOT_LOCAL 2
#define ROOT_THREAD 3
#define ROOT_UNREACHED 4

/* edge label codes: payload << LABEL_KIND_BITS | kind */
#define L_NONE 0
#define L_INDEX 1
#define L_KEY 2
#define L_ITEM 3
#define L_ITEM_OPAQUE 4
#define L_ATTR 5
#define L_LOCAL 6
#define LABEL_KIND_BITS 3
#define LABEL_KIND_MASK 7
#define MD_LABEL(kind, payload) \
    ((uint32_t)(kind) | ((uint32_t)(payload) << LABEL_KIND_BITS))

/* labels every snapshot starts with, and their indexes */
static const char *const WELL_KNOWN_LABELS[] = {
    "",
    "__dict__",
    "__class__",
    "__code__",
    "__globals__",
    "__defaults__",
    "__kwdefaults__",
    "__closure__",
    "cell_contents",
    "f_back",
    "__mro__",
    "__bases__",
    "__cache__",
    NULL
};
enum {
    LBL_EMPTY = 0,
    LBL_DICT = 1,
    LBL_CLASS = 2,
    LBL_CODE = 3,
    LBL_GLOBALS = 4,
    LBL_DEFAULTS = 5,
    LBL_KWDEFAULTS = 6,
    LBL_CLOSURE = 7,
    LBL_CELL_CONTENTS = 8,
    LBL_F_BACK = 9,
    LBL_MRO = 10,
    LBL_BASES = 11,
    LBL_CACHE = 12,
    NWELL_KNOWN = 13
};

#endif
