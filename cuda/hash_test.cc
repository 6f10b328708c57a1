/*
 * hash_test.cc: sqkv_cuda_checksums against xxhash.h's XXH3_64bits. The device hash splits a buffer
 * into 1024-byte blocks summed in parallel, a chain over the blocks staged 64 at a time, the stripes
 * after the last full block and the last 64 bytes: the sizes here sit on each of those edges, the
 * buffers at 8- but not 16-byte aligned addresses (what file sections give), many in one call.
 */
#include <xxhash.h>

#include "cuda_test_util.h"

using namespace sqkv_test;

namespace {

/* n buffers of the given sizes in one device arena, buffer i starting at an address that is 8 bytes
 * past a multiple of 16 when misalign16(i), else 16-aligned; random contents; checks every checksum. */
void check_sizes(const std::vector<uint64_t> &sizes, uint64_t seed, bool (*misalign16)(size_t)) {
    std::mt19937_64 rng(seed);
    std::vector<uint64_t> at(sizes.size());
    uint64_t end = 0;
    for (size_t i = 0; i < sizes.size(); i++) {
        at[i] = (end + 15) / 16 * 16 + (misalign16(i) ? 8 : 0);
        end = at[i] + sizes[i];
    }
    std::vector<uint8_t> host(end + 64);
    for (size_t i = 0; i + 8 <= host.size(); i += 8) {
        const uint64_t r = rng();
        memcpy(&host[i], &r, 8);
    }
    DevBuf arena(host.size());
    ASSERT_NE(nullptr, arena.p);
    CUDA_OK(cudaMemcpy(arena.p, host.data(), host.size(), cudaMemcpyHostToDevice));
    std::vector<const void *> ptrs(sizes.size());
    for (size_t i = 0; i < sizes.size(); i++) {
        ptrs[i] = (sizes[i] || rng() % 2) ? (const uint8_t *)arena.p + at[i] : nullptr; /* NULL is fine when empty */
        if (sizes[i]) {
            ASSERT_EQ(misalign16(i) ? 8u : 0u, (uintptr_t)ptrs[i] % 16) << "buffer " << i;
        }
    }
    const uint64_t wsz = sqkv_cuda_checksums_workspace(sizes.data(), sizes.size());
    ASSERT_GT(wsz, 0u);
    DevBuf ws(wsz);
    ASSERT_NE(nullptr, ws.p);
    /* stale workspace contents must not matter */
    CUDA_OK(cudaMemset(ws.p, 0xA5, wsz));
    std::vector<uint64_t> got(sizes.size(), 0);
    SQ_OK(sqkv_cuda_checksums(ptrs.data(), sizes.data(), sizes.size(), got.data(), ws.p, wsz, 0));
    size_t bad = 0;
    for (size_t i = 0; i < sizes.size(); i++) {
        const uint64_t want = XXH3_64bits(host.data() + at[i], sizes[i]);
        if (want != got[i] && ++bad <= 20)
            ADD_FAILURE() << "buffer " << i << " of " << sizes.size() << ", size " << sizes[i] << ": got " << std::hex
                          << got[i] << ", XXH3_64bits " << want << " (seed " << std::dec << seed << ")";
    }
    EXPECT_EQ(0u, bad) << "wrong checksums (seed " << seed << ")";
}

bool all_misaligned(size_t) { return true; }
bool odd_misaligned(size_t i) { return i % 2 == 1; }

}  // namespace

/* Every short-path size, the first long sizes (no full block: the tail stripes alone), and each block
 * count up to 9 with every stripe count of the partial block. */
TEST(CudaHash, EverySizeUpToNineBlocks) {
    SKIP_WITHOUT_GPU();
    std::vector<uint64_t> sizes;
    for (uint64_t s = 0; s <= 9 * 1024 + 64; s++) sizes.push_back(s);
    check_sizes(sizes, seed_of("every size"), all_misaligned);
}

/* Around block and stripe edges for block counts across the chain's staging (64 blocks a stage). */
TEST(CudaHash, BlockAndStripeEdges) {
    SKIP_WITHOUT_GPU();
    std::vector<uint64_t> ks;
    for (uint64_t k = 1; k <= 70; k++) ks.push_back(k);
    for (uint64_t k : {127ull, 128ull, 129ull, 130ull, 191ull, 192ull, 193ull, 255ull, 256ull, 257ull, 1000ull})
        ks.push_back(k);
    std::vector<uint64_t> sizes;
    for (uint64_t k : ks)
        for (int d : {-65, -64, -63, -9, -8, -1, 0, 1, 7, 8, 63, 64, 65, 960, 961, 1023})
            sizes.push_back(1024 * k + (uint64_t)(int64_t)d);
    check_sizes(sizes, seed_of("edges"), odd_misaligned);
}

/* Thousands of buffers of mixed sizes in one call, some empty: the block -> buffer map and the one warp
 * per buffer finish must keep every buffer's sums apart. */
TEST(CudaHash, ThousandsOfMixedBuffersInOneCall) {
    SKIP_WITHOUT_GPU();
    const uint64_t seed = seed_of("thousands");
    std::mt19937_64 rng(seed);
    std::vector<uint64_t> sizes(5000);
    for (uint64_t &s : sizes) {
        const unsigned kind = (unsigned)(rng() % 10);
        if (kind == 0) s = 0;
        else if (kind < 3) s = 1 + rng() % 240;
        else if (kind < 6) s = 241 + rng() % 4000;
        else if (kind < 9) s = 1024 * (1 + rng() % 130) + rng() % 3 - 1;
        else s = rng() % 400000;
    }
    check_sizes(sizes, seed, odd_misaligned);
}

/* Buffers of a few MB (thousands of blocks, many staging rounds of the chain) next to small ones. */
TEST(CudaHash, BuffersOfAFewMegabytes) {
    SKIP_WITHOUT_GPU();
    const std::vector<uint64_t> sizes = {(1u << 20),     (1u << 20) + 1, 3 * (1u << 20) + 7, 241, 4 * (1u << 20) - 1,
                                         5 * (1u << 20) + 1000, 0, 2 * (1u << 20) + 64, 6 * (1u << 20) - 64};
    check_sizes(sizes, seed_of("megabytes"), all_misaligned);
}

/* The Llama-3-8B shape of the encoder's sections: 512 buffers of about 127 KB. */
TEST(CudaHash, ManySectionSizedBuffers) {
    SKIP_WITHOUT_GPU();
    std::vector<uint64_t> sizes(512);
    for (size_t i = 0; i < sizes.size(); i++) sizes[i] = 127 * 1024 + 8 * (i % 97) + (i % 3);
    check_sizes(sizes, seed_of("sections"), odd_misaligned);
}
