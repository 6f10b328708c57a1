/*
 * encode.cu: the host side of the GPU encoder: the section and unit plan (the same sections, in the
 * same order, as sqkv_writer), workspace layout, checks before launch, results, and file output.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <zstd.h>

#include "encode_fast.cuh"
#include "encode_kernels.cuh"
#include "internal.cuh"

extern "C" {
#include "encode_ancillary.h"
#include "encode_streams.h"
#include "format.h"
#include "prune.h"
#include "section_blob.h"
#include "section_header.h"
#include "sparse_layout.h"
#include "stream_out.h"
#include "tile_layout.h"
}

using namespace sqkv_cuda;

/* A workspace the encoder has queued work with. Its plan is uploaded, its error words alternate between
 * two slots, and it holds at most one pending batch. The batch's header kernel writes the batch's
 * verdict and section sizes to host_res (pinned, mapped), and `done` marks the batch's end in its stream,
 * so that encode_results waits for that batch alone, not for the batches queued after it. */
struct WorkspaceSlot {
    const void *ws = nullptr;
    uint64_t ws_size = 0;         /* with ws, what identifies the workspace (a reallocation often returns
                                   * the same address; its size then usually differs) */
    uint64_t last_use = 0;
    uint32_t error_slot = 0;
    bool pending = false;
    uint32_t first = 0, n = 0;
    uint64_t *host_res = nullptr; /* [0] error word, [1 + i] body size of the batch's section i */
    uint64_t host_cap = 0;        /* entries of host_res */
    cudaEvent_t done = nullptr;
    int done_device = -1;         /* the device `done` was created on (events belong to one) */
};

struct sqkv_cuda_encoder {
    ~sqkv_cuda_encoder() {
        if (plan_image) cudaFreeHost(plan_image);
        for (WorkspaceSlot &w : slots) {
            if (w.host_res) cudaFreeHost(w.host_res);
            if (w.done) cudaEventDestroy(w.done);
        }
    }
    sqkv_geometry geo;
    sqkv_writer_options opt;
    Geometry g;
    std::vector<SectionPlan> sections;
    std::vector<UnitPlan> units;
    std::vector<uint32_t> dense_ids;
    std::vector<uint32_t> block_map;
    uint64_t layer_capacity = 0, unit_cap = 0, blocks_per_layer = 0, max_dense_elems = 0;
    uint64_t bound_groups = 0; /* PER_HEAD scale groups of a layer (fast path code boundaries) */
    bool all_kept = false;     /* keep-all mode: every SPARSE section ALL_KEPT (spec/FORMAT.md §7.6) */
    /* workspace: plan region, then per-layer arrays */
    uint64_t plan_bytes = 0, ws_per_layer = 0;
    uint64_t off_sections = 0, off_units = 0, off_dense = 0, off_map = 0, off_error = 0;
    uint8_t *plan_image = nullptr; /* pinned: the plan region as uploaded (encode_layers) */
    WorkspaceSlot slots[SQKV_CUDA_MAX_PENDING_BATCHES];
    uint64_t use_clock = 0;
    /* results */
    std::vector<uint64_t> stored; /* [n_layers][n_sections], body sizes once encoded */
    std::vector<uint8_t> layer_done;
    bool have_source = false;
    sqkv_dtype source_dtype = SQKV_DTYPE_FP16;
    std::vector<int32_t> tokens;
    std::vector<uint8_t> fingerprint;
    uint64_t written_size = 0; /* bytes of the last file write_file produced (file_size with zstd) */
    sqkv_cuda_status error = SQKV_OK;
    std::string detail;
};

