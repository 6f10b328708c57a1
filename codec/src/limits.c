/* limits.c: reader limits (sqkv.h sqkv_limits, spec/FORMAT.md §3). */
#include "format.h"
#include "reader_limits.h"

#define DEFAULT_MAX_FILE_SIZE (1ull << 40)
#define DEFAULT_MAX_SECTION_SIZE (1ull << 34)
#define DEFAULT_MAX_MEMORY (256ull << 20)

void sqkv_limits_default(sqkv_limits *limits) {
    if (!limits) return;
    limits->max_file_size = DEFAULT_MAX_FILE_SIZE;
    limits->max_section_size = DEFAULT_MAX_SECTION_SIZE;
    limits->max_sections = SQKV_MAX_SECTIONS;
    limits->max_layers = SQKV_MAX_LAYERS;
    limits->max_heads = SQKV_MAX_HEADS;
    limits->max_head_dim = SQKV_MAX_HEAD_DIM;
    limits->max_tokens = SQKV_MAX_TOKENS;
    limits->max_memory = DEFAULT_MAX_MEMORY;
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

void sqkv_limits_effective(const sqkv_limits *configured, sqkv_limits *out) {
    sqkv_limits c;
    if (configured)
        c = *configured;
    else
        sqkv_limits_default(&c);
    out->max_file_size = c.max_file_size;
    out->max_section_size = min_u64(c.max_section_size, SQKV_MAX_BODY_SIZE);
    out->max_sections = min_u32(c.max_sections, SQKV_MAX_SECTIONS);
    out->max_layers = min_u32(c.max_layers, SQKV_MAX_LAYERS);
    out->max_heads = min_u32(c.max_heads, SQKV_MAX_HEADS);
    out->max_head_dim = min_u32(c.max_head_dim, SQKV_MAX_HEAD_DIM);
    out->max_tokens = min_u32(c.max_tokens, SQKV_MAX_TOKENS);
    out->max_memory = c.max_memory;
}
