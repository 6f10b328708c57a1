/*
 * decode.cu: the host side of the GPU decoder: structure validation with the CPU library (file header,
 * tail, index, coverage, every tensor section's header), the per-call plan of sections and units (kept
 * in the workspace and reused by a repeat of the same call once its sections are checked), the
 * validation verdict read back before any decoding kernel runs, and the error reports.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <zstd.h>

#include "decode_kernels.cuh"
#include "internal.cuh"
#include "worker_pool.cuh"
#include "xxh3.cuh"

extern "C" {
#include "codec_streams.h"
#include "decode_dense.h"
#include "decode_sparse.h"
#include "format.h"
#include "reader_internal.h"
#include "section_header.h"
#include "sparse_layout.h"
#include "tile_layout.h"
}

using namespace sqkv_cuda;

namespace {

struct HostSection {
    uint32_t entry;          /* index entry in the reader */
    sqkv_section_header h;
    uint64_t body_offset;    /* in the file: the body (codec 0) or the stored body (codec 1) */
    bool packed = false;     /* codec 1: the body is decompressed on the host into each call's workspace */
    sqkv_sparse_layout lay;  /* SPARSE stream offsets (payload_at does not depend on the kept count) */
    bool validated = false;
};

/* The plan of the last call that ran as a single decoding kernel (every section already checked): it
 * stays in the first bytes of that call's workspace (sqkv_cuda.h: leave the workspace untouched between
 * calls with the same pointer), so a repeat of the call launches the kernel with nothing to upload. */
struct CachedCall {
    bool valid = false;
    const uint8_t *ws = nullptr;
    uint64_t ws_size = 0;
    uint32_t first = 0, n = 0, out_dtype = 0;
    std::vector<void *> outs; /* k_out then v_out */
    DecodeArgs args;
    const uint32_t *dense_ids = nullptr;
    uint32_t n_dense = 0;
    uint64_t max_dense = 0;
};

}  // namespace

struct sqkv_cuda_decoder {
    sqkv_reader *reader = nullptr;
    const uint8_t *host = nullptr, *dev = nullptr;
    size_t size = 0;
    unsigned flags = 0;
    sqkv_geometry geo;
    Geometry g;
    std::vector<HostSection> secs;                 /* tensor sections not superseded */
    std::vector<std::vector<uint32_t>> by_lt;      /* [2 * layer + tensor] -> secs indices, coverage order */
    sqkv_cuda_status error = SQKV_OK;
    std::string detail;
    CachedCall cache;
    /* codec 1: two pinned host buffers the bodies are decompressed into, batch after batch, and for each
     * the event after its last upload (unpack_sections) */
    uint8_t *staging[2] = {nullptr, nullptr};
    uint64_t staging_size = 0; /* of each */
    cudaEvent_t staging_free[2] = {nullptr, nullptr};
    /* codec 1: the decompression threads and their zstd contexts (dctx[w] for worker w), kept from call to
     * call (unpack_sections) */
    sqkv_cuda::WorkerPool unpack_pool;
    std::vector<ZSTD_DCtx *> dctx;
    /* Mustafar sizes per head once known ([2 * layer + tensor] -> one entry per head, n_tiles 0 while
     * unknown), so that the export calls of a cache do not redo them (mustafar_sizes_checked) */
    std::vector<std::vector<sqkv_mustafar_sizes>> m_sizes;
};

