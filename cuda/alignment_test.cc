/*
 * alignment_test.cc: the alignment contract of sqkv_cuda.h. A misaligned device buffer is refused with
 * SQKV_ERR_MISALIGNED before any launch (a misaligned access inside a kernel would be a sticky CUDA
 * error that ends the process's context), and buffers that meet the contract without being 16- or
 * 256-byte aligned give exactly the CPU codec's bytes. Each test ends by checking that the context is
 * still healthy. Its own binary: if a refusal regressed into a fault, the other suites keep running.
 */
#include <xxhash.h>

#include "cuda_test_util.h"

using namespace sqkv_test;

namespace {

/* No sticky or pending CUDA error: a kernel fault would show here. */
void expect_context_healthy() {
    EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());
    EXPECT_EQ(cudaSuccess, cudaGetLastError());
}

struct Tensors {
    Case c;
    std::vector<std::vector<uint8_t>> k, v;
    size_t tensor_bytes = 0;
};

Tensors make_tensors(sqkv_dtype src, uint64_t seed) {
    Tensors t;
    t.c = small_case();
    t.c.layers = 2;
    t.c.src = src;
    t.c.gran = SQKV_SCALE_PER_TILE;
    t.c.q = SQKV_QUANT_ASYMMETRIC;
    std::mt19937_64 rng(seed);
    t.k.resize(t.c.layers);
    t.v.resize(t.c.layers);
    for (uint32_t l = 0; l < t.c.layers; l++) {
        t.k[l] = random_tensor(rng, t.c.heads, t.c.tokens, t.c.head_dim, t.c.src, t.c.e);
        t.v[l] = random_tensor(rng, t.c.heads, t.c.tokens, t.c.head_dim, t.c.src, t.c.e);
    }
    t.tensor_bytes = t.k[0].size();
    return t;
}

/* Encodes t on the GPU with its sources, output and workspace at the given byte offsets from
 * cudaMalloc'd (256-aligned) buffers; returns the first call's status and, when every call succeeded,
 * the file. */
sqkv_cuda_status encode_at(const Tensors &t, size_t src_off, size_t out_off, size_t ws_off, std::vector<uint8_t> *file) {
    const sqkv_geometry g = geometry_of(t.c);
    const sqkv_writer_options o = options_of(t.c);
    sqkv_cuda_encoder *enc = nullptr;
    sqkv_cuda_status st = sqkv_cuda_encoder_create(&g, &o, &enc);
    if (st != SQKV_OK) return st;
    sqkv_cuda_encode_sizes sz;
    sqkv_cuda_encoder_sizes(enc, &sz);
    const uint32_t L = t.c.layers;
    DevBuf in(2 * t.tensor_bytes * L + 64), out(sz.layer_capacity * L + 64);
    const uint64_t ws_size = sz.workspace_base + sz.workspace_per_layer * L;
    DevBuf ws(ws_size + 64);
    std::vector<const void *> kp(L), vp(L), lp(L);
    for (uint32_t l = 0; l < L; l++) {
        uint8_t *base = (uint8_t *)in.p + src_off + 2 * t.tensor_bytes * l;
        cudaMemcpy(base, t.k[l].data(), t.tensor_bytes, cudaMemcpyHostToDevice);
        cudaMemcpy(base + t.tensor_bytes, t.v[l].data(), t.tensor_bytes, cudaMemcpyHostToDevice);
        kp[l] = base;
        vp[l] = base + t.tensor_bytes;
        lp[l] = (uint8_t *)out.p + out_off + sz.layer_capacity * l;
    }
    st = sqkv_cuda_encode_layers(enc, 0, L, t.c.src, kp.data(), vp.data(), (void *)lp[0], sz.layer_capacity * L,
                                 (uint8_t *)ws.p + ws_off, ws_size, 0);
    if (st == SQKV_OK) st = sqkv_cuda_encode_results(enc, (uint8_t *)ws.p + ws_off, nullptr, 0);
    if (st == SQKV_OK) st = sqkv_cuda_encoder_write_file(enc, lp.data(), vec_write, file, 0);
    if (st == SQKV_ERR_MISALIGNED) {
        /* the detail names the buffer, and the error is sticky like every argument error */
        EXPECT_NE(std::string::npos, std::string(sqkv_cuda_encoder_error_detail(enc)).find("align"));
        EXPECT_EQ(SQKV_ERR_MISALIGNED, sqkv_cuda_encode_results(enc, (uint8_t *)ws.p + ws_off, nullptr, 0));
    }
    sqkv_cuda_encoder_destroy(enc);
    return st;
}