namespace {

sqkv_cuda_status fail(sqkv_cuda_encoder *e, sqkv_cuda_status st, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    e->error = st;
    e->detail = buf;
    return st;
}

/* Per-layer workspace arrays, in order. */
struct LayerArrays {
    uint64_t ptrs, stats, temp, results, jobs, hashes, sums, bounds;
};

LayerArrays layer_arrays(const sqkv_cuda_encoder *e, uint32_t n) {
    LayerArrays l;
    uint64_t off = e->plan_bytes;
    auto take = [&](uint64_t bytes) {
        const uint64_t at = off;
        off = align_up(off + bytes, 256);
        return at;
    };
    const uint64_t ns = e->sections.size(), nu = e->units.size();
    l.ptrs = take(n * 2 * sizeof(void *));
    l.stats = take(n * nu * sizeof(UnitStat));
    l.temp = take(n * nu * e->unit_cap * 2);
    l.results = take(n * ns * sizeof(SectionResult));
    l.jobs = take(n * ns * sizeof(HashJob));
    l.hashes = take(n * ns * 8);
    l.sums = take(n * e->blocks_per_layer * 64);
    l.bounds = take(n * e->bound_groups * 256 * 2);
    return l;
}

/* The plan: sections of one layer in sqkv_writer's order, the units of its SPARSE sections, the
 * worst-case slot of every section, and the XXH3 block slots. */
sqkv_cuda_status build_plan(sqkv_cuda_encoder *e) {
    const sqkv_geometry &geo = e->geo;
    const sqkv_writer_options &o = e->opt;
    const uint32_t H = geo.n_kv_heads, D = geo.head_dim, T = geo.n_tokens, W = geo.dense_window, S = T - W;
    const uint32_t hps = o.heads_per_section < H ? o.heads_per_section : H;
    const uint32_t tps = o.tokens_per_section;
    const uint32_t groups = (H + hps - 1) / hps;
    const uint32_t token_chunks = S == 0 ? 0 : tps == 0 ? 1 : (S + tps - 1) / tps;
    /* Keep-all mode keeps every element (zeros too) and stores neither bitmaps nor an offset table,
     * whose interval is then 0 in the section headers, as sqkv_writer writes them. */
    const bool all_kept = o.prune == SQKV_PRUNE_KEEP_ALL;
    e->all_kept = all_kept;
    const uint32_t keep = all_kept ? D : sqkv_prune_keep_count(D, o.prune, o.sparsity);
    const uint32_t offset_log2 = all_kept ? 0u : o.offset_interval_log2;
    const uint32_t hb = (D + 63) / 64;
    const uint32_t q = (uint32_t)o.quantizer, gran = (uint32_t)o.scales, bits = o.payload_bits;
    e->unit_cap = align_up((uint64_t)64 * (keep < D ? keep : D), 8);
    Geometry &g = e->g;
    g.n_heads = H;
    g.n_tokens = T;
    g.head_dim = D;
    g.keep = keep;
    g.e_bf16 = geo.value_dtype == SQKV_DTYPE_BF16;
    g.src_dtype = 1;
    g.bits = bits;
    g.quantizer = q;
    g.granularity = gran;
    g.offset_log2 = offset_log2;
    g.hb = hb;
    g.row_stride = (uint32_t)align_up(D, 8) + 8;

    uint64_t slot = 0, blocks = 0;
    for (uint32_t tensor = 0; tensor < 2; tensor++) {
        for (uint32_t grp = 0; grp < groups; grp++) {
            const uint32_t head0 = grp * hps, hc = H - head0 < hps ? H - head0 : hps;
            for (uint32_t c = 0; c <= token_chunks; c++) {
                SectionPlan p;
                memset(&p, 0, sizeof p);
                p.tensor = (uint8_t)tensor;
                p.head_start = head0;
                p.head_count = hc;
                uint64_t body;
                if (c < token_chunks) {
                    const uint32_t t0 = c * tps;
                    const uint32_t tc = tps == 0 || S - t0 < tps ? S - t0 : tps;
                    p.kind = kKindSparse;
                    p.token_start = t0;
                    p.token_count = tc;
                    p.payload_bits = (uint8_t)bits;
                    p.quantizer = (uint8_t)q;
                    p.granularity = (uint8_t)gran;
                    p.offset_log2 = (uint8_t)offset_log2;
                    p.tiles_per_head = sqkv_tiles_per_head((sqkv_tensor)tensor, tc, D);
                    p.n_tiles = p.tiles_per_head * hc;
                    const uint64_t max_kept = (uint64_t)hc * tc * (keep < D ? keep : D);
                    sqkv_sparse_layout lay;
                    sqkv_sparse_layout_compute_flags(p.n_tiles, offset_log2, q, gran, bits, hc, max_kept, all_kept,
                                                     &lay);
                    p.n_offsets = lay.n_offsets;
                    p.n_groups = lay.n_groups;
                    p.params_per_group = (uint8_t)lay.params_per_group;
                    p.offsets_at = lay.offsets_at;
                    p.scales_at = lay.scales_at;
                    p.payload_at = lay.payload_at;
                    body = lay.body_size;
                    p.chunks = (tc + 63) / 64;
                    p.bound_first = (uint32_t)e->bound_groups;
                    e->bound_groups += hc;
                    p.unit_first = (uint32_t)e->units.size();
                    p.n_units = p.chunks * hc;
                    for (uint32_t j = 0; j < hc; j++)
                        for (uint32_t ch = 0; ch < p.chunks; ch++) {
                            UnitPlan u;
                            memset(&u, 0, sizeof u);
                            u.section = (uint32_t)e->sections.size();
                            u.head = j;
                            u.chunk = ch;
                            u.rows = tc - 64 * ch < 64 ? tc - 64 * ch : 64;
                            u.tensor = tensor;
                            u.src_row = (uint64_t)(head0 + j) * T + t0 + 64ull * ch;
                            if (tensor == 0) {
                                u.tile0 = (uint64_t)j * p.tiles_per_head + (uint64_t)ch * D;
                                u.n_tiles = D;
                            } else {
                                u.tile0 = (uint64_t)j * p.tiles_per_head + (uint64_t)64 * hb * ch;
                                u.n_tiles = u.rows * hb;
                            }
                            e->units.push_back(u);
                        }
                } else {
                    if (W == 0) continue;
                    p.kind = kKindDense;
                    p.token_start = S;
                    p.token_count = W;
                    const uint64_t elems = (uint64_t)hc * W * D;
                    body = align_up(2 * elems, 8);
                    p.dense_body = body;
                    if (elems > e->max_dense_elems) e->max_dense_elems = elems;
                    e->dense_ids.push_back((uint32_t)e->sections.size());
                }
                if (body > SQKV_MAX_BODY_SIZE) return SQKV_ERR_LIMIT;
                p.slot = slot;
                p.slot_size = align_up(64 + body, 256);
                slot += p.slot_size;
                p.xxh_block_first = (uint32_t)blocks;
                const uint64_t nb = body > 240 ? (body - 1) / 1024 : 0;
                for (uint64_t b = 0; b < nb; b++) e->block_map.push_back((uint32_t)e->sections.size());
                blocks += nb;
                e->sections.push_back(p);
            }
        }
    }
    if (e->units.size() > 0x7FFFFFFFull || blocks > 0xFFFFFFFFull) return SQKV_ERR_LIMIT;
    e->layer_capacity = slot;
    e->blocks_per_layer = blocks;
    uint64_t off = 0;
    auto take = [&](uint64_t bytes) {
        const uint64_t at = off;
        off = align_up(off + bytes, 256);
        return at;
    };
    e->off_error = take(32); /* two slots of error words (encode_layers) */
    e->off_sections = take(e->sections.size() * sizeof(SectionPlan));
    e->off_units = take(e->units.size() * sizeof(UnitPlan));
    e->off_dense = take(e->dense_ids.size() * 4);
    e->off_map = take(e->block_map.size() * 4);
    e->plan_bytes = off;
    const uint64_t ns = e->sections.size(), nu = e->units.size();
    e->ws_per_layer = 2 * sizeof(void *) + nu * sizeof(UnitStat) + nu * e->unit_cap * 2 + ns * sizeof(SectionResult) +
                      ns * sizeof(HashJob) + ns * 8 + blocks * 64 + e->bound_groups * 256 * 2;
    e->stored.assign((size_t)geo.n_layers * ns, 0);
    e->layer_done.assign(geo.n_layers, 0);
    return SQKV_OK;
}

}  // namespace