namespace {

sqkv_cuda_status fail(sqkv_cuda_decoder *d, sqkv_cuda_status st, const char *fmt, ...) {
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    d->error = st;
    d->detail = buf;
    return st;
}

std::string describe(const HostSection &s) {
    char b[200];
    snprintf(b, sizeof b, "%s section (layer %u, %s, heads %u..%u, tokens %u..%u)",
             s.h.kind == SQKV_KIND_SPARSE ? "SPARSE" : "DENSE", s.h.layer, s.h.tensor ? "V" : "K", s.h.head_start,
             s.h.head_start + s.h.head_count - 1, s.h.token_start, s.h.token_start + s.h.token_count - 1);
    return b;
}

/* The plan of one call: sections, their units, DENSE ids and XXH3 jobs; uploaded into the workspace. */
struct CallPlan {
    std::vector<uint32_t> sec_ids;  /* decoder sections */
    std::vector<DecSection> secs;
    uint32_t n_units = 0;
    std::vector<uint32_t> dense;
    uint64_t max_dense = 0;
    std::vector<HashJob> jobs;
    std::vector<uint32_t> job_sec; /* call section of each job */
    /* codec-1 sections of the call: call section, offset in the workspace's unpacked region */
    std::vector<uint32_t> unpack_sec;
    std::vector<uint64_t> unpack_at;
    uint64_t unpack_bytes = 0;
    uint64_t n_blocks = 0; /* XXH3 block sums of the jobs (the block -> job map is written on the device) */
    /* Mustafar: per unit of the export, and per head slot (decode_kernels.cuh, m_* fields) */
    std::vector<MustafarRun> m_runs;
    uint32_t m_n_units = 0;
    std::vector<uint32_t> m_head_first;
    std::vector<uint64_t> m_values, m_value_counts; /* device pointers as integers; entries */
    std::vector<uint64_t> m_bitmaps, m_accums;      /* device pointers as integers */
};

/* Workspace offsets of a call's arrays. Those the host writes come first, [0, upload_end), so that one copy
 * uploads them all (errors included, as zeros): each copy from pageable memory costs microseconds, which
 * calls exporting Mustafar's layout paid ten times over. */
struct CallLayout {
    uint64_t secs, errors, dense, jobs, map, m_runs, m_head_first, m_values, m_value_counts,
        m_bitmaps, m_accums, upload_end, units, stats, sums, hashes, m_word_base, m_head_words, unpacked, total;
};

CallLayout layout_of(const CallPlan &p) {
    CallLayout l;
    uint64_t off = 0;
    auto take = [&](uint64_t bytes) {
        const uint64_t at = off;
        off = align_up(off + bytes, 256);
        return at;
    };
    l.secs = take(p.secs.size() * sizeof(DecSection));
    l.errors = take(p.secs.size() * 4);
    l.dense = take(p.dense.size() * 4);
    l.jobs = take(p.jobs.size() * sizeof(HashJob));
    l.m_runs = take(p.m_runs.size() * sizeof(MustafarRun));
    l.m_head_first = take(p.m_head_first.size() * 4);
    l.m_values = take(p.m_values.size() * 8);
    l.m_value_counts = take(p.m_value_counts.size() * 8);
    l.m_bitmaps = take(p.m_bitmaps.size() * 8);
    l.m_accums = take(p.m_accums.size() * 8);
    l.upload_end = off;
    l.units = take(0);
    l.stats = take((uint64_t)p.n_units * sizeof(UnitStat));
    l.map = take(p.n_blocks * 4);
    l.sums = take(p.n_blocks * 64);
    l.hashes = take(p.jobs.size() * 8);
    l.m_word_base = take((uint64_t)p.m_n_units * 8);
    l.m_head_words = take(p.m_value_counts.size() * 8);
    l.unpacked = take(p.unpack_bytes);
    l.total = off;
    return l;
}

void add_section(const sqkv_cuda_decoder *d, uint32_t id, uint8_t *out, bool hash, CallPlan *p) {
    const HostSection &hs = d->secs[id];
    const sqkv_section_header &h = hs.h;
    DecSection s;
    memset(&s, 0, sizeof s);
    const uint32_t call_id = (uint32_t)p->secs.size();
    if (hs.packed) { /* s.body is set once the workspace layout is known (prepare_call) */
        p->unpack_sec.push_back(call_id);
        p->unpack_at.push_back(p->unpack_bytes);
        p->unpack_bytes = align_up(p->unpack_bytes + h.decoded_size, 256);
        hash = false; /* its stored bytes were checked on the host before decompression (decoder_create) */
    } else {
        s.body = d->dev + hs.body_offset;
    }
    s.out = out;
    s.decoded_size = h.decoded_size;
    s.kind = (uint8_t)h.kind;
    s.tensor = h.tensor;
    s.head_start = h.head_start;
    s.head_count = h.head_count;
    s.token_start = h.token_start;
    s.token_count = h.token_count;
    if (h.kind == SQKV_KIND_SPARSE) {
        s.bits = h.payload_bits;
        s.quantizer = h.quantizer;
        s.granularity = h.scale_granularity;
        s.offset_log2 = h.offset_interval_log2;
        s.params_per_group = (uint8_t)hs.lay.params_per_group;
        s.all_kept = (uint8_t)(hs.lay.all_kept ? 1 : 0);
        s.n_tiles = hs.lay.n_tiles;
        s.tiles_per_head = hs.lay.n_tiles / h.head_count;
        s.n_offsets = hs.lay.n_offsets;
        s.n_groups = hs.lay.n_groups;
        s.offsets_at = hs.lay.offsets_at;
        s.scales_at = hs.lay.scales_at;
        s.payload_at = hs.lay.payload_at;
        s.chunks = (h.token_count + 63) / 64;
        s.unit_first = p->n_units;
        s.n_units = s.chunks * h.head_count;
        p->n_units += s.n_units;
    } else {
        s.unit_first = p->n_units; /* an empty unit range, in order */
        p->dense.push_back(call_id);
        const uint64_t n = (uint64_t)h.head_count * h.token_count * d->geo.head_dim;
        if (n > p->max_dense) p->max_dense = n;
    }
    if (hash) {
        const uint64_t len = h.stored_size, nb = len > 240 ? xxh3_full_blocks(len) : 0;
        HashJob j;
        j.data = s.body;
        j.len_at = nullptr;
        j.len = len;
        j.block_first = p->n_blocks;
        j.max_blocks = nb;
        p->n_blocks += nb;
        p->jobs.push_back(j);
        p->job_sec.push_back(call_id);
    }
    p->sec_ids.push_back(id);
    p->secs.push_back(s);
}

sqkv_cuda_status rule_error(uint32_t bits) {
    if (bits & kErrSize) return SQKV_ERR_SIZE_MISMATCH;
    if (bits & (kErrStreamPad | kErrPayloadBytes)) return SQKV_ERR_PADDING;
    if (bits & kErrBitmapPad) return SQKV_ERR_BITMAP_PADDING;
    if (bits & kErrOffsets) return SQKV_ERR_OFFSET_MISMATCH;
    if (bits & kErrScale) return SQKV_ERR_SCALE;
    if (bits & (kErrPayloadPad | kErrDensePad)) return SQKV_ERR_PADDING;
    if (bits & (kErrValue | kErrOverflow)) return SQKV_ERR_VALUE;
    return SQKV_OK;
}

/* Tuning knobs of the fast decoding kernel, from the environment (measurements only; the defaults are
 * the measured best): SQKV_CUDA_DECODE_WARPS=1..8
 * (units per block). */
void apply_knobs(DecodeArgs *a) {
    const char *v = getenv("SQKV_CUDA_DECODE_WARPS");
    const int w = v ? atoi(v) : 0;
    a->fast_warps = w >= 1 && w <= 8 ? (uint32_t)w : 0u; /* 0: decode_fast.cu's measured default per width */
}

/* SQKV_CUDA_PLAN_CACHE=0 turns the reuse of a call's uploaded plan off (measurements). */
bool plan_cache_enabled() {
    const char *v = getenv("SQKV_CUDA_PLAN_CACHE");
    return !(v && v[0] == '0');
}

/* bf16 values beyond the fp16 range: the CPU decoder refuses them (VALUE); so do we, which needs the
 * kernels' verdict (one synchronization; bf16 files decoded to fp16 only). */
sqkv_cuda_status overflow_verdict(const uint32_t *dev_errors, size_t n, cudaStream_t stream) {
    std::vector<uint32_t> errs(n);
    SQKV_CUDA_TRY(cudaMemcpyAsync(errs.data(), dev_errors, n * 4, cudaMemcpyDeviceToHost, stream));
    SQKV_CUDA_TRY(cudaStreamSynchronize(stream));
    for (size_t i = 0; i < n; i++)
        if (errs[i] & kErrOverflow) return SQKV_ERR_VALUE; /* not sticky: decoding to bf16 still works */
    return SQKV_OK;
}

/* Host-side body validation with the CPU decoder (SQKV_CUDA_HOST_VALIDATE). */
sqkv_cuda_status host_validate(sqkv_cuda_decoder *d, HostSection &s) {
    const int force = !(d->flags & SQKV_CUDA_TRUSTED);
    if (s.h.kind == SQKV_KIND_SPARSE) {
        sqkv_sparse_view *view = (sqkv_sparse_view *)malloc(sizeof *view);
        if (!view) return SQKV_ERR_OUT_OF_MEMORY;
        const sqkv_error err = sqkv_reader_sparse(d->reader, s.entry, force, view);
        free(view);
        if (err) return fail(d, err, "%s", sqkv_reader_error_detail(d->reader));
    } else {
        sqkv_section_header h;
        const uint8_t *body;
        sqkv_error err = sqkv_reader_section(d->reader, s.entry, force, &h, &body);
        if (err) return fail(d, err, "%s", sqkv_reader_error_detail(d->reader));
        sqkv_diag diag;
        err = sqkv_dense_validate(body, &h, d->geo.head_dim, d->geo.value_dtype, &diag);
        if (err) return fail(d, err, "%s: %s", describe(s).c_str(), diag.text);
    }
    s.validated = true;
    return SQKV_OK;
}

/* The call's codec-1 bodies, decompressed on the host by several threads and uploaded into the
 * workspace's unpacked region; points their DecSection at it. Their stored bytes were checked at
 * creation (checksum, stream table); decompression checks the frames (COMPRESSED_STREAM).
 *
 * Batches of at most kStagingBatch bytes (or one section, if larger) go through two pinned buffers in
 * turn, so that a batch's upload overlaps the next batch's decompression and the pinned memory stays
 * small: one buffer as large as all the bodies cost more than the decompression itself on a first call
 * (page locking 65 MB, H200 machine: the call took 49.6 ms for 65 MB of bodies, 2026-11-30 14:05 run). */
constexpr uint64_t kStagingBatch = 8ull << 20;
/* decompression threads (the calling thread uploads): on the H200 machine's 16 cores this and one pool
 * for all batches took the first zstd call from 23-25 to 18-19 ms against 8 threads started per batch
 * (results/gpu_bench.md, session 5). The pool and its zstd contexts live as long as the decoder
 * (worker_pool.cuh): started per call, they cost more than a small call's decompression. */
constexpr unsigned kUnpackThreads = 16;

/* SQKV_CUDA_STAGING_BATCH=bytes overrides the batch size (tests: batches of one section, sections larger
 * than a batch). */
uint64_t staging_batch() {
    const char *v = getenv("SQKV_CUDA_STAGING_BATCH");
    const long long b = v ? atoll(v) : 0;
    return b > 0 ? (uint64_t)b : kStagingBatch;
}

sqkv_cuda_status cuda_status(cudaError_t e) { return e == cudaSuccess ? SQKV_OK : SQKV_CUDA_ERROR_BASE + (int)e; }

sqkv_cuda_status unpack_sections(sqkv_cuda_decoder *d, CallPlan &p, uint8_t *dst, cudaStream_t stream) {
    const size_t n = p.unpack_sec.size();
    if (n == 0) return SQKV_OK;
    auto body_size = [&](size_t i) { return d->secs[p.sec_ids[p.unpack_sec[i]]].h.decoded_size; };
    /* batches [first[b], first[b + 1]) in call order; a batch's bytes run from unpack_at[first] to the end
     * of its last body */
    const uint64_t batch = staging_batch();
    std::vector<size_t> first{0};
    uint64_t need = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > first.back() && p.unpack_at[i] + body_size(i) - p.unpack_at[first.back()] > batch)
            first.push_back(i);
        need = std::max<uint64_t>(need, p.unpack_at[i] + body_size(i) - p.unpack_at[first.back()]);
    }
    first.push_back(n);
    for (int k = 0; k < 2; k++) {
        if (!d->staging_free[k]) SQKV_CUDA_TRY(cudaEventCreateWithFlags(&d->staging_free[k], cudaEventDisableTiming));
        SQKV_CUDA_TRY(cudaEventSynchronize(d->staging_free[k])); /* the previous call's uploads have left them */
    }
    if (d->staging_size < need) {
        for (int k = 0; k < 2; k++) {
            if (d->staging[k]) SQKV_CUDA_TRY(cudaFreeHost(d->staging[k]));
            d->staging[k] = nullptr;
        }
        d->staging_size = 0;
        for (int k = 0; k < 2; k++) SQKV_CUDA_TRY(cudaMallocHost((void **)&d->staging[k], (size_t)need));
        d->staging_size = need;
    }
    /* Workers take sections in call order; the calling thread uploads each batch once its sections are
     * done. A worker that reaches batch b >= 2 first waits until batch b - 2 (the same buffer) was
     * uploaded: its upload was issued (issued > b - 2) and the event recorded after it has passed (that
     * event cannot be recorded again before batch b, which holds this worker's section, is done). */
    const size_t n_batches = first.size() - 1;
    std::vector<uint32_t> batch_of(n);
    for (size_t b = 0; b < n_batches; b++)
        for (size_t i = first[b]; i < first[b + 1]; i++) batch_of[i] = (uint32_t)b;
    const unsigned hw = std::thread::hardware_concurrency();
    const size_t n_threads = std::min<size_t>(n, std::min(kUnpackThreads, hw ? hw : 1u));
    std::vector<sqkv_error> errs(n, SQKV_OK);
    std::vector<std::string> why(n);
    std::mutex mu;
    std::condition_variable cv;
    std::vector<size_t> done(n_batches, 0);
    size_t issued = 0;      /* batches whose upload was issued */
    bool stop = false;      /* an error: workers leave (read under mu) */
    std::atomic<bool> quit{false}; /* the same, read without the lock before each section */
    cudaError_t wait_error = cudaSuccess;
    std::atomic<size_t> next{0};
    int device = 0; /* the workers wait on this device's events */
    SQKV_CUDA_TRY(cudaGetDevice(&device));
    if (d->dctx.size() < n_threads) d->dctx.resize(n_threads, nullptr);
    const std::function<void(unsigned)> work = [&](unsigned w) {
        if (!d->dctx[w]) d->dctx[w] = ZSTD_createDCtx(); /* kept for later calls, freed with the decoder */
        ZSTD_DCtx *dctx = d->dctx[w];
        bool on_device = false;
        for (size_t i; !quit.load() && (i = next.fetch_add(1)) < n;) {
            const size_t b = batch_of[i];
            if (b >= 2) {
                std::unique_lock<std::mutex> lock(mu);
                cv.wait(lock, [&] { return stop || issued > b - 2; });
                if (stop) break;
                lock.unlock();
                cudaError_t e = on_device ? cudaSuccess : cudaSetDevice(device);
                on_device = true;
                if (e == cudaSuccess) e = cudaEventSynchronize(d->staging_free[b & 1]);
                if (e != cudaSuccess) {
                    std::lock_guard<std::mutex> g(mu);
                    wait_error = e;
                    stop = true;
                    quit = true;
                    cv.notify_all();
                    break;
                }
            }
            if (!dctx) {
                errs[i] = SQKV_ERR_OUT_OF_MEMORY;
                why[i] = "ZSTD_createDCtx failed";
            } else {
                const HostSection &hs = d->secs[p.sec_ids[p.unpack_sec[i]]];
                sqkv_stream_plan plan;
                sqkv_stream_plan_for(&hs.h, d->geo.head_dim, &plan);
                sqkv_diag diag;
                uint8_t *to = d->staging[b & 1] + (p.unpack_at[i] - p.unpack_at[first[b]]);
                errs[i] = sqkv_streams_decode(d->host + hs.body_offset, &plan, dctx, to, &diag);
                if (errs[i] != SQKV_OK) why[i] = diag.text;
            }
            std::lock_guard<std::mutex> g(mu);
            done[b]++;
            cv.notify_all();
        }
    };
    if (!d->unpack_pool.start((unsigned)n_threads, work))
        return fail(d, SQKV_ERR_OUT_OF_MEMORY, "codec 1: cannot start the decompression threads");
    sqkv_cuda_status st = SQKV_OK;
    for (size_t b = 0; b < n_batches && st == SQKV_OK; b++) {
        const size_t lo = first[b], hi = first[b + 1];
        {
            std::unique_lock<std::mutex> lock(mu);
            cv.wait(lock, [&] { return stop || done[b] == hi - lo; });
            if (wait_error != cudaSuccess) {
                st = cuda_status(wait_error);
                break;
            }
        }
        for (size_t i = lo; i < hi; i++) /* the first failing section in call order, as the CPU would meet it */
            if (errs[i] != SQKV_OK) {
                st = fail(d, errs[i], "%s: %s", describe(d->secs[p.sec_ids[p.unpack_sec[i]]]).c_str(), why[i].c_str());
                break;
            }
        if (st != SQKV_OK) break;
        const uint64_t base = p.unpack_at[lo], bytes = p.unpack_at[hi - 1] + body_size(hi - 1) - base;
        st = cuda_status(cudaMemcpyAsync(dst + base, d->staging[b & 1], (size_t)bytes, cudaMemcpyHostToDevice, stream));
        if (st == SQKV_OK) st = cuda_status(cudaEventRecord(d->staging_free[b & 1], stream));
        if (st == SQKV_OK) {
            std::lock_guard<std::mutex> g(mu);
            issued = b + 1;
            cv.notify_all();
        }
    }
    {
        std::lock_guard<std::mutex> g(mu);
        if (st != SQKV_OK) {
            stop = true;
            quit = true;
        }
        cv.notify_all();
    }
    d->unpack_pool.wait();
    if (st != SQKV_OK) return st;
    for (size_t i = 0; i < n; i++) p.secs[p.unpack_sec[i]].body = dst + p.unpack_at[i];
    return SQKV_OK;
}