TEST(CudaAlignment, EncoderRefusesMisalignedBuffers) {
    SKIP_WITHOUT_GPU();
    const Tensors t = make_tensors(SQKV_DTYPE_FP16, seed_of("encoder refuses"));
    std::vector<uint8_t> file;
    for (size_t off : {1u, 4u, 8u}) {
        SCOPED_TRACE(off);
        EXPECT_EQ(SQKV_ERR_MISALIGNED, encode_at(t, 0, off, 0, &file)) << "out";
        EXPECT_EQ(SQKV_ERR_MISALIGNED, encode_at(t, 0, 0, off, &file)) << "workspace";
    }
    EXPECT_EQ(SQKV_ERR_MISALIGNED, encode_at(t, 1, 0, 0, &file)) << "fp16 source at an odd address";
    const Tensors t32 = make_tensors(SQKV_DTYPE_FP32, seed_of("encoder refuses fp32"));
    EXPECT_EQ(SQKV_ERR_MISALIGNED, encode_at(t32, 2, 0, 0, &file)) << "fp32 source at 2 mod 4";
    EXPECT_TRUE(file.empty());
    expect_context_healthy();
}

TEST(CudaAlignment, EncoderTakesElementAlignedSources) {
    SKIP_WITHOUT_GPU();
    /* sources aligned to their elements but not to 16 bytes leave the fast kernels (16-byte copies)
     * for the general ones; output and workspace at 16 but not 256 */
    for (sqkv_dtype src : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16, SQKV_DTYPE_FP32}) {
        const uint64_t seed = seed_of("element aligned") + (uint64_t)src;
        const Tensors t = make_tensors(src, seed);
        const std::vector<uint8_t> want = cpu_file(t.c, t.k, t.v, {});
        ASSERT_FALSE(want.empty());
        for (size_t src_off : {0u, src == SQKV_DTYPE_FP32 ? 4u : 2u, src == SQKV_DTYPE_FP32 ? 12u : 6u}) {
            SCOPED_TRACE(testing::Message() << "src dtype " << src << " source offset " << src_off << " seed " << seed);
            std::vector<uint8_t> got;
            ASSERT_EQ(SQKV_OK, encode_at(t, src_off, 16, 48, &got));
            ASSERT_EQ("", first_difference(want, got));
        }
    }
    expect_context_healthy();
}

/* The CPU file of a fresh random cache (2-bit ASYMMETRIC PER_TILE, a dense window). */
std::vector<uint8_t> cpu_reference_file(uint64_t seed) {
    Tensors t = make_tensors(SQKV_DTYPE_FP16, seed);
    t.c.window = 9;
    return cpu_file(t.c, t.k, t.v, {});
}