extern "C" sqkv_cuda_status sqkv_cuda_encoder_create(const sqkv_geometry *geometry, const sqkv_writer_options *opts,
                                                     sqkv_cuda_encoder **out) {
    if (!out) return SQKV_ERR_INVALID_ARGUMENT;
    *out = nullptr;
    if (!geometry || !opts) return SQKV_ERR_INVALID_ARGUMENT;
    /* The CPU writer's own checks decide what is valid, so both encoders accept the same requests. */
    sqkv_writer *w = nullptr;
    const sqkv_error err = sqkv_writer_create(geometry, opts, &w);
    sqkv_writer_destroy(w);
    if (err != SQKV_OK) return err;
    /* The format 1.1 features (spec/FORMAT.md §4.1) and the range search (§14) are all done on the
     * GPU, every granularity included. */
    sqkv_cuda_encoder *e = new (std::nothrow) sqkv_cuda_encoder();
    if (!e) return SQKV_ERR_OUT_OF_MEMORY;
    e->geo = *geometry;
    e->opt = *opts;
    if (e->opt.heads_per_section > geometry->n_kv_heads) e->opt.heads_per_section = geometry->n_kv_heads;
    const sqkv_cuda_status st = build_plan(e);
    if (st != SQKV_OK) {
        delete e;
        return st;
    }
    *out = e;
    return SQKV_OK;
}

extern "C" void sqkv_cuda_encoder_destroy(sqkv_cuda_encoder *e) { delete e; }

extern "C" const char *sqkv_cuda_encoder_error_detail(const sqkv_cuda_encoder *e) {
    return e ? e->detail.c_str() : "";
}

extern "C" sqkv_cuda_status sqkv_cuda_encoder_sizes(const sqkv_cuda_encoder *e, sqkv_cuda_encode_sizes *sizes) {
    if (!e || !sizes) return SQKV_ERR_INVALID_ARGUMENT;
    sizes->sections_per_layer = (uint32_t)e->sections.size();
    sizes->layer_capacity = e->layer_capacity;
    sizes->workspace_base = e->plan_bytes + 256 * 8; /* alignment slack of the per-layer arrays */
    sizes->workspace_per_layer = e->ws_per_layer;
    return SQKV_OK;
}

extern "C" uint64_t sqkv_cuda_encoder_slot_offset(const sqkv_cuda_encoder *e, uint32_t i) {
    return e && i < e->sections.size() ? e->sections[i].slot : 0;
}