/* What a call needs of its units' statistics (UnitStat: payload starts, padded counts) beyond the
 * decoding kernel's own: nothing (dense output), the count and section passes always (the general
 * Mustafar kernel), or those passes unless the fast kernel applies (a Mustafar call whose values arrays
 * allow it). The passes run anyway on sections not yet validated: they are part of the validation. */
enum class UnitStats { kNone, kAlways, kUnlessFast };

/* Uploads the plan, runs checksums (unvalidated sections, unless trusted), the count and section
 * passes, and the validation kernels; reads the verdict back (one synchronization) when anything was
 * unvalidated. On success the workspace holds every unit's payload position. */
sqkv_cuda_status prepare_call(sqkv_cuda_decoder *d, CallPlan &p, uint8_t *ws, uint64_t ws_size, uint32_t out_dtype,
                              UnitStats stats, DecodeArgs *a, CallLayout *lay, cudaStream_t stream) {
    *lay = layout_of(p);
    if (ws_size < lay->total)
        return fail(d, SQKV_ERR_BUFFER_TOO_SMALL, "workspace holds %llu bytes, this call needs %llu",
                    (unsigned long long)ws_size, (unsigned long long)lay->total);
    bool unvalidated = false;
    for (uint32_t id : p.sec_ids) unvalidated |= !d->secs[id].validated;
    if (!p.unpack_sec.empty()) {
        const sqkv_cuda_status st = unpack_sections(d, p, ws + lay->unpacked, stream);
        if (st != SQKV_OK) return st;
    }
    memset(a, 0, sizeof *a);
    a->g = d->g;
    a->out_dtype = out_dtype;
    a->sections = (const DecSection *)(ws + lay->secs);
    a->n_sections = (uint32_t)p.secs.size();
    a->n_units = p.n_units;
    a->stats = (UnitStat *)(ws + lay->stats);
    a->errors = (uint32_t *)(ws + lay->errors);
    a->max_bits = 2;
    a->fast_bits = 0;
    a->fast_tile = 0;
    if (fast_path_enabled() && d->geo.head_dim == 128) {
        uint32_t bits = 0, gran = 0;
        bool ok = true;
        for (const DecSection &x : p.secs)
            if (x.kind == SQKV_KIND_SPARSE) {
                if ((bits && (x.bits != bits || x.granularity != gran)) || ((uintptr_t)x.out & 15u) || x.all_kept)
                    ok = false;
                /* widths and granularities the fast kernel knows (later format versions may add others) */
                if ((x.bits != 2 && x.bits != 3 && x.bits != 4 && x.bits != 8 && x.bits != 16) ||
                    (x.granularity != SQKV_SCALE_PER_HEAD && x.granularity != SQKV_SCALE_PER_TILE &&
                     x.granularity != SQKV_SCALE_NONE))
                    ok = false;
                bits = x.bits;
                gran = x.granularity;
            }
        if (ok) {
            a->fast_bits = bits;
            a->fast_tile = gran == SQKV_SCALE_PER_TILE ? 1u : 0u;
        }
    }
    /* equal unit ranges (the writer's usual plan: SPARSE sections of one shape, no DENSE window) */
    uint32_t ups = 0;
    bool uniform = !p.secs.empty();
    for (const DecSection &x : p.secs) {
        if (x.n_units == 0 || (ups && x.n_units != ups)) uniform = false;
        ups = x.n_units;
    }
    a->units_per_section = uniform ? ups : 0u;
    apply_knobs(a);
    bool small_k = true;
    for (const DecSection &x : p.secs)
        if (x.kind == SQKV_KIND_SPARSE) {
            if (x.bits > a->max_bits) a->max_bits = x.bits;
            if (x.offset_log2 > 8) small_k = false;
        }
    const bool need_stats = stats == UnitStats::kAlways || (stats == UnitStats::kUnlessFast && !a->fast_bits);
    const bool single_kernel = !unvalidated && small_k && !need_stats;
    /* kInlineSections (decode_kernels.cuh): the fast kernel alone, nothing else in the workspace that a
     * kernel reads (no DENSE section, no decompressed body, no overflow flags) */
    if (single_kernel && a->fast_bits && p.secs.size() <= kInlineSections && p.dense.empty() && p.unpack_sec.empty() &&
        !(d->geo.value_dtype == SQKV_DTYPE_BF16 && out_dtype == SQKV_DTYPE_FP16) && p.m_runs.empty()) {
        std::copy(p.secs.begin(), p.secs.end(), a->inline_sections);
        a->sections = nullptr;
        a->errors = nullptr;
        a->stats = nullptr;
        a->use_offsets = 1;
        return SQKV_OK;
    }
    {
        /* the host-written arrays in one upload; errors go up as zeros (only they are cleared: the
         * first call of a whole Llama-3-8B cache uploads about 100 KB; its checksums' block map, 250 KB
         * more, is written on the device, launch_block_map) */
        std::unique_ptr<uint8_t[]> up(new (std::nothrow) uint8_t[lay->upload_end ? lay->upload_end : 1]);
        if (!up) return fail(d, SQKV_ERR_OUT_OF_MEMORY, "plan upload: out of host memory");
        memset(up.get() + lay->errors, 0, p.secs.size() * 4);
        auto put = [&](uint64_t at, const void *src, size_t bytes) {
            if (bytes) memcpy(up.get() + at, src, bytes);
        };
        put(lay->secs, p.secs.data(), p.secs.size() * sizeof(DecSection));
        put(lay->dense, p.dense.data(), p.dense.size() * 4);
        put(lay->jobs, p.jobs.data(), p.jobs.size() * sizeof(HashJob));
        put(lay->m_runs, p.m_runs.data(), p.m_runs.size() * sizeof(MustafarRun));
        put(lay->m_head_first, p.m_head_first.data(), p.m_head_first.size() * 4);
        put(lay->m_values, p.m_values.data(), p.m_values.size() * 8);
        put(lay->m_value_counts, p.m_value_counts.data(), p.m_value_counts.size() * 8);
        put(lay->m_bitmaps, p.m_bitmaps.data(), p.m_bitmaps.size() * 8);
        put(lay->m_accums, p.m_accums.data(), p.m_accums.size() * 8);
        if (lay->upload_end)
            SQKV_CUDA_TRY(cudaMemcpyAsync(ws, up.get(), lay->upload_end, cudaMemcpyHostToDevice, stream));
    }
    /* Sections validated by an earlier call: unit starts come from their (checked) offset tables,
     * and the count and per-section passes are skipped, leaving one decoding kernel. */
    if (single_kernel) {
        a->use_offsets = 1;
        return SQKV_OK;
    }
    if (!p.jobs.empty()) {
        sqkv_cuda_status st = launch_block_map((const HashJob *)(ws + lay->jobs), (uint32_t)p.jobs.size(),
                                               (uint32_t *)(ws + lay->map), stream);
        if (st == SQKV_OK)
            st = launch_hash((const HashJob *)(ws + lay->jobs), (uint32_t)p.jobs.size(), 1, (const uint32_t *)(ws + lay->map),
                             p.n_blocks, (uint64_t *)(ws + lay->sums), (uint64_t *)(ws + lay->hashes), stream);
        if (st != SQKV_OK) return fail(d, st, "checksum launch: %s", sqkv_cuda_status_name(st));
    }
    sqkv_cuda_status st = launch_decode_prepare(*a, stream);
    if (st != SQKV_OK) return fail(d, st, "decode launch: %s", sqkv_cuda_status_name(st));
    if (!unvalidated) return SQKV_OK;
    st = launch_decode_check(*a, (const uint32_t *)(ws + lay->dense), (uint32_t)p.dense.size(), p.max_dense, stream);
    if (st != SQKV_OK) return fail(d, st, "validation launch: %s", sqkv_cuda_status_name(st));
    std::vector<uint32_t> errs(p.secs.size());
    std::vector<uint64_t> sums(p.jobs.size());
    SQKV_CUDA_TRY(cudaMemcpyAsync(errs.data(), ws + lay->errors, errs.size() * 4, cudaMemcpyDeviceToHost, stream));
    if (!sums.empty())
        SQKV_CUDA_TRY(cudaMemcpyAsync(sums.data(), ws + lay->hashes, sums.size() * 8, cudaMemcpyDeviceToHost, stream));
    SQKV_CUDA_TRY(cudaStreamSynchronize(stream));
    std::vector<uint8_t> bad_sum(p.secs.size(), 0);
    for (size_t j = 0; j < p.jobs.size(); j++)
        if (sums[j] != d->secs[p.sec_ids[p.job_sec[j]]].h.body_checksum) bad_sum[p.job_sec[j]] = 1;
    for (size_t i = 0; i < p.secs.size(); i++) {
        const HostSection &s = d->secs[p.sec_ids[i]];
        if (s.validated) continue;
        if (bad_sum[i]) return fail(d, SQKV_ERR_SECTION_CHECKSUM, "%s: body checksum mismatch (§5)", describe(s).c_str());
        const sqkv_cuda_status e = rule_error(errs[i] & ~kErrOverflow);
        if (e != SQKV_OK)
            return fail(d, e, "%s: %s (checked on the GPU)", describe(s).c_str(), sqkv_error_message((sqkv_error)e));
    }
    for (uint32_t id : p.sec_ids) d->secs[id].validated = true;
    return SQKV_OK;
}

}  // namespace