TEST(CudaAlignment, DecoderRefusesMisalignedBuffers) {
    SKIP_WITHOUT_GPU();
    const std::vector<uint8_t> file = cpu_reference_file(seed_of("decoder refuses"));
    ASSERT_FALSE(file.empty());
    DevBuf dfile(file.size() + 64);
    for (size_t off : {1u, 2u, 4u}) {
        CUDA_OK(cudaMemcpy((uint8_t *)dfile.p + off, file.data(), file.size(), cudaMemcpyHostToDevice));
        sqkv_cuda_decoder *d = nullptr;
        EXPECT_EQ(SQKV_ERR_MISALIGNED,
                  sqkv_cuda_decoder_create(file.data(), file.size(), (uint8_t *)dfile.p + off, nullptr, 0, &d))
            << "device_file at +" << off;
        EXPECT_EQ(nullptr, d);
    }
    CUDA_OK(cudaMemcpy(dfile.p, file.data(), file.size(), cudaMemcpyHostToDevice));
    sqkv_geometry g;
    auto fresh = [&](sqkv_cuda_decoder **d) {
        ASSERT_EQ(SQKV_OK, sqkv_cuda_decoder_create(file.data(), file.size(), dfile.p, nullptr, 0, d));
        SQ_OK(sqkv_cuda_decoder_geometry(*d, &g));
    };
    sqkv_cuda_decoder *d = nullptr;
    fresh(&d);
    uint64_t wsz = 0;
    SQ_OK(sqkv_cuda_decoder_workspace_size(d, 1, &wsz));
    const uint64_t tb = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, SQKV_DTYPE_FP16);
    DevBuf ws(wsz + 64), dout(2 * tb + 64);
    struct Trial {
        size_t k_off, v_off, ws_off;
    };
    for (const Trial &tr : {Trial{1, 0, 0}, Trial{0, 1, 0}, Trial{0, 0, 8}, Trial{0, 0, 1}}) {
        SCOPED_TRACE(testing::Message() << "k +" << tr.k_off << " v +" << tr.v_off << " workspace +" << tr.ws_off);
        sqkv_cuda_decoder_destroy(d);
        fresh(&d);
        void *kp = (uint8_t *)dout.p + tr.k_off;
        void *vp = (uint8_t *)dout.p + tb + tr.v_off;
        EXPECT_EQ(SQKV_ERR_MISALIGNED, sqkv_cuda_decode_layers(d, 0, 1, SQKV_DTYPE_FP16, &kp, &vp, tb,
                                                               (uint8_t *)ws.p + tr.ws_off, wsz, 0));
        EXPECT_NE(std::string::npos, std::string(sqkv_cuda_decoder_error_detail(d)).find("align"));
    }
    /* Mustafar export: each array aligned to its element, the workspace to 16 bytes */
    sqkv_cuda_decoder_destroy(d);
    fresh(&d);
    sqkv_mustafar_sizes ms;
    SQ_OK(sqkv_cuda_decoder_mustafar_sizes(d, 0, SQKV_TENSOR_K, 0, &ms));
    DevBuf bm(ms.n_tiles * 8 + 64), ac((ms.n_tiles + 1) * 4 + 64), vals(ms.value_count * 2 + 64);
    struct MTrial {
        size_t bm_off, ac_off, val_off, ws_off;
    };
    for (const MTrial &tr : {MTrial{4, 0, 0, 0}, MTrial{0, 2, 0, 0}, MTrial{0, 0, 1, 0}, MTrial{0, 0, 0, 8}}) {
        SCOPED_TRACE(testing::Message() << "bitmaps +" << tr.bm_off << " counts +" << tr.ac_off << " values +"
                                        << tr.val_off << " workspace +" << tr.ws_off);
        sqkv_cuda_decoder_destroy(d);
        fresh(&d);
        EXPECT_EQ(SQKV_ERR_MISALIGNED,
                  sqkv_cuda_decode_mustafar(d, 0, SQKV_TENSOR_K, 0, (int64_t *)((uint8_t *)bm.p + tr.bm_off),
                                            (int32_t *)((uint8_t *)ac.p + tr.ac_off),
                                            (uint16_t *)((uint8_t *)vals.p + tr.val_off), &ms,
                                            (uint8_t *)ws.p + tr.ws_off, wsz, 0));
    }
    sqkv_cuda_decoder_destroy(d);
    expect_context_healthy();
}