extern "C" sqkv_cuda_status sqkv_cuda_encode_layers(sqkv_cuda_encoder *e, uint32_t first_layer, uint32_t n_layers,
                                                    sqkv_dtype src_dtype, const void *const *k, const void *const *v,
                                                    void *out, uint64_t out_size, void *workspace,
                                                    uint64_t workspace_size, cudaStream_t stream) {
    if (!e) return SQKV_ERR_INVALID_ARGUMENT;
    if (e->error != SQKV_OK) return e->error;
    if (n_layers == 0) return SQKV_OK;
    if (!k || !v || !out || !workspace)
        return fail(e, SQKV_ERR_INVALID_ARGUMENT, "encode_layers: k, v, out or workspace is NULL");
    if (first_layer >= e->geo.n_layers || n_layers > e->geo.n_layers - first_layer)
        return fail(e, SQKV_ERR_INVALID_ARGUMENT, "encode_layers: layers %u..%u out of range (n_layers %u)",
                    first_layer, first_layer + n_layers - 1, e->geo.n_layers);
    if (n_layers > 65535) return fail(e, SQKV_ERR_LIMIT, "encode_layers: at most 65535 layers per call");
    if (src_dtype != SQKV_DTYPE_FP16 && src_dtype != SQKV_DTYPE_BF16 && src_dtype != SQKV_DTYPE_FP32)
        return fail(e, SQKV_ERR_INVALID_ARGUMENT, "encode_layers: src_dtype must be FP16, BF16 or FP32");
    if (e->have_source && src_dtype != e->source_dtype)
        return fail(e, SQKV_ERR_INVALID_ARGUMENT, "encode_layers: src_dtype differs from earlier layers");
    /* the workspace's slot: its own, else a free one, else the least recently used one with nothing pending */
    WorkspaceSlot *slot = nullptr;
    for (WorkspaceSlot &w : e->slots)
        if (w.ws == workspace && (w.pending || w.ws_size == workspace_size)) slot = &w;
    if (slot && slot->pending)
        return fail(e, SQKV_ERR_STATE, "encode_layers: this workspace holds a pending batch: read it with encode_results first");
    if (!slot)
        for (WorkspaceSlot &w : e->slots)
            if (!w.pending && (!slot || w.last_use < slot->last_use)) slot = &w;
    if (!slot)
        return fail(e, SQKV_ERR_STATE, "encode_layers: %d batches pending: read one with encode_results first",
                    SQKV_CUDA_MAX_PENDING_BATCHES);
    const uintptr_t src_align = src_dtype == SQKV_DTYPE_FP32 ? 4 : 2;
    if (!is_aligned(out, kEncodeOutAlign) || !is_aligned(workspace, kWorkspaceAlign))
        return fail(e, SQKV_ERR_MISALIGNED, "encode_layers: out and workspace must be 16-byte aligned");
    for (uint32_t i = 0; i < n_layers; i++) {
        if (!k[i] || !v[i]) return fail(e, SQKV_ERR_INVALID_ARGUMENT, "encode_layers: k[%u] or v[%u] is NULL", i, i);
        if (!is_aligned(k[i], src_align) || !is_aligned(v[i], src_align))
            return fail(e, SQKV_ERR_MISALIGNED, "encode_layers: k[%u] or v[%u] is not aligned to its %u-byte elements", i,
                        i, (unsigned)src_align);
        if (e->layer_done[first_layer + i])
            return fail(e, SQKV_ERR_STATE, "encode_layers: layer %u encoded twice", first_layer + i);
    }
    for (const WorkspaceSlot &w : e->slots)
        if (w.pending && w.first < first_layer + n_layers && first_layer < w.first + w.n)
            return fail(e, SQKV_ERR_STATE, "encode_layers: layers %u..%u overlap a pending batch", first_layer,
                        first_layer + n_layers - 1);
    if (out_size / n_layers < e->layer_capacity)
        return fail(e, SQKV_ERR_BUFFER_TOO_SMALL, "encode_layers: out holds %llu bytes, %u layers need %llu each",
                    (unsigned long long)out_size, n_layers, (unsigned long long)e->layer_capacity);
    const LayerArrays la = layer_arrays(e, n_layers);
    const uint64_t need = la.bounds + align_up((uint64_t)n_layers * e->bound_groups * 256 * 2, 256);
    if (workspace_size < need)
        return fail(e, SQKV_ERR_BUFFER_TOO_SMALL, "encode_layers: workspace holds %llu bytes, %llu needed",
                    (unsigned long long)workspace_size, (unsigned long long)need);
    uint8_t *ws = (uint8_t *)workspace;
    /* the batch's results on the host: grown when needed (pinned allocations are slow), kept */
    const uint64_t res_entries = 1 + (uint64_t)n_layers * e->sections.size();
    if (slot->host_cap < res_entries) {
        if (slot->host_res) SQKV_CUDA_TRY(cudaFreeHost(slot->host_res));
        slot->host_res = nullptr;
        slot->host_cap = 0;
        SQKV_CUDA_TRY(cudaHostAlloc((void **)&slot->host_res, res_entries * 8, cudaHostAllocMapped | cudaHostAllocPortable));
        slot->host_cap = res_entries;
    }
    int device = 0;
    SQKV_CUDA_TRY(cudaGetDevice(&device));
    if (!slot->done || slot->done_device != device) {
        if (slot->done) SQKV_CUDA_TRY(cudaEventDestroy(slot->done));
        slot->done = nullptr;
        SQKV_CUDA_TRY(cudaEventCreateWithFlags(&slot->done, cudaEventDisableTiming));
        slot->done_device = device;
    }
    /* The plan is uploaded once per workspace (documented in sqkv_cuda.h: its first bytes belong to
     * the encoder). */
    if (workspace != slot->ws || workspace_size != slot->ws_size) {
        /* The plan region as one image in pinned memory, built once: one copy per upload (a copy per
         * array from pageable memory, and a memset, took 14 us of a 0.37 ms call). Its error words are
         * zero: two slots, used by calls in turn, each call's header kernel zeroing the other slot for
         * the next call, so that calls on the same workspace queue nothing before their kernels (each
         * operation in the stream between calls is a few microseconds of idle GPU, which calls of one
         * layer each pay every time). */
        if (!e->plan_image) {
            SQKV_CUDA_TRY(cudaHostAlloc((void **)&e->plan_image, e->plan_bytes, cudaHostAllocPortable));
            memset(e->plan_image, 0, e->plan_bytes);
            auto put = [&](uint64_t at, const void *src, size_t bytes) {
                if (bytes) memcpy(e->plan_image + at, src, bytes);
            };
            put(e->off_sections, e->sections.data(), e->sections.size() * sizeof(SectionPlan));
            put(e->off_units, e->units.data(), e->units.size() * sizeof(UnitPlan));
            put(e->off_dense, e->dense_ids.data(), e->dense_ids.size() * 4);
            put(e->off_map, e->block_map.data(), e->block_map.size() * 4);
        }
        SQKV_CUDA_TRY(cudaMemcpyAsync(ws, e->plan_image, e->plan_bytes, cudaMemcpyHostToDevice, stream));
        slot->error_slot = 0;
        slot->ws = workspace;
        slot->ws_size = workspace_size;
    }
    slot->last_use = ++e->use_clock;
    EncodeArgs a;
    memset(&a, 0, sizeof a);
    if (n_layers <= kInlineSourceLayers) {
        for (uint32_t i = 0; i < n_layers; i++) {
            a.src_inline[2 * i] = k[i];
            a.src_inline[2 * i + 1] = v[i];
        }
        a.src = nullptr;
    } else {
        std::vector<const void *> ptrs(2 * (size_t)n_layers);
        for (uint32_t i = 0; i < n_layers; i++) {
            ptrs[2 * i] = k[i];
            ptrs[2 * i + 1] = v[i];
        }
        SQKV_CUDA_TRY(cudaMemcpyAsync(ws + la.ptrs, ptrs.data(), ptrs.size() * sizeof(void *), cudaMemcpyHostToDevice, stream));
        a.src = (const void *const *)(ws + la.ptrs);
    }
    a.g = e->g;
    a.g.src_dtype = (uint32_t)src_dtype;
    a.sections = (const SectionPlan *)(ws + e->off_sections);
    a.n_sections = (uint32_t)e->sections.size();
    a.units = (const UnitPlan *)(ws + e->off_units);
    a.n_units = (uint32_t)e->units.size();
    a.n_layers = n_layers;
    a.first_layer = first_layer;
    a.out = (uint8_t *)out;
    a.layer_capacity = e->layer_capacity;
    a.stats = (UnitStat *)(ws + la.stats);
    a.temp = (uint16_t *)(ws + la.temp);
    a.unit_cap = e->unit_cap;
    a.results = (SectionResult *)(ws + la.results);
    a.hashes = (uint64_t *)(ws + la.hashes);
    a.error = (uint32_t *)(ws + e->off_error + 16 * slot->error_slot);
    a.error_next = (uint32_t *)(ws + e->off_error + 16 * (slot->error_slot ^ 1u));
    uint64_t *host_res_dev = nullptr;
    SQKV_CUDA_TRY(cudaHostGetDevicePointer((void **)&host_res_dev, slot->host_res, 0));
    a.host_results = host_res_dev;
    a.dense_ids = (const uint32_t *)(ws + e->off_dense);
    a.n_dense = (uint32_t)e->dense_ids.size();
    a.max_dense_elems = e->max_dense_elems;
    a.jobs = (HashJob *)(ws + la.jobs);
    a.block_map = (const uint32_t *)(ws + e->off_map);
    a.blocks_per_layer = e->blocks_per_layer;
    a.sums = (uint64_t *)(ws + la.sums);
    a.bounds = (uint16_t *)(ws + la.bounds);
    a.bounds_per_layer = e->bound_groups;
    a.all_kept = e->all_kept ? 1u : 0u;
    /* EXACT values have no parameters to search (sqkv_writer ignores the option there too) */
    a.range_search = e->opt.quantizer == SQKV_QUANT_EXACT ? 0u : e->opt.range_search;
    a.max_head_count = 0;
    for (const SectionPlan &p : e->sections)
        if (p.kind == kKindSparse && p.head_count > a.max_head_count) a.max_head_count = p.head_count;
    /* the fast kernels prune; keep-all mode and the range search take the general ones */
    a.fast = !e->all_kept && !a.range_search && fast_path_enabled() && fast_encode_geometry(a.g) && e->unit_cap * 2 <= 16384;
    for (uint32_t i = 0; i < n_layers && a.fast; i++)
        if (((uintptr_t)k[i] | (uintptr_t)v[i]) & 15u) a.fast = 0; /* 16-byte copies of the source */
    if (prune_smem_bytes(a.g, a.unit_cap) > 227 * 1024)
        return fail(e, SQKV_ERR_UNSUPPORTED, "encode_layers: head_dim %u needs more shared memory than one block has",
                    e->geo.head_dim);
    const sqkv_cuda_status st = launch_encode(a, stream);
    if (st != SQKV_OK) return fail(e, st, "encode_layers: %s", sqkv_cuda_status_name(st));
    const cudaError_t rec = cudaEventRecord(slot->done, stream);
    if (rec != cudaSuccess) return fail(e, SQKV_CUDA_ERROR_BASE + (int)rec, "encode_layers: event: %s", cudaGetErrorName(rec));
    slot->pending = true;
    slot->first = first_layer;
    slot->n = n_layers;
    slot->error_slot ^= 1u;
    if (!e->have_source) {
        e->have_source = true;
        e->source_dtype = src_dtype;
    }
    return SQKV_OK;
}