extern "C" sqkv_cuda_status sqkv_cuda_decoder_create(const void *host_file, size_t size, const void *device_file,
                                                     const sqkv_limits *limits, unsigned flags,
                                                     sqkv_cuda_decoder **out) {
    if (!out) return SQKV_ERR_INVALID_ARGUMENT;
    *out = nullptr;
    if (!host_file || !device_file || flags > 3u) return SQKV_ERR_INVALID_ARGUMENT;
    if (!is_aligned(device_file, kFileAlign)) return SQKV_ERR_MISALIGNED;
    sqkv_cuda_decoder *d = new (std::nothrow) sqkv_cuda_decoder();
    if (!d) return SQKV_ERR_OUT_OF_MEMORY;
    d->host = (const uint8_t *)host_file;
    d->dev = (const uint8_t *)device_file;
    d->size = size;
    d->flags = flags;
    /* The CPU reader checks structure; body checksums are left to the GPU unless the host validates. */
    const unsigned rflags = (flags & SQKV_CUDA_HOST_VALIDATE) && !(flags & SQKV_CUDA_TRUSTED) ? 0u : SQKV_READER_TRUSTED;
    sqkv_error err = sqkv_reader_create(limits, rflags, &d->reader);
    if (err == SQKV_OK) err = sqkv_reader_open_memory(d->reader, host_file, size);
    if (err == SQKV_OK) err = sqkv_reader_geometry(d->reader, &d->geo);
    if (err != SQKV_OK) {
        *out = d; /* the caller reads the detail, then destroys */
        return fail(d, err, "%s", d->reader ? sqkv_reader_error_detail(d->reader) : "out of memory");
    }
    const sqkv_geometry &geo = d->geo;
    d->g.n_heads = geo.n_kv_heads;
    d->g.n_tokens = geo.n_tokens;
    d->g.head_dim = geo.head_dim;
    d->g.e_bf16 = geo.value_dtype == SQKV_DTYPE_BF16;
    d->g.hb = (geo.head_dim + 63) / 64;
    d->by_lt.assign(2 * (size_t)geo.n_layers, {});
    d->m_sizes.assign(2 * (size_t)geo.n_layers, {});
    const sqkv_reader *r = d->reader;
    for (uint32_t lt = 0; lt < 2 * geo.n_layers; lt++) {
        for (uint32_t pos = r->index.lt_first[lt]; pos < r->index.lt_first[lt + 1]; pos++) {
            HostSection s;
            s.entry = r->index.tensors[pos].entry;
            const uint8_t *body = nullptr;
            /* A codec-1 section's stored bytes are checked here, on the host, before anything of them is
             * used (§5.1: checksum first, unless trusted); codec-0 bodies are hashed on the GPU. The codec
             * byte read here only chooses that; the call below checks the header as always. */
            const uint64_t at = r->index.entries[s.entry].offset;
            const bool packed = at + SQKV_SECTION_HEADER_SIZE <= size && d->host[at + SQKV_SEC_CODEC] != SQKV_CODEC_NONE;
            const int force_checksum = packed && !(flags & SQKV_CUDA_TRUSTED);
            /* header checksum, kind, codec, fields, sizes, index agreement, padding after the body;
             * codec 1: the stream table (the frames are decoded by each call, unpack_sections) */
            err = sqkv_reader_section_stored(d->reader, s.entry, force_checksum, &s.h, &body);
            if (err != SQKV_OK) {
                *out = d;
                return fail(d, err, "%s", sqkv_reader_error_detail(d->reader));
            }
            /* codec 1 (zstd): each decode call decompresses the body on the host into its workspace
             * (sqkv_cuda_decoder_workspace_size counts the room) */
            s.packed = s.h.codec != SQKV_CODEC_NONE;
            if (s.packed && !force_checksum && !(flags & SQKV_CUDA_TRUSTED)) { /* the header lied to the peek */
                *out = d;
                return fail(d, SQKV_ERR_STATE, "%s: codec changed between two reads of the header", describe(s).c_str());
            }
            s.body_offset = (uint64_t)(body - d->host); /* a memory reader: a pointer into host_file */
            if (s.h.kind == SQKV_KIND_SPARSE) {
                const uint64_t nt = sqkv_tiles_per_head((sqkv_tensor)s.h.tensor, s.h.token_count, geo.head_dim) *
                                    s.h.head_count;
                /* flags: the reader accepted only ALL_KEPT (bit 0), and only in a file that declares it */
                sqkv_sparse_layout_compute_flags(nt, s.h.offset_interval_log2, s.h.quantizer, s.h.scale_granularity,
                                                 s.h.payload_bits, s.h.head_count, 0,
                                                 (s.h.flags & SQKV_SECTION_FLAG_ALL_KEPT) != 0, &s.lay);
                if (s.lay.payload_at > s.h.decoded_size) {
                    *out = d;
                    return fail(d, SQKV_ERR_SIZE_MISMATCH, "%s: decoded_size below its streams", describe(s).c_str());
                }
            }
            d->by_lt[lt].push_back((uint32_t)d->secs.size());
            d->secs.push_back(s);
        }
    }
    *out = d;
    return SQKV_OK;
}

