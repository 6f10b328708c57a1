/* encode_section.cuh: the per-section steps that the general (encode_kernels.cu) and the fast
 * (encode_fast.cu) section kernels share, so that both write the same bytes by the same code: each
 * unit's payload start, and a PER_HEAD group's parameters. One block of kBlock threads per section;
 * every thread of the block calls these (they synchronize it). */
#ifndef SQKV_CUDA_ENCODE_SECTION_CUH
#define SQKV_CUDA_ENCODE_SECTION_CUH

#include "internal.cuh"
#include "numeric.cuh"

namespace sqkv_cuda {

/* Exclusive prefix of the units' kept counts into st[i].start (the units of a section are in payload
 * order), kBlock units at a time; returns the section's kept total to every thread. */
template <uint32_t kBlock>
__device__ uint64_t unit_payload_starts(UnitStat *st, uint32_t n_units) {
    __shared__ uint64_t warp_sums[kBlock / 32];
    __shared__ uint64_t carry;
    if (threadIdx.x == 0) carry = 0;
    __syncthreads();
    for (uint32_t base = 0; base < n_units; base += kBlock) {
        const uint32_t i = base + threadIdx.x;
        const uint64_t c = i < n_units ? st[i].count : 0;
        uint64_t incl = c;
        for (int off = 1; off < 32; off <<= 1) {
            const uint64_t v = __shfl_up_sync(0xFFFFFFFFu, incl, off);
            if ((threadIdx.x & 31) >= (uint32_t)off) incl += v;
        }
        if ((threadIdx.x & 31) == 31) warp_sums[threadIdx.x >> 5] = incl;
        __syncthreads();
        uint64_t before = carry;
        for (uint32_t w = 0; w < (threadIdx.x >> 5); w++) before += warp_sums[w];
        if (i < n_units) st[i].start = before + incl - c;
        __syncthreads();
        if (threadIdx.x == kBlock - 1) carry = before + incl;
        __syncthreads();
    }
    return carry;
}

/* PER_HEAD: the parameters (s, z) of head group j of the section, chosen from its units' statistics
 * as sqkv_writer chooses them (choose_params), written to the scales stream of body and returned to
 * every thread. total is the section's kept count (unit_payload_starts). */
template <uint32_t kBlock>
__device__ void head_group_params(const Geometry &g, const SectionPlan &sec, const UnitStat *st, uint32_t j,
                                  uint64_t total, uint8_t *body, uint16_t *s_out, uint16_t *z_out) {
    __shared__ uint32_t red[3];
    __shared__ uint16_t chosen[2];
    if (threadIdx.x == 0) {
        red[0] = 0;
        red[1] = 0xFFFFFFFFu;
        red[2] = 0;
    }
    __syncthreads();
    uint32_t mx = 0, mnk = 0xFFFFFFFFu, mxk = 0;
    for (uint32_t c = threadIdx.x; c < sec.chunks; c += kBlock) {
        const UnitStat &x = st[(uint64_t)j * sec.chunks + c];
        if (x.count) {
            mx = max(mx, x.max_mag);
            mnk = min(mnk, x.min_key);
            mxk = max(mxk, x.max_key);
        }
    }
    atomicMax(&red[0], mx);
    atomicMin(&red[1], mnk);
    atomicMax(&red[2], mxk);
    __syncthreads();
    if (threadIdx.x == 0) {
        const uint64_t head_first = st[(uint64_t)j * sec.chunks].start;
        const uint64_t head_end = j + 1 < sec.head_count ? st[(uint64_t)(j + 1) * sec.chunks].start : total;
        uint16_t sv, zv;
        choose_params((int)g.quantizer, g.bits, g.e_bf16 != 0, head_end > head_first ? 1u : 0u, red[0], red[1], red[2],
                      &sv, &zv);
        uint16_t *sc = (uint16_t *)(body + sec.scales_at) + (uint64_t)sec.params_per_group * j;
        sc[0] = sv;
        if (sec.params_per_group == 2) sc[1] = zv;
        chosen[0] = sv;
        chosen[1] = zv;
    }
    __syncthreads();
    *s_out = chosen[0];
    *z_out = chosen[1];
    __syncthreads(); /* chosen is rewritten by the next group's call */
}

/* Bytes [from, to) of p set to 0 by the block. */
__device__ inline void zero_bytes(uint8_t *p, uint64_t from, uint64_t to) {
    for (uint64_t i = from + threadIdx.x; i < to; i += blockDim.x) p[i] = 0;
}

/* Payload written by the fast pruning pass (encode_fast.cu write_unit_payload): every word a unit fills
 * whole is in place; each word that units share or that one fills in part is set here from the units'
 * edge fields (zeroed first, then OR-ed, with a barrier between, since neighbouring units share words). */
template <uint32_t kBlock>
__device__ void merge_unit_edges(const UnitStat *st, uint32_t n_units, uint32_t bits, uint32_t *words) {
    for (int phase = 0; phase < 2; phase++) {
        for (uint32_t i = threadIdx.x; i < n_units; i += kBlock) {
            const uint64_t n = st[i].count;
            if (n == 0) continue;
            const uint64_t B0 = st[i].start * bits, B1 = B0 + n * bits, W0 = B0 >> 5, Wl = (B1 - 1) >> 5;
            const bool first_part = (B0 & 31u) != 0 || (Wl == W0 && (B1 & 31u) != 0);
            const bool last_part = Wl != W0 && (B1 & 31u) != 0;
            if (phase == 0) {
                if (first_part) words[W0] = 0;
                if (last_part) words[Wl] = 0;
            } else {
                if (first_part) atomicOr(words + W0, st[i].edge_first);
                if (last_part) atomicOr(words + Wl, st[i].edge_last);
            }
        }
        __syncthreads();
    }
}

/* The rest of a SPARSE body once its unit starts and parameters are known: the padding after the
 * offsets and scales streams, the payload area and its padding (payload_in_place: the payload's words
 * are written, only the bytes after them are zeroed; else the area is zeroed whole below 8 bits, since
 * packing ORs codes into shared words), then the section's result (stored size, kept count) for the
 * later stages. */
__device__ inline void finish_sparse_body(const Geometry &g, const SectionPlan &sec, uint8_t *body, uint64_t total,
                                          SectionResult *result, bool payload_in_place = false) {
    const uint64_t payload_bytes = (total * g.bits + 7) / 8;
    const uint64_t end = sec.payload_at + align_up(payload_bytes, 8);
    zero_bytes(body, sec.offsets_at + 4 * sec.n_offsets, sec.scales_at);
    zero_bytes(body, sec.scales_at + 2 * sec.n_groups * sec.params_per_group, sec.payload_at);
    if (payload_in_place) {
        zero_bytes(body, sec.payload_at + 4 * ((total * g.bits + 31) / 32), end);
    } else if (g.bits < 8) {
        uint64_t *p = (uint64_t *)(body + sec.payload_at);
        for (uint64_t i = threadIdx.x; i < (end - sec.payload_at) / 8; i += blockDim.x) p[i] = 0;
    } else {
        zero_bytes(body, sec.payload_at + payload_bytes, end);
    }
    if (threadIdx.x == 0) {
        SectionResult r;
        r.stored_size = end;
        r.kept = total;
        *result = r;
    }
}

}  // namespace sqkv_cuda

#endif