extern "C" sqkv_cuda_status sqkv_cuda_encode_results(sqkv_cuda_encoder *e, const void *workspace, uint64_t *extents,
                                                     cudaStream_t stream) {
    (void)stream; /* the batch's own event is waited for (sqkv_cuda.h) */
    if (!e) return SQKV_ERR_INVALID_ARGUMENT;
    if (e->error != SQKV_OK) return e->error;
    WorkspaceSlot *slot = nullptr;
    for (WorkspaceSlot &w : e->slots)
        if (w.pending && w.ws == workspace) slot = &w;
    if (!slot) return fail(e, SQKV_ERR_STATE, "encode_results: no batch pending on this workspace");
    const cudaError_t sync = cudaEventSynchronize(slot->done);
    if (sync != cudaSuccess) return fail(e, SQKV_CUDA_ERROR_BASE + (int)sync, "encode_results: %s", cudaGetErrorName(sync));
    const uint32_t n = slot->n, first = slot->first;
    const size_t ns = e->sections.size();
    const volatile uint64_t *res = slot->host_res; /* written by the batch's header kernel */
    slot->pending = false;
    const uint64_t err_word = res[0];
    if (err_word & 1u)
        return SQKV_ERR_NONFINITE_INPUT; /* not sticky: the caller may fix the input and encode again */
    if (err_word & 2u) return SQKV_ERR_RANGE_INPUT;
    for (uint32_t i = 0; i < n; i++) {
        for (size_t s = 0; s < ns; s++) {
            const uint64_t body = res[1 + (size_t)i * ns + s];
            if (body > e->sections[s].slot_size - 64)
                return fail(e, SQKV_ERR_STATE, "encode_results: section %zu of layer %u overflowed its slot", s,
                            first + i);
            e->stored[(size_t)(first + i) * ns + s] = body;
            if (extents) extents[(size_t)i * ns + s] = sqkv_section_extent(body);
        }
        e->layer_done[first + i] = 1;
    }
    return SQKV_OK;
}

extern "C" sqkv_cuda_status sqkv_cuda_encoder_reset(sqkv_cuda_encoder *e) {
    if (!e) return SQKV_ERR_INVALID_ARGUMENT;
    if (e->error != SQKV_OK) return e->error;
    for (const WorkspaceSlot &w : e->slots)
        if (w.pending) return fail(e, SQKV_ERR_STATE, "reset: read the pending batches with encode_results first");
    for (WorkspaceSlot &w : e->slots) w.ws = nullptr; /* plans are uploaded again (sqkv_cuda.h) */
    std::fill(e->stored.begin(), e->stored.end(), 0);
    std::fill(e->layer_done.begin(), e->layer_done.end(), 0);
    e->have_source = false;
    e->written_size = 0;
    return SQKV_OK;
}

extern "C" sqkv_cuda_status sqkv_cuda_encoder_set_tokens(sqkv_cuda_encoder *e, const int32_t *tokens, size_t count) {
    if (!e) return SQKV_ERR_INVALID_ARGUMENT;
    if (e->error != SQKV_OK) return e->error;
    if (!tokens || count != e->geo.n_tokens)
        return fail(e, SQKV_ERR_INVALID_ARGUMENT, "set_tokens: %zu ids for %u tokens", count, e->geo.n_tokens);
    e->tokens.assign(tokens, tokens + count);
    e->written_size = 0;
    return SQKV_OK;
}