extern "C" void sqkv_cuda_decoder_destroy(sqkv_cuda_decoder *d) {
    if (!d) return;
    sqkv_reader_destroy(d->reader);
    for (int k = 0; k < 2; k++) {
        if (d->staging_free[k]) {
            cudaEventSynchronize(d->staging_free[k]); /* an upload may still read the staging buffer */
            cudaEventDestroy(d->staging_free[k]);
        }
        if (d->staging[k]) cudaFreeHost(d->staging[k]);
    }
    for (ZSTD_DCtx *c : d->dctx) ZSTD_freeDCtx(c); /* the pool's threads are idle between calls */
    delete d;
}

extern "C" const char *sqkv_cuda_decoder_error_detail(const sqkv_cuda_decoder *d) { return d ? d->detail.c_str() : ""; }

extern "C" sqkv_cuda_status sqkv_cuda_decoder_geometry(const sqkv_cuda_decoder *d, sqkv_geometry *out) {
    if (!d || !out) return SQKV_ERR_INVALID_ARGUMENT;
    if (d->error != SQKV_OK) return d->error;
    *out = d->geo;
    return SQKV_OK;
}

namespace {

CallPlan plan_layers(const sqkv_cuda_decoder *d, uint32_t first, uint32_t n, void *const *k_out, void *const *v_out,
                     bool sizing = false) {
    CallPlan p;
    const bool hash = !(d->flags & (SQKV_CUDA_TRUSTED | SQKV_CUDA_HOST_VALIDATE));
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t t = 0; t < 2; t++)
            for (uint32_t id : d->by_lt[2 * (size_t)(first + i) + t])
                add_section(d, id, (uint8_t *)(t ? (v_out ? v_out[i] : nullptr) : (k_out ? k_out[i] : nullptr)),
                            hash && (sizing || !d->secs[id].validated), &p);
    if (sizing) { /* room for a Mustafar call on any heads of both tensors of these layers */
        const size_t slots = 2 * (size_t)n * d->geo.n_kv_heads;
        size_t runs = 0; /* a run per head of each SPARSE section at most */
        for (const DecSection &x : p.secs)
            if (x.kind == SQKV_KIND_SPARSE) runs += x.head_count;
        p.m_runs.resize(runs);
        p.m_n_units = p.n_units;
        p.m_head_first.resize(slots + 1);
        p.m_values.resize(slots);
        p.m_value_counts.resize(slots);
        p.m_bitmaps.resize(slots);
        p.m_accums.resize(slots);
    }
    return p;
}

}  // namespace