TEST(CudaAlignment, DecoderTakesFilesAtEightAndOutputsAtTwoBytes) {
    SKIP_WITHOUT_GPU();
    const uint64_t seed = seed_of("decoder takes");
    const std::vector<uint8_t> file = cpu_reference_file(seed);
    ASSERT_FALSE(file.empty());
    sqkv_reader *r = nullptr;
    ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, 0, &r));
    ASSERT_EQ(SQKV_OK, sqkv_reader_open_memory(r, file.data(), file.size()));
    sqkv_geometry g;
    ASSERT_EQ(SQKV_OK, sqkv_reader_geometry(r, &g));
    DevBuf dfile(file.size() + 64);
    /* a file at 8 mod 16 (its sections at 8 mod 16 too), outputs at 2 mod 16 (the general decode kernels),
     * a workspace at 16 mod 256; the first call validates, the second reuses the checked plan */
    uint8_t *fp = (uint8_t *)dfile.p + 24;
    CUDA_OK(cudaMemcpy(fp, file.data(), file.size(), cudaMemcpyHostToDevice));
    sqkv_cuda_decoder *d = nullptr;
    SQ_OK(sqkv_cuda_decoder_create(file.data(), file.size(), fp, nullptr, 0, &d));
    uint64_t wsz = 0;
    SQ_OK(sqkv_cuda_decoder_workspace_size(d, g.n_layers, &wsz));
    DevBuf ws(wsz + 64);
    const uint64_t tb = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, SQKV_DTYPE_FP16);
    DevBuf dout(2 * tb * g.n_layers + 64);
    std::vector<void *> kp(g.n_layers), vp(g.n_layers);
    for (uint32_t l = 0; l < g.n_layers; l++) {
        kp[l] = (uint8_t *)dout.p + 2 + 2 * tb * l;
        vp[l] = (uint8_t *)kp[l] + tb;
    }
    std::vector<uint8_t> want(tb), got(tb);
    for (int call = 0; call < 2; call++) {
        CUDA_OK(cudaMemset(dout.p, 0x5A, dout.n));
        ASSERT_EQ(SQKV_OK, sqkv_cuda_decode_layers(d, 0, g.n_layers, SQKV_DTYPE_FP16, kp.data(), vp.data(), tb,
                                                   (uint8_t *)ws.p + 16, wsz, 0))
            << sqkv_cuda_decoder_error_detail(d);
        CUDA_OK(cudaDeviceSynchronize());
        for (uint32_t l = 0; l < g.n_layers; l++)
            for (int t = 0; t < 2; t++) {
                ASSERT_EQ(SQKV_OK, sqkv_reader_decode(r, l, (sqkv_tensor)t, 0, g.n_kv_heads, SQKV_DTYPE_FP16, want.data(), tb));
                CUDA_OK(cudaMemcpy(got.data(), t ? vp[l] : kp[l], tb, cudaMemcpyDeviceToHost));
                ASSERT_TRUE(want == got) << "call " << call << " layer " << l << " tensor " << t << " seed " << seed;
            }
    }
    /* the Mustafar arrays at their element alignment only: bitmaps at 8 mod 16, counts at 4, values at 2 */
    sqkv_mustafar_sizes ms;
    ASSERT_EQ(SQKV_OK, sqkv_reader_mustafar_sizes(r, 1, SQKV_TENSOR_V, 2, &ms));
    std::vector<int64_t> bm(ms.n_tiles), gbm(ms.n_tiles);
    std::vector<int32_t> acc(ms.n_tiles + 1), gacc(ms.n_tiles + 1);
    std::vector<uint16_t> val(ms.value_count), gval(ms.value_count);
    ASSERT_EQ(SQKV_OK, sqkv_reader_decode_mustafar(r, 1, SQKV_TENSOR_V, 2, bm.data(), acc.data(), val.data(), &ms));
    DevBuf dbm(8 * ms.n_tiles + 64), dacc(4 * (ms.n_tiles + 1) + 64), dval(2 * ms.value_count + 64);
    int64_t *pbm = (int64_t *)((uint8_t *)dbm.p + 8);
    int32_t *pacc = (int32_t *)((uint8_t *)dacc.p + 4);
    uint16_t *pval = (uint16_t *)((uint8_t *)dval.p + 2);
    SQ_OK(sqkv_cuda_decode_mustafar(d, 1, SQKV_TENSOR_V, 2, pbm, pacc, pval, &ms, (uint8_t *)ws.p + 16, wsz, 0));
    CUDA_OK(cudaMemcpy(gbm.data(), pbm, 8 * ms.n_tiles, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(gacc.data(), pacc, 4 * (ms.n_tiles + 1), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(gval.data(), pval, 2 * ms.value_count, cudaMemcpyDeviceToHost));
    EXPECT_TRUE(bm == gbm) << "bitmaps differ, seed " << seed;
    EXPECT_TRUE(acc == gacc) << "accum_counts differ, seed " << seed;
    EXPECT_TRUE(val == gval) << "values differ, seed " << seed;
    sqkv_cuda_decoder_destroy(d);
    sqkv_reader_destroy(r);
    expect_context_healthy();
}

TEST(CudaAlignment, ChecksumsTakeEightByteAlignedBuffers) {
    SKIP_WITHOUT_GPU();
    std::mt19937_64 rng(seed_of("checksum alignment"));
    std::vector<uint8_t> host(300000);
    for (auto &b : host) b = (uint8_t)rng();
    DevBuf dev(host.size() + 64);
    CUDA_OK(cudaMemcpy(dev.p, host.data(), host.size(), cudaMemcpyHostToDevice));
    const uint64_t sizes[2] = {100000, 5000};
    const uint64_t wsz = sqkv_cuda_checksums_workspace(sizes, 2);
    DevBuf ws(wsz + 64);
    uint64_t got[2] = {0, 0};
    for (size_t off : {1u, 4u}) {
        const void *bufs[2] = {(uint8_t *)dev.p + 8, (uint8_t *)dev.p + off};
        EXPECT_EQ(SQKV_ERR_MISALIGNED, sqkv_cuda_checksums(bufs, sizes, 2, got, ws.p, wsz, 0)) << "buffer at +" << off;
    }
    const void *ok[2] = {(uint8_t *)dev.p + 8, (uint8_t *)dev.p + 40};
    EXPECT_EQ(SQKV_ERR_MISALIGNED, sqkv_cuda_checksums(ok, sizes, 2, got, (uint8_t *)ws.p + 8, wsz, 0)) << "workspace";
    SQ_OK(sqkv_cuda_checksums(ok, sizes, 2, got, (uint8_t *)ws.p + 16, wsz, 0));
    EXPECT_EQ(XXH3_64bits(host.data() + 8, sizes[0]), got[0]);
    EXPECT_EQ(XXH3_64bits(host.data() + 40, sizes[1]), got[1]);
    expect_context_healthy();
}

}  // namespace