extern "C" sqkv_cuda_status sqkv_cuda_encoder_set_fingerprint(sqkv_cuda_encoder *e, const void *bytes, size_t size) {
    if (!e) return SQKV_ERR_INVALID_ARGUMENT;
    if (e->error != SQKV_OK) return e->error;
    if (!bytes || size < 1 || size > SQKV_MAX_FINGERPRINT)
        return fail(e, SQKV_ERR_INVALID_ARGUMENT, "set_fingerprint: size %zu not in 1..4096", size);
    e->fingerprint.assign((const uint8_t *)bytes, (const uint8_t *)bytes + size);
    e->written_size = 0;
    return SQKV_OK;
}

namespace {

constexpr uint64_t kIndexPrefix = 16, kIndexTail = 16;

/* Ancillary sections (TOKENS, FINGERPRINT) as sqkv_writer builds them. */
sqkv_cuda_status build_ancillary(const sqkv_cuda_encoder *e, std::vector<sqkv_section_blob> *out) {
    if (!e->tokens.empty()) {
        sqkv_section_blob b;
        memset(&b, 0, sizeof b);
        const sqkv_error err = sqkv_encode_tokens(e->tokens.data(), e->tokens.size(), &b);
        if (err != SQKV_OK) return err;
        out->push_back(b);
    }
    if (!e->fingerprint.empty()) {
        sqkv_section_blob b;
        memset(&b, 0, sizeof b);
        const sqkv_error err = sqkv_encode_fingerprint(e->fingerprint.data(), e->fingerprint.size(), &b);
        if (err != SQKV_OK) {
            for (auto &x : *out) sqkv_blob_free(&x);
            return err;
        }
        out->push_back(b);
    }
    return SQKV_OK;
}

bool all_done(const sqkv_cuda_encoder *e) {
    for (uint8_t d : e->layer_done)
        if (!d) return false;
    return true;
}

uint64_t ancillary_extent(const sqkv_cuda_encoder *e) {
    uint64_t n = 0;
    if (!e->tokens.empty()) n += sqkv_section_extent(4 * e->tokens.size());
    if (!e->fingerprint.empty()) n += sqkv_section_extent(e->fingerprint.size());
    return n;
}

}  // namespace

extern "C" sqkv_cuda_status sqkv_cuda_encoder_file_size(const sqkv_cuda_encoder *e, uint64_t *size) {
    if (!e || !size) return SQKV_ERR_INVALID_ARGUMENT;
    if (e->error != SQKV_OK) return e->error;
    if (!all_done(e)) return SQKV_ERR_STATE;
    if (e->opt.zstd_level > 0) {
        /* compressed sizes exist only once write_file has compressed the sections */
        if (e->written_size == 0) return SQKV_ERR_STATE;
        *size = e->written_size;
        return SQKV_OK;
    }
    uint64_t n = SQKV_HEADER_SIZE_V1 + ancillary_extent(e);
    for (uint64_t b : e->stored) n += sqkv_section_extent(b);
    const uint64_t entries = (e->tokens.empty() ? 0 : 1) + (e->fingerprint.empty() ? 0 : 1) + e->stored.size();
    n += sqkv_section_extent(kIndexPrefix + SQKV_INDEX_ENTRY_SIZE * entries + kIndexTail);
    *size = n;
    return SQKV_OK;
}

namespace {

/* write_file's host copies: kWriteRing layers in flight; zstd compression threads (the calling thread
 * writes). */
constexpr uint32_t kWriteRing = 4;
constexpr unsigned kWriteThreads = 16;

/* Pinned layer buffers and the event after each one's copy; a buffer is freed only after the copy into
 * it has finished. */
struct LayerRing {
    uint8_t *buf[kWriteRing] = {};
    cudaEvent_t ev[kWriteRing] = {};
    ~LayerRing() {
        for (uint32_t r = 0; r < kWriteRing; r++) {
            if (ev[r]) {
                cudaEventSynchronize(ev[r]);
                cudaEventDestroy(ev[r]);
            }
            if (buf[r]) cudaFreeHost(buf[r]);
        }
    }
};

/* The file after its header: sections in file order, each handed to write_fn in the form sqkv_writer
 * stores it, and its index entry. With zstd_level > 0 that form comes from the writer's own function
 * (sqkv_blob_compress_streams, codec 1 only where it is smaller), run here on the host as the sections
 * pass through: nvCOMP is not among the project's dependencies, and compressing on the host keeps the
 * bytes identical to sqkv_writer's by construction. */
struct FileSink {
    sqkv_cuda_encoder *e;
    sqkv_write_fn write_fn;
    void *ctx;
    std::vector<uint8_t> entries;
    uint64_t offset = SQKV_HEADER_SIZE_V1;
    void *cctx = nullptr; /* ZSTD_CCtx, reused across sections */

    ~FileSink() { ZSTD_freeCCtx((ZSTD_CCtx *)cctx); }

    /* b: a sealed codec-0 section (owned by the caller; it may be replaced by its codec-1 form). */
    sqkv_cuda_status put(sqkv_section_blob *b) {
        if (e->opt.zstd_level > 0) {
            const sqkv_error err = sqkv_blob_compress_streams(b, e->geo.head_dim, e->opt.zstd_level, &cctx, nullptr);
            if (err != SQKV_OK)
                return fail(e, err, "write_file: %s while compressing a section with zstd", sqkv_error_name(err));
        }
        const size_t at = entries.size();
        entries.resize(at + SQKV_INDEX_ENTRY_SIZE);
        sqkv_index_entry_pack(&b->header, offset, entries.data() + at);
        const uint64_t extent = sqkv_blob_extent(b);
        offset += extent;
        if (write_fn(ctx, b->bytes, (size_t)extent)) return fail(e, SQKV_ERR_IO, "write_file: the write callback failed");
        return SQKV_OK;
    }