extern "C" sqkv_cuda_status sqkv_cuda_decoder_workspace_size(const sqkv_cuda_decoder *d, uint32_t n_layers,
                                                             uint64_t *size) {
    if (!d || !size) return SQKV_ERR_INVALID_ARGUMENT;
    if (d->error != SQKV_OK) return d->error;
    std::vector<uint64_t> per;
    for (uint32_t l = 0; l < d->geo.n_layers; l++)
        per.push_back(layout_of(plan_layers(d, l, 1, nullptr, nullptr, true)).total);
    std::sort(per.rbegin(), per.rend());
    uint64_t total = 256 * 16;
    for (uint32_t i = 0; i < n_layers && i < per.size(); i++) total += per[i];
    *size = total;
    return SQKV_OK;
}

extern "C" sqkv_cuda_status sqkv_cuda_decode_layers(sqkv_cuda_decoder *d, uint32_t first_layer, uint32_t n_layers,
                                                    sqkv_dtype out_dtype, void *const *k_out, void *const *v_out,
                                                    uint64_t out_size, void *workspace, uint64_t workspace_size,
                                                    cudaStream_t stream) {
    if (!d) return SQKV_ERR_INVALID_ARGUMENT;
    if (d->error != SQKV_OK) return d->error;
    if (n_layers == 0) return SQKV_OK;
    if (!k_out || !v_out || !workspace)
        return fail(d, SQKV_ERR_INVALID_ARGUMENT, "decode_layers: k_out, v_out or workspace is NULL");
    if (first_layer >= d->geo.n_layers || n_layers > d->geo.n_layers - first_layer)
        return fail(d, SQKV_ERR_INVALID_ARGUMENT, "decode_layers: layers out of range");
    if (out_dtype != SQKV_DTYPE_FP16 && out_dtype != SQKV_DTYPE_BF16)
        return fail(d, SQKV_ERR_INVALID_ARGUMENT, "decode_layers: out_dtype must be FP16 or BF16");
    const uint64_t need = sqkv_dense_size(d->geo.n_kv_heads, d->geo.n_tokens, d->geo.head_dim, out_dtype);
    if (need == 0 || out_size < need)
        return fail(d, SQKV_ERR_BUFFER_TOO_SMALL, "decode_layers: out_size %llu, each tensor needs %llu",
                    (unsigned long long)out_size, (unsigned long long)need);
    if (!is_aligned(workspace, kWorkspaceAlign))
        return fail(d, SQKV_ERR_MISALIGNED, "decode_layers: workspace must be 16-byte aligned");
    for (uint32_t i = 0; i < n_layers; i++) {
        if (!k_out[i] || !v_out[i]) return fail(d, SQKV_ERR_INVALID_ARGUMENT, "decode_layers: output %u is NULL", i);
        if (!is_aligned(k_out[i], 2) || !is_aligned(v_out[i], 2))
            return fail(d, SQKV_ERR_MISALIGNED, "decode_layers: output %u is not aligned to its 2-byte elements", i);
    }
    if (d->flags & SQKV_CUDA_HOST_VALIDATE)
        for (uint32_t i = 0; i < n_layers; i++)
            for (uint32_t t = 0; t < 2; t++)
                for (uint32_t id : d->by_lt[2 * (size_t)(first_layer + i) + t])
                    if (!d->secs[id].validated) {
                        const sqkv_cuda_status st = host_validate(d, d->secs[id]);
                        if (st != SQKV_OK) return st;
                    }
    uint8_t *ws = (uint8_t *)workspace;
    const bool overflow_check = d->geo.value_dtype == SQKV_DTYPE_BF16 && out_dtype == SQKV_DTYPE_FP16;
    CachedCall &c = d->cache;
    if (c.valid && plan_cache_enabled() && c.ws == ws && c.ws_size == workspace_size && c.first == first_layer &&
        c.n == n_layers && c.out_dtype == (uint32_t)out_dtype &&
        std::equal(k_out, k_out + n_layers, c.outs.begin()) &&
        std::equal(v_out, v_out + n_layers, c.outs.begin() + n_layers)) {
        /* the same call again: its plan is still in the workspace, its sections were checked */
        DecodeArgs a = c.args;
        apply_knobs(&a);
        if (overflow_check) SQKV_CUDA_TRY(cudaMemsetAsync(a.errors, 0, (size_t)a.n_sections * 4, stream));
        const sqkv_cuda_status st = launch_decode_dense(a, c.dense_ids, c.n_dense, c.max_dense, stream);
        if (st != SQKV_OK) return fail(d, st, "decode launch: %s", sqkv_cuda_status_name(st));
        return overflow_check ? overflow_verdict(a.errors, a.n_sections, stream) : SQKV_OK;
    }
    c.valid = false; /* this call's plan replaces whatever its workspace held */
    CallPlan p = plan_layers(d, first_layer, n_layers, k_out, v_out);
    DecodeArgs a;
    CallLayout lay;
    sqkv_cuda_status st = prepare_call(d, p, ws, workspace_size, (uint32_t)out_dtype, UnitStats::kNone, &a, &lay, stream);
    if (st != SQKV_OK) return st;
    st = launch_decode_dense(a, (const uint32_t *)(ws + lay.dense), (uint32_t)p.dense.size(), p.max_dense, stream);
    if (st != SQKV_OK) return fail(d, st, "decode launch: %s", sqkv_cuda_status_name(st));
    if (a.use_offsets) { /* a single decoding kernel: remember the call */
        c.ws = ws;
        c.ws_size = workspace_size;
        c.first = first_layer;
        c.n = n_layers;
        c.out_dtype = (uint32_t)out_dtype;
        c.outs.assign(k_out, k_out + n_layers);
        c.outs.insert(c.outs.end(), v_out, v_out + n_layers);
        c.args = a;
        c.dense_ids = (const uint32_t *)(ws + lay.dense);
        c.n_dense = (uint32_t)p.dense.size();
        c.max_dense = p.max_dense;
        c.valid = true;
    }
    return overflow_check ? overflow_verdict(a.errors, p.secs.size(), stream) : SQKV_OK;
}

namespace {

/* Mustafar sizes of one head from the host copy of bitmaps this decoder has already checked (GPU
 * validation, or host validation, in an earlier call): the same tiles and value words as
 * sqkv_reader_mustafar_sizes, which first checks every section of the head again (checksum and every
 * body rule). That check took about 0.16 ms per head and call on the Llama-3-8B shape, twice per
 * export call: 196 ms to export the 512 heads of a cache. Returns false where it does not apply (a
 * section not checked yet, compressed or ALL_KEPT, a section off the 64-token grid, an empty sparse
 * region, a count beyond int32); the reader then decides, with its errors. */
bool mustafar_sizes_checked(const sqkv_cuda_decoder *d, uint32_t layer, uint32_t tensor, uint32_t head,
                            sqkv_mustafar_sizes *out) {
    const uint64_t sparse_tokens = (uint64_t)d->geo.n_tokens - d->geo.dense_window;
    uint64_t tiles = 0, words = 0;
    for (uint32_t id : d->by_lt[2 * (size_t)layer + tensor]) {
        const HostSection &s = d->secs[id];
        if (s.h.kind != SQKV_KIND_SPARSE || head < s.h.head_start || head >= s.h.head_start + s.h.head_count ||
            s.h.token_start >= sparse_tokens)
            continue;
        if (!s.validated || s.packed || s.lay.all_kept || s.h.token_start % 64 != 0) return false;
        const uint64_t per_head = s.lay.n_tiles / s.h.head_count;
        const uint8_t *bm = d->host + s.body_offset + s.lay.bitmaps_at + 8 * per_head * (head - s.h.head_start);
        for (uint64_t n = 0; n < per_head; n++)
            words += sqkv_mustafar_tile_words((uint64_t)__builtin_popcountll(sqkv_load_u64(bm + 8 * n)));
        tiles += per_head;
    }
    if (sparse_tokens == 0 || tiles == 0 || words > INT32_MAX) return false;
    out->n_tiles = tiles;
    out->value_count = 2 * words + SQKV_MUSTAFAR_TAIL_SLACK;
    return true;
}

}  // namespace