    /* The layers' sections, as the kernels wrote them (sealed, codec 0), in file order. They come to the
     * host through a ring of kWriteRing pinned layer buffers, so that the copy of layer l + kWriteRing
     * overlaps the work on layer l. With zstd a pool of up to kWriteThreads threads compresses them (one
     * context each; zstd's output does not depend on a context's history, so the bytes are the
     * writer's) while the calling thread writes finished sections in order: the first error in file
     * order is the one reported, as the writer would meet it. */
    sqkv_cuda_status put_layers(const void *const *layers, cudaStream_t stream) {
        const uint32_t n_layers = e->geo.n_layers;
        const size_t ns = e->sections.size();
        const uint32_t ring_n = std::min<uint32_t>(n_layers, kWriteRing);
        LayerRing ring;
        for (uint32_t r = 0; r < ring_n; r++) {
            SQKV_CUDA_TRY(cudaMallocHost((void **)&ring.buf[r], (size_t)e->layer_capacity));
            SQKV_CUDA_TRY(cudaEventCreateWithFlags(&ring.ev[r], cudaEventDisableTiming));
        }
        auto issue_copy = [&](uint32_t l) -> sqkv_cuda_status {
            SQKV_CUDA_TRY(cudaMemcpyAsync(ring.buf[l % ring_n], layers[l], (size_t)e->layer_capacity,
                                          cudaMemcpyDeviceToHost, stream));
            SQKV_CUDA_TRY(cudaEventRecord(ring.ev[l % ring_n], stream));
            return SQKV_OK;
        };
        for (uint32_t l = 0; l < ring_n; l++) {
            const sqkv_cuda_status st = issue_copy(l);
            if (st != SQKV_OK) return st;
        }
        auto section_at = [&](uint32_t l, size_t s) { return ring.buf[l % ring_n] + e->sections[s].slot; };
        auto extent_of = [&](uint32_t l, size_t s) { return sqkv_section_extent(e->stored[(size_t)l * ns + s]); };
        auto put_entry = [&](const sqkv_section_header &h, const uint8_t *bytes, uint64_t extent) -> sqkv_cuda_status {
            const size_t at = entries.size();
            entries.resize(at + SQKV_INDEX_ENTRY_SIZE);
            sqkv_index_entry_pack(&h, offset, entries.data() + at);
            offset += extent;
            if (write_fn(ctx, bytes, (size_t)extent)) return fail(e, SQKV_ERR_IO, "write_file: the write callback failed");
            return SQKV_OK;
        };
        if (e->opt.zstd_level == 0) {
            for (uint32_t l = 0; l < n_layers; l++) {
                SQKV_CUDA_TRY(cudaEventSynchronize(ring.ev[l % ring_n]));
                for (size_t s = 0; s < ns; s++) {
                    sqkv_section_header h;
                    sqkv_section_header_unpack(section_at(l, s), &h); /* our own kernels' header: no check needed */
                    const sqkv_cuda_status st = put_entry(h, section_at(l, s), extent_of(l, s));
                    if (st != SQKV_OK) return st;
                }
                if (l + ring_n < n_layers) {
                    const sqkv_cuda_status st = issue_copy(l + ring_n);
                    if (st != SQKV_OK) return st;
                }
            }
            return SQKV_OK;
        }
        const size_t n = (size_t)n_layers * ns;
        std::vector<sqkv_section_blob> blobs(n);
        for (auto &b : blobs) memset(&b, 0, sizeof b);
        std::vector<sqkv_error> errs(n, SQKV_OK);
        std::vector<char> done(n, 0);
        std::mutex mu;
        std::condition_variable cv;
        uint32_t copies_issued = ring_n; /* layers whose copy to the host was issued */
        bool stop = false;              /* read under mu */
        std::atomic<bool> quit{false};  /* the same, read without the lock */
        cudaError_t wait_error = cudaSuccess;
        int device = 0;
        SQKV_CUDA_TRY(cudaGetDevice(&device));
        std::atomic<size_t> next{0};
        auto work = [&]() {
            void *cc = nullptr;
            bool on_device = false;
            for (size_t g; !quit.load() && (g = next.fetch_add(1)) < n;) {
                const uint32_t l = (uint32_t)(g / ns);
                const size_t s = g % ns;
                {
                    std::unique_lock<std::mutex> lock(mu);
                    cv.wait(lock, [&] { return stop || copies_issued > l; });
                    if (stop) break;
                }
                /* the event cannot be recorded again for layer l + ring_n before this layer is written */
                cudaError_t c = on_device ? cudaSuccess : cudaSetDevice(device);
                on_device = true;
                if (c == cudaSuccess) c = cudaEventSynchronize(ring.ev[l % ring_n]);
                if (c != cudaSuccess) {
                    std::lock_guard<std::mutex> lock(mu);
                    wait_error = c;
                    stop = true;
                    quit = true;
                    cv.notify_all();
                    break;
                }
                sqkv_section_blob &b = blobs[g];
                const uint64_t x = extent_of(l, s);
                if (!(b.bytes = (uint8_t *)malloc((size_t)x))) {
                    errs[g] = SQKV_ERR_OUT_OF_MEMORY;
                } else {
                    memcpy(b.bytes, section_at(l, s), (size_t)x);
                    sqkv_section_header_unpack(b.bytes, &b.header);
                    errs[g] = sqkv_blob_compress_streams(&b, e->geo.head_dim, e->opt.zstd_level, &cc, nullptr);
                }
                std::lock_guard<std::mutex> lock(mu);
                done[g] = 1;
                cv.notify_all();
            }
            ZSTD_freeCCtx((ZSTD_CCtx *)cc);
        };
        const unsigned hw = std::thread::hardware_concurrency();
        const size_t n_threads = std::min<size_t>(n, std::min(kWriteThreads, hw ? hw : 1u));
        std::vector<std::thread> pool;
        for (size_t t = 0; t < n_threads; t++) pool.emplace_back(work);
        sqkv_cuda_status st = SQKV_OK;
        for (size_t g = 0; g < n && st == SQKV_OK; g++) {
            {
                std::unique_lock<std::mutex> lock(mu);
                cv.wait(lock, [&] { return stop || done[g]; });
                if (wait_error != cudaSuccess) {
                    st = SQKV_CUDA_ERROR_BASE + (int)wait_error;
                    break;
                }
            }
            if (errs[g] != SQKV_OK) {
                st = fail(e, errs[g], "write_file: %s while compressing a section with zstd", sqkv_error_name(errs[g]));
                break;
            }
            st = put_entry(blobs[g].header, blobs[g].bytes, sqkv_blob_extent(&blobs[g]));
            sqkv_blob_free(&blobs[g]);
            const uint32_t l = (uint32_t)(g / ns);
            if (st == SQKV_OK && g % ns == ns - 1 && l + ring_n < n_layers) { /* layer l is out of its buffer */
                st = issue_copy(l + ring_n);
                if (st == SQKV_OK) {
                    std::lock_guard<std::mutex> lock(mu);
                    copies_issued = l + ring_n + 1;
                    cv.notify_all();
                }
            }
        }
        {
            std::lock_guard<std::mutex> lock(mu);
            stop = true;
            quit = true;
            cv.notify_all();
        }
        for (auto &t : pool) t.join();
        for (auto &b : blobs) sqkv_blob_free(&b);
        return st;
    }
};

}  // namespace

extern "C" sqkv_cuda_status sqkv_cuda_encoder_write_file(sqkv_cuda_encoder *e, const void *const *layers,
                                                         sqkv_write_fn write_fn, void *ctx, cudaStream_t stream) {
    if (!e || !layers || !write_fn) return SQKV_ERR_INVALID_ARGUMENT;
    if (e->error != SQKV_OK) return e->error;
    if (!all_done(e)) return fail(e, SQKV_ERR_STATE, "write_file: not every layer was encoded");
    for (uint32_t l = 0; l < e->geo.n_layers; l++)
        if (!layers[l]) return fail(e, SQKV_ERR_INVALID_ARGUMENT, "write_file: layers[%u] is NULL", l);
    std::vector<sqkv_section_blob> anc;
    sqkv_cuda_status st = build_ancillary(e, &anc);
    if (st != SQKV_OK) return fail(e, st, "write_file: building the ancillary sections failed");
    const size_t ns = e->sections.size();

    uint8_t fh[SQKV_HEADER_SIZE_V1];
    memset(fh, 0, sizeof fh);
    memcpy(fh + SQKV_HDR_MAGIC, sqkv_magic, SQKV_MAGIC_SIZE);
    sqkv_store_u16(fh + SQKV_HDR_VERSION_MAJOR, SQKV_FORMAT_VERSION_MAJOR);
    const uint32_t features = sqkv_features_of_options(&e->opt); /* as sqkv_writer declares them */
    sqkv_store_u16(fh + SQKV_HDR_VERSION_MINOR, sqkv_version_minor_for(features));
    sqkv_store_u32(fh + SQKV_HDR_HEADER_SIZE, SQKV_HEADER_SIZE_V1);
    sqkv_store_u32(fh + SQKV_HDR_REQUIRED_FEATURES, features);
    sqkv_store_u32(fh + SQKV_HDR_N_LAYERS, e->geo.n_layers);
    sqkv_store_u32(fh + SQKV_HDR_N_KV_HEADS, e->geo.n_kv_heads);
    sqkv_store_u32(fh + SQKV_HDR_HEAD_DIM, e->geo.head_dim);
    sqkv_store_u32(fh + SQKV_HDR_N_TOKENS, e->geo.n_tokens);
    sqkv_store_u32(fh + SQKV_HDR_DENSE_WINDOW, e->geo.dense_window);
    fh[SQKV_HDR_VALUE_DTYPE] = (uint8_t)e->geo.value_dtype;
    fh[SQKV_HDR_SOURCE_DTYPE] = (uint8_t)e->source_dtype;
    fh[SQKV_HDR_TILE_SIZE_LOG2] = (uint8_t)SQKV_TILE_SIZE_LOG2;
    fh[SQKV_HDR_CHECKSUM_KIND] = (uint8_t)SQKV_CHECKSUM_XXH3_64;
    sqkv_store_u64(fh + SQKV_HEADER_SIZE_V1 - 8, sqkv_checksum(fh, SQKV_HEADER_SIZE_V1 - 8));

    FileSink sink{e, write_fn, ctx, {}};
    auto cleanup = [&]() {
        for (auto &b : anc) sqkv_blob_free(&b);
    };
    if (write_fn(ctx, fh, sizeof fh)) {
        cleanup();
        return fail(e, SQKV_ERR_IO, "write_file: the write callback failed");
    }
    for (auto &b : anc)
        if ((st = sink.put(&b)) != SQKV_OK) {
            cleanup();
            return st;
        }
    cleanup();
    if ((st = sink.put_layers(layers, stream)) != SQKV_OK) return st;

    const uint64_t entries = sink.entries.size() / SQKV_INDEX_ENTRY_SIZE;
    const uint64_t index_body = kIndexPrefix + SQKV_INDEX_ENTRY_SIZE * entries + kIndexTail;
    std::vector<uint8_t> index(64 + (size_t)index_body, 0);
    uint8_t *ib = index.data() + 64;
    sqkv_store_u32(ib, e->geo.n_tokens);
    sqkv_store_u32(ib + 4, e->geo.dense_window);
    memcpy(ib + kIndexPrefix, sink.entries.data(), sink.entries.size());
    uint8_t *tail = ib + index_body - kIndexTail;
    sqkv_store_u64(tail, sink.offset);
    memcpy(tail + 8, sqkv_end_magic, SQKV_MAGIC_SIZE);
    sqkv_section_header ih;
    memset(&ih, 0, sizeof ih);
    ih.kind = SQKV_KIND_INDEX;
    ih.stored_size = ih.decoded_size = index_body;
    ih.body_checksum = sqkv_checksum(ib, (size_t)index_body);
    sqkv_section_header_pack(&ih, index.data());
    if (write_fn(ctx, index.data(), index.size())) return fail(e, SQKV_ERR_IO, "write_file: the write callback failed");
    e->written_size = sink.offset + index.size();
    return SQKV_OK;
}