extern "C" sqkv_cuda_status sqkv_cuda_decoder_mustafar_sizes(sqkv_cuda_decoder *d, uint32_t layer, sqkv_tensor tensor,
                                                             uint32_t head, sqkv_mustafar_sizes *sizes) {
    if (!d) return SQKV_ERR_INVALID_ARGUMENT;
    if (d->error != SQKV_OK) return d->error;
    if (!sizes || layer >= d->geo.n_layers || head >= d->geo.n_kv_heads ||
        (tensor != SQKV_TENSOR_K && tensor != SQKV_TENSOR_V)) {
        /* the reader's own argument errors */
        const sqkv_error err = sqkv_reader_mustafar_sizes(d->reader, layer, tensor, head, sizes);
        return fail(d, err != SQKV_OK ? err : SQKV_ERR_INVALID_ARGUMENT, "%s", sqkv_reader_error_detail(d->reader));
    }
    std::vector<sqkv_mustafar_sizes> &known = d->m_sizes[2 * (size_t)layer + tensor];
    if (!known.empty() && known[head].n_tiles != 0) {
        *sizes = known[head];
        return SQKV_OK;
    }
    if (known.empty()) known.assign(d->geo.n_kv_heads, sqkv_mustafar_sizes{0, 0});
    sqkv_mustafar_sizes got = {0, 0};
    if (mustafar_sizes_checked(d, layer, (uint32_t)tensor, head, &got)) {
        known[head] = got; /* sizes from bitmaps checked earlier do not change: keep them */
    } else {
        /* The reader checks the head's sections and gives the sizes of every head of its head range at once
         * (a zstd section was decompressed once per head asked, and the export asks again: 308 ms to export
         * every head of the Llama-3-8B shape). Its sizes, checked like the head's, are kept too. */
        std::vector<sqkv_mustafar_sizes> range(d->geo.n_kv_heads);
        const sqkv_error err = sqkv_reader_mustafar_sizes_shared(d->reader, layer, tensor, head, range.data());
        if (err != SQKV_OK) return fail(d, err, "%s", sqkv_reader_error_detail(d->reader));
        got = range[head];
        for (uint32_t h = 0; h < d->geo.n_kv_heads; h++)
            if (range[h].n_tiles != 0) known[h] = range[h];
    }
    *sizes = got;
    return SQKV_OK;
}

namespace {

/* Heads [head_start, head_start + head_count) of one layer and tensor in a Mustafar export, and where
 * their arrays go (sqkv_cuda_decode_mustafar_heads's arguments). */
struct MustafarJob {
    uint32_t layer;
    sqkv_tensor tensor;
    uint32_t head_start, head_count;
    int64_t *bitmaps;
    int32_t *accum_counts;
    uint16_t *const *values;
    const sqkv_mustafar_sizes *sizes;
};

/* Mustafar's layout of the jobs' heads: one plan, one upload and one set of kernels for all of them
 * (sqkv_cuda_decode_mustafar is one job of one head; sqkv_cuda_decode_mustafar_layers two jobs a layer). */
sqkv_cuda_status export_mustafar(sqkv_cuda_decoder *d, const char *fn, const MustafarJob *jobs, size_t n_jobs,
                                 void *workspace, uint64_t workspace_size, cudaStream_t stream) {
    if (!d) return SQKV_ERR_INVALID_ARGUMENT;
    if (d->error != SQKV_OK) return d->error;
    if (!workspace) return fail(d, SQKV_ERR_INVALID_ARGUMENT, "%s: workspace is NULL", fn);
    if (!is_aligned(workspace, kWorkspaceAlign))
        return fail(d, SQKV_ERR_MISALIGNED, "%s: workspace must be 16-byte aligned", fn);
    /* the fast kernel stores each tile's values as 16-byte groups */
    bool values_aligned16 = true;
    std::vector<uint64_t> job_tiles(n_jobs, 0);
    for (size_t jn = 0; jn < n_jobs; jn++) {
        const MustafarJob &j = jobs[jn];
        if (!j.bitmaps || !j.accum_counts || !j.values || !j.sizes)
            return fail(d, SQKV_ERR_INVALID_ARGUMENT, "%s: a pointer is NULL", fn);
        if (!is_aligned(j.bitmaps, 8) || !is_aligned(j.accum_counts, 4))
            return fail(d, SQKV_ERR_MISALIGNED, "%s: bitmaps and accum_counts must be aligned to their elements", fn);
        if (j.layer >= d->geo.n_layers || (j.tensor != SQKV_TENSOR_K && j.tensor != SQKV_TENSOR_V) ||
            j.head_count == 0 || j.head_start >= d->geo.n_kv_heads || j.head_count > d->geo.n_kv_heads - j.head_start)
            return fail(d, SQKV_ERR_INVALID_ARGUMENT, "%s: layer, tensor or heads out of range", fn);
        for (uint32_t i = 0; i < j.head_count; i++) {
            if (!j.values[i]) return fail(d, SQKV_ERR_INVALID_ARGUMENT, "%s: a pointer is NULL (values[%u])", fn, i);
            if (!is_aligned(j.values[i], 2))
                return fail(d, SQKV_ERR_MISALIGNED, "%s: values[%u] is not aligned to its elements", fn, i);
            values_aligned16 &= is_aligned(j.values[i], 16);
        }
        for (uint32_t i = 0; i < j.head_count; i++) {
            const uint32_t head = j.head_start + i;
            sqkv_mustafar_sizes want = {0, 0};
            const sqkv_cuda_status st = sqkv_cuda_decoder_mustafar_sizes(d, j.layer, j.tensor, head, &want);
            if (st != SQKV_OK) return st;
            if (j.sizes[i].n_tiles != want.n_tiles || j.sizes[i].value_count < want.value_count)
                return fail(d, SQKV_ERR_BUFFER_TOO_SMALL,
                            "%s: sizes of layer %u, %s, head %u differ from sqkv_cuda_decoder_mustafar_sizes", fn, j.layer,
                            j.tensor == SQKV_TENSOR_K ? "K" : "V", head);
            if (i > 0 && want.n_tiles != job_tiles[jn])
                return fail(d, SQKV_ERR_STATE, "%s: heads %u and %u have different tile counts", fn, j.head_start, head);
            job_tiles[jn] = want.n_tiles;
        }
    }
    d->cache.valid = false; /* this call's plan goes into the workspace */
    CallPlan p;
    const bool hash = !(d->flags & (SQKV_CUDA_TRUSTED | SQKV_CUDA_HOST_VALIDATE));
    /* room for the plan at once (a whole cache's export: 512 sections and head slots; growing the arrays
     * was much of the host's 45 us) */
    size_t n_secs = 0, n_slots = 0;
    for (size_t jn = 0; jn < n_jobs; jn++) {
        n_secs += d->by_lt[2 * (size_t)jobs[jn].layer + jobs[jn].tensor].size();
        n_slots += jobs[jn].head_count;
    }
    p.secs.reserve(n_secs);
    p.sec_ids.reserve(n_secs);
    p.m_runs.reserve(n_secs * d->geo.n_kv_heads < 4 * n_slots ? n_secs * d->geo.n_kv_heads : 4 * n_slots);
    p.m_head_first.reserve(n_slots + 1);
    p.m_values.reserve(n_slots);
    p.m_value_counts.reserve(n_slots);
    p.m_bitmaps.reserve(n_slots);
    p.m_accums.reserve(n_slots);
    std::vector<uint32_t> ids, first_unit;
    for (size_t jn = 0; jn < n_jobs; jn++) {
        const MustafarJob &j = jobs[jn];
        const uint32_t head_end = j.head_start + j.head_count;
        /* every SPARSE section holding one of the job's heads, once, in coverage order */
        ids.clear();
        first_unit.clear();
        for (uint32_t id : d->by_lt[2 * (size_t)j.layer + j.tensor]) {
            const HostSection &s = d->secs[id];
            if (s.h.kind != SQKV_KIND_SPARSE || s.h.head_start >= head_end || s.h.head_start + s.h.head_count <= j.head_start)
                continue;
            if ((d->flags & SQKV_CUDA_HOST_VALIDATE) && !s.validated) {
                const sqkv_cuda_status st = host_validate(d, d->secs[id]);
                if (st != SQKV_OK) return st;
            }
            ids.push_back((uint32_t)p.secs.size());
            first_unit.push_back(p.n_units);
            add_section(d, id, nullptr, hash && !s.validated, &p);
        }
        for (uint32_t i = 0; i < j.head_count; i++) {
            const uint32_t head = j.head_start + i, slot = (uint32_t)p.m_values.size();
            p.m_head_first.push_back(p.m_n_units);
            uint64_t tiles = 0;
            for (size_t q = 0; q < ids.size(); q++) {
                const DecSection &ds = p.secs[ids[q]];
                if (head < ds.head_start || head >= ds.head_start + ds.head_count) continue;
                const uint32_t hj = head - ds.head_start;
                MustafarRun run;
                run.m_first = p.m_n_units;
                run.unit_first = first_unit[q] + hj * ds.chunks;
                run.slot = slot;
                run.tile_step = ds.tensor == 0 ? d->geo.head_dim : 64 * d->g.hb; /* a chunk's tiles */
                run.tile_base = tiles;
                p.m_runs.push_back(run);
                p.m_n_units += ds.chunks;
                tiles += ds.tiles_per_head;
            }
            if (tiles != job_tiles[jn])
                return fail(d, SQKV_ERR_STATE, "%s: tile count of head %u disagrees with sqkv_cuda_decoder_mustafar_sizes",
                            fn, head);
            p.m_values.push_back((uint64_t)(uintptr_t)j.values[i]);
            p.m_value_counts.push_back(j.sizes[i].value_count);
            p.m_bitmaps.push_back((uint64_t)(uintptr_t)(j.bitmaps + (uint64_t)i * job_tiles[jn]));
            p.m_accums.push_back((uint64_t)(uintptr_t)(j.accum_counts + (uint64_t)i * (job_tiles[jn] + 1)));
        }
    }
    p.m_head_first.push_back(p.m_n_units);
    DecodeArgs a;
    CallLayout lay;
    uint8_t *ws = (uint8_t *)workspace;
    /* the general kernel takes each unit's payload start and padded count from the count and section
     * passes; the fast one, on sections already validated, from the offset tables and the scan kernel */
    sqkv_cuda_status st = prepare_call(d, p, ws, workspace_size, 1,
                                       values_aligned16 ? UnitStats::kUnlessFast : UnitStats::kAlways, &a, &lay, stream);
    if (st != SQKV_OK) return st;
    a.m_runs = (const MustafarRun *)(ws + lay.m_runs);
    a.m_n_runs = (uint32_t)p.m_runs.size();
    a.m_n_units = p.m_n_units;
    a.m_head_first = (const uint32_t *)(ws + lay.m_head_first);
    a.m_n_heads = (uint32_t)p.m_values.size();
    a.m_word_base = (uint64_t *)(ws + lay.m_word_base);
    a.m_head_words = (uint64_t *)(ws + lay.m_head_words);
    a.m_bitmaps = (int64_t *const *)(ws + lay.m_bitmaps);
    a.m_accum = (int32_t *const *)(ws + lay.m_accums);
    a.m_values = (uint16_t *const *)(ws + lay.m_values);
    a.m_value_counts = (const uint64_t *)(ws + lay.m_value_counts);
    a.m_fast = a.fast_bits != 0 && values_aligned16;
    st = launch_decode_mustafar(a, stream);
    if (st != SQKV_OK) return fail(d, st, "mustafar launch: %s", sqkv_cuda_status_name(st));
    return SQKV_OK;
}

}  // namespace

extern "C" sqkv_cuda_status sqkv_cuda_decode_mustafar(sqkv_cuda_decoder *d, uint32_t layer, sqkv_tensor tensor,
                                                      uint32_t head, int64_t *bitmaps, int32_t *accum_counts,
                                                      uint16_t *values, const sqkv_mustafar_sizes *sizes,
                                                      void *workspace, uint64_t workspace_size, cudaStream_t stream) {
    uint16_t *const one[1] = {values};
    const MustafarJob job = {layer, tensor, head, 1, bitmaps, accum_counts, one, sizes};
    return export_mustafar(d, "decode_mustafar", &job, 1, workspace, workspace_size, stream);
}

extern "C" sqkv_cuda_status sqkv_cuda_decode_mustafar_heads(sqkv_cuda_decoder *d, uint32_t layer, sqkv_tensor tensor,
                                                            uint32_t head_start, uint32_t head_count, int64_t *bitmaps,
                                                            int32_t *accum_counts, uint16_t *const *values,
                                                            const sqkv_mustafar_sizes *sizes, void *workspace,
                                                            uint64_t workspace_size, cudaStream_t stream) {
    const MustafarJob job = {layer, tensor, head_start, head_count, bitmaps, accum_counts, values, sizes};
    return export_mustafar(d, "decode_mustafar_heads", &job, 1, workspace, workspace_size, stream);
}

extern "C" sqkv_cuda_status sqkv_cuda_decode_mustafar_layers(sqkv_cuda_decoder *d, uint32_t first_layer,
                                                             uint32_t n_layers, const sqkv_cuda_mustafar_out *k_out,
                                                             const sqkv_cuda_mustafar_out *v_out, void *workspace,
                                                             uint64_t workspace_size, cudaStream_t stream) {
    if (!d) return SQKV_ERR_INVALID_ARGUMENT;
    if (d->error != SQKV_OK) return d->error;
    if (n_layers == 0) return SQKV_OK;
    if (!k_out || !v_out) return fail(d, SQKV_ERR_INVALID_ARGUMENT, "decode_mustafar_layers: k_out or v_out is NULL");
    if (first_layer >= d->geo.n_layers || n_layers > d->geo.n_layers - first_layer)
        return fail(d, SQKV_ERR_INVALID_ARGUMENT, "decode_mustafar_layers: layers out of range");
    std::vector<MustafarJob> jobs;
    jobs.reserve(2 * (size_t)n_layers);
    for (uint32_t i = 0; i < n_layers; i++)
        for (uint32_t t = 0; t < 2; t++) {
            const sqkv_cuda_mustafar_out &o = t ? v_out[i] : k_out[i];
            jobs.push_back({first_layer + i, (sqkv_tensor)t, 0, d->geo.n_kv_heads, o.bitmaps, o.accum_counts, o.values,
                            o.sizes});
        }
    return export_mustafar(d, "decode_mustafar_layers", jobs.data(), jobs.size(), workspace, workspace_size, stream);
}
