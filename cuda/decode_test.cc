/*
 * decode_test.cc: GPU decoding equals CPU decoding bit for bit (dense fp16/bf16 output and Mustafar's
 * layout), on fresh random caches encoded by the CPU writer across geometries and options; corrupted
 * files give the CPU decoder's error; a GPU-resident cache saved to a file and restored to the GPU.
 */
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>

#include "cuda_test_util.h"

extern "C" {
#include "section_header.h"
}

using namespace sqkv_test;

namespace {

Case base_case() {
    Case c = small_case();
    c.window = 9;
    return c;
}

std::vector<uint8_t> make_file(const Case &c, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::vector<uint8_t>> k(c.layers), v(c.layers);
    for (uint32_t l = 0; l < c.layers; l++) {
        k[l] = random_tensor(rng, c.heads, c.tokens, c.head_dim, c.src, c.e);
        v[l] = random_tensor(rng, c.heads, c.tokens, c.head_dim, c.src, c.e);
    }
    return cpu_file(c, k, v, {});
}

/* GPU decode of every layer (both output types) against sqkv_reader_decode. */
void compare_decode(const std::vector<uint8_t> &file, unsigned flags, uint32_t batch) {
    sqkv_reader *r = nullptr;
    ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, 0, &r));
    ASSERT_EQ(SQKV_OK, sqkv_reader_open_memory(r, file.data(), file.size()));
    sqkv_geometry g;
    ASSERT_EQ(SQKV_OK, sqkv_reader_geometry(r, &g));
    DevBuf dfile(file.size());
    CUDA_OK(cudaMemcpy(dfile.p, file.data(), file.size(), cudaMemcpyHostToDevice));
    sqkv_cuda_decoder *d = nullptr;
    const sqkv_cuda_status created = sqkv_cuda_decoder_create(file.data(), file.size(), dfile.p, nullptr, flags, &d);
    if (created != SQKV_OK) {
        /* refused at creation (a header or a codec-1 stream table): the CPU reader must refuse the file
         * with the same error when it decodes the layers */
        sqkv_error cpu_err = SQKV_OK;
        const uint64_t tb = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, SQKV_DTYPE_FP16);
        std::vector<uint8_t> want(tb);
        for (uint32_t l = 0; l < g.n_layers && cpu_err == SQKV_OK; l++)
            for (int t = 0; t < 2 && cpu_err == SQKV_OK; t++)
                cpu_err = sqkv_reader_decode(r, l, (sqkv_tensor)t, 0, g.n_kv_heads, SQKV_DTYPE_FP16, want.data(), tb);
        EXPECT_EQ((int)cpu_err, created) << sqkv_cuda_decoder_error_detail(d);
        sqkv_cuda_decoder_destroy(d);
        sqkv_reader_destroy(r);
        return;
    }
    uint64_t wsz = 0;
    SQ_OK(sqkv_cuda_decoder_workspace_size(d, batch, &wsz));
    DevBuf ws(wsz);
    /* the first call validates (unit positions from the bitmaps' prefix sums), the later ones take
     * unit positions from the checked offset tables: both paths, for both output types */
    for (sqkv_dtype out : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16, SQKV_DTYPE_FP16}) {
        const uint64_t tb = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, out);
        DevBuf dout(2 * tb * batch);
        std::vector<uint8_t> want(tb), got(tb);
        for (uint32_t l0 = 0; l0 < g.n_layers; l0 += batch) {
            const uint32_t n = std::min(batch, g.n_layers - l0);
            std::vector<void *> kp(n), vp(n);
            for (uint32_t i = 0; i < n; i++) {
                kp[i] = (uint8_t *)dout.p + 2 * tb * i;
                vp[i] = (uint8_t *)dout.p + 2 * tb * i + tb;
            }
            CUDA_OK(cudaMemset(dout.p, 0x5A, dout.n)); /* poison: every element must be written */
            const sqkv_cuda_status st = sqkv_cuda_decode_layers(d, l0, n, out, kp.data(), vp.data(), tb, ws.p, wsz, 0);
            sqkv_error cpu_err = SQKV_OK;
            for (uint32_t i = 0; i < n && cpu_err == SQKV_OK; i++)
                for (int t = 0; t < 2 && cpu_err == SQKV_OK; t++)
                    cpu_err = sqkv_reader_decode(r, l0 + i, (sqkv_tensor)t, 0, g.n_kv_heads, out, want.data(), tb);
            if (cpu_err != SQKV_OK) {
                EXPECT_EQ((int)cpu_err, st) << sqkv_cuda_decoder_error_detail(d);
                sqkv_cuda_decoder_destroy(d);
                sqkv_reader_destroy(r);
                return;
            }
            ASSERT_EQ(SQKV_OK, st) << sqkv_cuda_status_name(st) << ": " << sqkv_cuda_decoder_error_detail(d);
            CUDA_OK(cudaDeviceSynchronize());
            for (uint32_t i = 0; i < n; i++)
                for (int t = 0; t < 2; t++) {
                    ASSERT_EQ(SQKV_OK, sqkv_reader_decode(r, l0 + i, (sqkv_tensor)t, 0, g.n_kv_heads, out, want.data(), tb));
                    CUDA_OK(cudaMemcpy(got.data(), t ? vp[i] : kp[i], tb, cudaMemcpyDeviceToHost));
                    size_t first = 0;
                    while (first < tb && want[first] == got[first]) first++;
                    ASSERT_EQ(tb, first) << "layer " << l0 + i << " tensor " << t << " out dtype " << out
                                         << " first difference at byte " << first;
                }
        }
    }
    sqkv_cuda_decoder_destroy(d);
    sqkv_reader_destroy(r);
}

void destroy_both(sqkv_cuda_decoder *d, sqkv_reader *r) {
    sqkv_cuda_decoder_destroy(d);
    sqkv_reader_destroy(r);
}

void compare_mustafar(const std::vector<uint8_t> &file, uint32_t layer, sqkv_tensor t, uint32_t head) {
    sqkv_reader *r = nullptr;
    ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, 0, &r));
    ASSERT_EQ(SQKV_OK, sqkv_reader_open_memory(r, file.data(), file.size()));
    sqkv_mustafar_sizes sz;
    ASSERT_EQ(SQKV_OK, sqkv_reader_mustafar_sizes(r, layer, t, head, &sz));
    std::vector<int64_t> bm(sz.n_tiles), gbm(sz.n_tiles);
    std::vector<int32_t> acc(sz.n_tiles + 1), gacc(sz.n_tiles + 1);
    std::vector<uint16_t> val(sz.value_count), gval(sz.value_count);
    ASSERT_EQ(SQKV_OK, sqkv_reader_decode_mustafar(r, layer, t, head, bm.data(), acc.data(), val.data(), &sz));
    DevBuf dfile(file.size());
    CUDA_OK(cudaMemcpy(dfile.p, file.data(), file.size(), cudaMemcpyHostToDevice));
    sqkv_cuda_decoder *d = nullptr;
    SQ_OK(sqkv_cuda_decoder_create(file.data(), file.size(), dfile.p, nullptr, 0, &d));
    sqkv_mustafar_sizes gsz;
    SQ_OK(sqkv_cuda_decoder_mustafar_sizes(d, layer, t, head, &gsz));
    ASSERT_EQ(sz.n_tiles, gsz.n_tiles);
    ASSERT_EQ(sz.value_count, gsz.value_count);
    uint64_t wsz = 0;
    SQ_OK(sqkv_cuda_decoder_workspace_size(d, 1, &wsz));
    DevBuf ws(wsz), dbm(8 * sz.n_tiles), dacc(4 * (sz.n_tiles + 1)), dval(2 * sz.value_count);
    CUDA_OK(cudaMemset(dval.p, 0x77, dval.n));
    CUDA_OK(cudaMemset(dacc.p, 0x77, dacc.n));
    SQ_OK(sqkv_cuda_decode_mustafar(d, layer, t, head, (int64_t *)dbm.p, (int32_t *)dacc.p, (uint16_t *)dval.p, &gsz,
                                    ws.p, wsz, 0));
    CUDA_OK(cudaMemcpy(gbm.data(), dbm.p, dbm.n, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(gacc.data(), dacc.p, dacc.n, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(gval.data(), dval.p, dval.n, cudaMemcpyDeviceToHost));
    EXPECT_TRUE(bm == gbm) << "bitmaps differ";
    EXPECT_TRUE(acc == gacc) << "accum_counts differ";
    size_t first = 0;
    while (first < val.size() && val[first] == gval[first]) first++;
    EXPECT_EQ(val.size(), first) << "values differ first at entry " << first;

    /* Once a decode of every layer has checked every section, the decoder computes Mustafar sizes from
     * the checked bitmaps (decode.cu, mustafar_sizes_checked) and keeps them: for every head, computed
     * and then kept, they must equal the reader's, and an export through them its arrays. */
    sqkv_geometry g;
    ASSERT_EQ(SQKV_OK, sqkv_reader_geometry(r, &g));
    const uint64_t tb = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, SQKV_DTYPE_FP16);
    uint64_t wall = 0;
    SQ_OK(sqkv_cuda_decoder_workspace_size(d, g.n_layers, &wall));
    DevBuf wsall(wall), dout(2 * tb * g.n_layers);
    std::vector<void *> kp(g.n_layers), vp(g.n_layers);
    for (uint32_t i = 0; i < g.n_layers; i++) {
        kp[i] = (uint8_t *)dout.p + 2 * tb * i;
        vp[i] = (uint8_t *)dout.p + 2 * tb * i + tb;
    }
    SQ_OK(sqkv_cuda_decode_layers(d, 0, g.n_layers, SQKV_DTYPE_FP16, kp.data(), vp.data(), tb, wsall.p, wall, 0));
    CUDA_OK(cudaDeviceSynchronize());
    for (uint32_t l = 0; l < g.n_layers; l++)
        for (int tt = 0; tt < 2; tt++)
            for (uint32_t h = 0; h < g.n_kv_heads; h++) {
                sqkv_mustafar_sizes want;
                /* a head the reader refuses would make the decoder's error sticky: not asked */
                if (sqkv_reader_mustafar_sizes(r, l, (sqkv_tensor)tt, h, &want) != SQKV_OK) continue;
                for (int again = 0; again < 2; again++) {
                    sqkv_mustafar_sizes got = {0, 0};
                    SQ_OK(sqkv_cuda_decoder_mustafar_sizes(d, l, (sqkv_tensor)tt, h, &got));
                    ASSERT_EQ(want.n_tiles, got.n_tiles) << "layer " << l << " tensor " << tt << " head " << h;
                    ASSERT_EQ(want.value_count, got.value_count) << "layer " << l << " tensor " << tt << " head " << h;
                }
            }
    CUDA_OK(cudaMemset(dval.p, 0x55, dval.n));
    CUDA_OK(cudaMemset(dacc.p, 0x55, dacc.n));
    CUDA_OK(cudaMemset(dbm.p, 0x55, dbm.n));
    SQ_OK(sqkv_cuda_decoder_mustafar_sizes(d, layer, t, head, &gsz));
    SQ_OK(sqkv_cuda_decode_mustafar(d, layer, t, head, (int64_t *)dbm.p, (int32_t *)dacc.p, (uint16_t *)dval.p, &gsz,
                                    ws.p, wsz, 0));
    CUDA_OK(cudaMemcpy(gbm.data(), dbm.p, dbm.n, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(gacc.data(), dacc.p, dacc.n, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(gval.data(), dval.p, dval.n, cudaMemcpyDeviceToHost));
    EXPECT_TRUE(bm == gbm) << "bitmaps differ (second export)";
    EXPECT_TRUE(acc == gacc) << "accum_counts differ (second export)";
    EXPECT_TRUE(val == gval) << "values differ (second export)";

    /* Heads in one call (sqkv_cuda_decode_mustafar_heads): all heads of the layer and tensor, then the
     * upper half of them, row by row against the reader's export of each head. */
    const uint32_t H = g.n_kv_heads;
    std::vector<sqkv_mustafar_sizes> hsz(H);
    bool all = true;
    for (uint32_t h = 0; h < H; h++) all = all && sqkv_reader_mustafar_sizes(r, layer, t, h, &hsz[h]) == SQKV_OK;
    if (!all) return destroy_both(d, r);
    for (uint32_t h0 : {0u, H / 2}) {
        const uint32_t hn = H - h0;
        if (hn == 0) continue;
        const uint64_t nt = hsz[h0].n_tiles;
        DevBuf hb(8 * nt * hn), ha(4 * (nt + 1) * hn);
        std::vector<DevBuf> hv(hn);
        std::vector<uint16_t *> vptr(hn);
        for (uint32_t i = 0; i < hn; i++) {
            hv[i].alloc(2 * hsz[h0 + i].value_count);
            CUDA_OK(cudaMemset(hv[i].p, 0x33, hv[i].n));
            vptr[i] = (uint16_t *)hv[i].p;
        }
        CUDA_OK(cudaMemset(hb.p, 0x33, hb.n));
        CUDA_OK(cudaMemset(ha.p, 0x33, ha.n));
        SQ_OK(sqkv_cuda_decode_mustafar_heads(d, layer, t, h0, hn, (int64_t *)hb.p, (int32_t *)ha.p, vptr.data(),
                                              hsz.data() + h0, ws.p, wsz, 0));
        for (uint32_t i = 0; i < hn; i++) {
            const sqkv_mustafar_sizes &z = hsz[h0 + i];
            ASSERT_EQ(nt, z.n_tiles);
            std::vector<int64_t> cb(nt), gb2(nt);
            std::vector<int32_t> ca(nt + 1), ga2(nt + 1);
            std::vector<uint16_t> cv(z.value_count), gv2(z.value_count);
            ASSERT_EQ(SQKV_OK, sqkv_reader_decode_mustafar(r, layer, t, h0 + i, cb.data(), ca.data(), cv.data(), &z));
            CUDA_OK(cudaMemcpy(gb2.data(), (int64_t *)hb.p + nt * i, 8 * nt, cudaMemcpyDeviceToHost));
            CUDA_OK(cudaMemcpy(ga2.data(), (int32_t *)ha.p + (nt + 1) * i, 4 * (nt + 1), cudaMemcpyDeviceToHost));
            CUDA_OK(cudaMemcpy(gv2.data(), hv[i].p, hv[i].n, cudaMemcpyDeviceToHost));
            EXPECT_TRUE(cb == gb2) << "bitmaps differ, heads call from " << h0 << ", head " << h0 + i;
            EXPECT_TRUE(ca == ga2) << "accum_counts differ, heads call from " << h0 << ", head " << h0 + i;
            EXPECT_TRUE(cv == gv2) << "values differ, heads call from " << h0 << ", head " << h0 + i;
        }
    }
    destroy_both(d, r);
}

/* Every head of layers [first, first + n) by one sqkv_cuda_decode_mustafar_layers call, array for array
 * against the CPU reader's export of each head (the slack after the values included). Each head's
 * values array starts values_skew bytes past a 16-byte boundary: 0 takes the fast kernel where the
 * sections allow it, 2 the general one. The arrays start filled with a pattern, so an entry the call
 * leaves unwritten shows. */
void compare_mustafar_layers(const std::vector<uint8_t> &file, unsigned flags, uint32_t first, uint32_t n,
                             uint32_t values_skew) {
    sqkv_reader *r = nullptr;
    ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, 0, &r));
    ASSERT_EQ(SQKV_OK, sqkv_reader_open_memory(r, file.data(), file.size()));
    sqkv_geometry g;
    ASSERT_EQ(SQKV_OK, sqkv_reader_geometry(r, &g));
    const uint32_t H = g.n_kv_heads;
    DevBuf dfile(file.size());
    CUDA_OK(cudaMemcpy(dfile.p, file.data(), file.size(), cudaMemcpyHostToDevice));
    sqkv_cuda_decoder *d = nullptr;
    SQ_OK(sqkv_cuda_decoder_create(file.data(), file.size(), dfile.p, nullptr, flags, &d));
    /* per layer and tensor (lt = 2 i + t): sizes, arrays, and the values' offsets in one buffer */
    const uint32_t LT = 2 * n;
    std::vector<std::vector<sqkv_mustafar_sizes>> sz(LT, std::vector<sqkv_mustafar_sizes>(H));
    std::vector<DevBuf> bms(LT), accs(LT), vals(LT);
    std::vector<std::vector<uint64_t>> voff(LT, std::vector<uint64_t>(H + 1, 0));
    std::vector<std::vector<uint16_t *>> vptr(LT, std::vector<uint16_t *>(H));
    std::vector<sqkv_cuda_mustafar_out> kout(n), vout(n);
    for (uint32_t lt = 0; lt < LT; lt++) {
        const uint32_t l = first + lt / 2;
        const sqkv_tensor t = (sqkv_tensor)(lt % 2);
        for (uint32_t h = 0; h < H; h++) {
            SQ_OK(sqkv_cuda_decoder_mustafar_sizes(d, l, t, h, &sz[lt][h]));
            /* 16-byte aligned starts, plus the skew */
            voff[lt][h + 1] = voff[lt][h] + ((2 * sz[lt][h].value_count + values_skew + 15) & ~15ull);
        }
        const uint64_t nt = sz[lt][0].n_tiles;
        bms[lt].alloc(8 * nt * H);
        accs[lt].alloc(4 * (nt + 1) * H);
        vals[lt].alloc(voff[lt][H]);
        CUDA_OK(cudaMemset(bms[lt].p, 0x5A, bms[lt].n));
        CUDA_OK(cudaMemset(accs[lt].p, 0x5A, accs[lt].n));
        CUDA_OK(cudaMemset(vals[lt].p, 0x5A, vals[lt].n));
        for (uint32_t h = 0; h < H; h++) vptr[lt][h] = (uint16_t *)((uint8_t *)vals[lt].p + voff[lt][h] + values_skew);
        sqkv_cuda_mustafar_out &o = lt % 2 ? vout[lt / 2] : kout[lt / 2];
        o.bitmaps = (int64_t *)bms[lt].p;
        o.accum_counts = (int32_t *)accs[lt].p;
        o.values = vptr[lt].data();
        o.sizes = sz[lt].data();
    }
    uint64_t wsz = 0;
    SQ_OK(sqkv_cuda_decoder_workspace_size(d, n, &wsz));
    DevBuf ws(wsz);
    SQ_OK(sqkv_cuda_decode_mustafar_layers(d, first, n, kout.data(), vout.data(), ws.p, wsz, 0));
    CUDA_OK(cudaDeviceSynchronize());
    for (uint32_t lt = 0; lt < LT; lt++) {
        const uint32_t l = first + lt / 2;
        const sqkv_tensor t = (sqkv_tensor)(lt % 2);
        const uint64_t nt = sz[lt][0].n_tiles;
        for (uint32_t h = 0; h < H; h++) {
            const sqkv_mustafar_sizes &z = sz[lt][h];
            std::vector<int64_t> cb(nt), gb(nt);
            std::vector<int32_t> ca(nt + 1), ga(nt + 1);
            std::vector<uint16_t> cv(z.value_count), gv(z.value_count);
            ASSERT_EQ(SQKV_OK, sqkv_reader_decode_mustafar(r, l, t, h, cb.data(), ca.data(), cv.data(), &z));
            CUDA_OK(cudaMemcpy(gb.data(), (int64_t *)bms[lt].p + nt * h, 8 * nt, cudaMemcpyDeviceToHost));
            CUDA_OK(cudaMemcpy(ga.data(), (int32_t *)accs[lt].p + (nt + 1) * h, 4 * (nt + 1), cudaMemcpyDeviceToHost));
            CUDA_OK(cudaMemcpy(gv.data(), vptr[lt][h], 2 * z.value_count, cudaMemcpyDeviceToHost));
            EXPECT_TRUE(cb == gb) << "bitmaps differ: layer " << l << " tensor " << (int)t << " head " << h;
            EXPECT_TRUE(ca == ga) << "accum_counts differ: layer " << l << " tensor " << (int)t << " head " << h;
            size_t at = 0;
            while (at < cv.size() && cv[at] == gv[at]) at++;
            EXPECT_EQ(cv.size(), at) << "values differ first at entry " << at << ": layer " << l << " tensor " << (int)t
                                     << " head " << h;
        }
    }
    destroy_both(d, r);
}

}  // namespace

TEST(CudaDecode, MatchesCpuAcrossGeometriesAndOptions) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    const uint32_t dims[] = {64, 80, 96, 128, 256};
    const uint32_t bitss[] = {2, 4, 8, 16};
    for (uint32_t D : dims)
        for (uint32_t bits : bitss) {
            Case c = base_case();
            c.head_dim = D;
            c.bits = bits;
            c.tokens = 100 + 29 * (uint32_t)(n % 7);
            c.window = (uint32_t)(n % 3) * 11;
            if (bits == 16) {
                c.q = SQKV_QUANT_EXACT;
                c.gran = SQKV_SCALE_NONE;
            } else {
                c.q = (sqkv_quantizer)(1 + n % 2);
                c.gran = (sqkv_scale_granularity)(1 + (n / 2) % 2);
            }
            c.e = (n % 5 == 3) ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
            c.heads = 1 + (uint32_t)(n % 4) * 3;
            c.hps = 1 + (uint32_t)(n % 3);
            c.tps = (n % 4 == 1) ? 64 : 0;
            SCOPED_TRACE(c.name());
            compare_decode(make_file(c, seed_of("decode") + n), 0, 1 + (uint32_t)(n % 2));
            n++;
        }
}

/* Format 1.1 CODE_WIDTHS (§7.5): widths 1, 3, 5, 6, 7, whose codes straddle bytes and 32-bit words, on
 * the general kernels: both quantizers and granularities, every head_dim, token counts that are not
 * multiples of 64, fp16 and bf16 files, sparsities down to none, section splits, offset intervals,
 * both unit-start sources (compare_decode's repeated calls). */
TEST(CudaDecode, CodeWidthsMatchCpu) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    const uint32_t dims[] = {64, 80, 96, 128, 256};
    for (uint32_t bits : {1u, 3u, 5u, 6u, 7u})
        for (int q = 1; q <= 2; q++)
            for (int gr = 1; gr <= 2; gr++) {
                Case c = base_case();
                c.bits = bits;
                c.q = (sqkv_quantizer)q;
                c.gran = (sqkv_scale_granularity)gr;
                c.head_dim = dims[n % 5];
                c.tokens = 100 + 29 * (uint32_t)(n % 7);
                c.window = (uint32_t)(n % 3) * 11;
                c.e = (n % 5 == 3) ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
                c.heads = 1 + (uint32_t)(n % 4) * 3;
                c.hps = 1 + (uint32_t)(n % 3);
                c.tps = (n % 4 == 1) ? 64 : 0;
                c.k = (uint32_t)(n % 6);
                c.sparsity = n % 7 == 6 ? 0.0 : 0.8;
                SCOPED_TRACE(c.name());
                compare_decode(make_file(c, seed_of("decode-widths") + n), 0, 1 + (uint32_t)(n % 2));
                n++;
            }
}

/* The candidate default: 3 bits, SYMMETRIC, PER_TILE, sparsity 0.8, head_dim and heads up to 32. */
TEST(CudaDecode, ThreeBitSymmetricPerTileAcrossGeometries) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t D : {64u, 80u, 96u, 128u, 256u})
        for (uint32_t H : {1u, 8u, 32u}) {
            if (H == 32 && D > 128) continue;
            Case c = base_case();
            c.bits = 3;
            c.q = SQKV_QUANT_SYMMETRIC;
            c.gran = SQKV_SCALE_PER_TILE;
            c.sparsity = 0.8;
            c.head_dim = D;
            c.heads = H;
            c.tokens = 64 * (1 + (uint32_t)(n % 3)) + 1 + (uint32_t)(n * 13 % 63);
            c.window = (uint32_t)(n % 2) * 9;
            SCOPED_TRACE(c.name());
            compare_decode(make_file(c, seed_of("decode-3bit") + n), 0, 2);
            n++;
        }
}

/* 3-bit SYMMETRIC PER_TILE on decode_fast.cu computes levels 4-7 of a tile and flips their signs for
 * 0-3: 64 x 64 blocks (whole key and value tiles) of zeros (levels +-0), subnormals, magnitudes at the
 * top of fp16, and bf16 magnitudes beyond fp16 (decoded to fp16: the CPU's overflow error). */
TEST(CudaDecode, ThreeBitSymmetricMirroredLevels) {
    SKIP_WITHOUT_GPU();
    for (int variant = 0; variant < 4; variant++) {
        Case c = base_case();
        c.bits = 3;
        c.q = SQKV_QUANT_SYMMETRIC;
        c.gran = SQKV_SCALE_PER_TILE;
        c.layers = 1;
        c.heads = 2;
        c.tokens = 64 * 3 + 5;
        c.window = 0;
        c.e = c.src = variant >= 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
        c.sparsity = variant % 2 ? 0.8 : 0.0;
        std::mt19937_64 rng(seed_of("decode-3bit-mirror") + (uint64_t)variant);
        std::uniform_real_distribution<double> u(-1.0, 1.0);
        std::vector<std::vector<uint8_t>> kv[2];
        for (int tensor = 0; tensor < 2; tensor++) {
            std::vector<uint8_t> x(2ull * c.heads * c.tokens * c.head_dim);
            for (uint32_t h = 0; h < c.heads; h++)
                for (uint32_t t = 0; t < c.tokens; t++)
                    for (uint32_t d = 0; d < c.head_dim; d++) {
                        const uint32_t kind = (h * 7 + (t / 64) * 3 + d / 64 + (uint32_t)tensor) % 5;
                        double v = 0.0;
                        if (kind == 1) v = std::ldexp(u(rng), -22);
                        else if (kind == 2) v = variant == 3 ? std::ldexp(u(rng), 18) : 65504.0 * u(rng);
                        else if (kind == 3) v = u(rng);
                        else if (kind == 4) v = (rng() % 4 == 0) ? -0.0 : std::ldexp(u(rng), -14);
                        const uint16_t b = c.e == SQKV_DTYPE_BF16 ? sqkv_double_to_bf16(v) : sqkv_double_to_fp16(v);
                        memcpy(&x[2 * (((uint64_t)h * c.tokens + t) * c.head_dim + d)], &b, 2);
                    }
            kv[tensor].push_back(x);
        }
        SCOPED_TRACE(c.name());
        const std::vector<uint8_t> f = cpu_file(c, kv[0], kv[1], {});
        ASSERT_FALSE(f.empty());
        compare_decode(f, 0, 1);
    }
}

/* Format 1.1 HALF_TILE_SCALES and ALL_KEPT (§7.4, §7.6), alone and together, on the general kernels:
 * every width, both quantizers, every head_dim, token counts that are not multiples of 64, fp16 and
 * bf16, dense windows, section splits; dense output (both unit-start sources) and Mustafar's layout. */
TEST(CudaDecode, HalfTileAndAllKeptMatchCpu) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    const uint32_t dims[] = {64, 80, 96, 128, 256};
    for (int which = 0; which < 3; which++) /* half tiles, ALL_KEPT, both */
        for (uint32_t bits : {1u, 2u, 3u, 4u, 5u, 8u})
            for (int q = 1; q <= 2; q++) {
                Case c = base_case();
                c.bits = bits;
                c.q = (sqkv_quantizer)q;
                c.gran = which == 1 ? (sqkv_scale_granularity)(1 + n % 2) : SQKV_SCALE_PER_HALF_TILE;
                if (which >= 1) {
                    c.prune = SQKV_PRUNE_KEEP_ALL;
                    c.k = 0;
                } else {
                    c.k = (uint32_t)(n % 5);
                    c.sparsity = n % 3 == 2 ? 0.95 : 0.8; /* many empty half tiles */
                }
                c.head_dim = dims[n % 5];
                c.tokens = 50 + 37 * (uint32_t)(n % 6);
                c.window = (uint32_t)(n % 3) * 7;
                c.e = (n % 4 == 3) ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
                c.heads = 1 + (uint32_t)(n % 3) * 2;
                c.hps = 1 + (uint32_t)(n % 2);
                c.tps = (n % 4 == 1) ? 64 : 0;
                SCOPED_TRACE(c.name());
                const std::vector<uint8_t> f = make_file(c, seed_of("decode-11") + n);
                ASSERT_FALSE(f.empty());
                compare_decode(f, 0, 1 + (uint32_t)(n % 2));
                compare_mustafar(f, c.layers - 1, (sqkv_tensor)(n % 2), c.heads - 1);
                n++;
            }
}

/* Files with the zstd layer (codec 1, §5.1): decompressed on the host into the workspace, then the same
 * kernels; every decoder mode, the fast and general kernels, Mustafar's layout. */
TEST(CudaDecode, ZstdFilesMatchCpu) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t D : {64u, 128u})
        for (uint32_t bits : {2u, 3u, 16u}) {
            Case c = base_case();
            c.head_dim = D;
            c.bits = bits;
            c.q = bits == 16 ? SQKV_QUANT_EXACT : SQKV_QUANT_ASYMMETRIC;
            c.gran = bits == 16 ? SQKV_SCALE_NONE : SQKV_SCALE_PER_TILE;
            c.zstd = 1 + (uint32_t)(n % 3) * 5;
            c.tokens = 150 + 41 * (uint32_t)n;
            c.window = 20;
            SCOPED_TRACE(c.name());
            const std::vector<uint8_t> f = make_file(c, seed_of("decode-zstd") + n);
            ASSERT_FALSE(f.empty());
            for (unsigned flags : {0u, (unsigned)SQKV_CUDA_TRUSTED, (unsigned)SQKV_CUDA_HOST_VALIDATE})
                compare_decode(f, flags, 1 + (uint32_t)(n % 2));
            compare_mustafar(f, 1, SQKV_TENSOR_V, 2);
            n++;
        }
}

/* zstd bodies pass through two pinned buffers in batches (decode.cu unpack_sections): batches of one
 * section each, sections larger than a batch, and batches of several sections, over calls that decode
 * many sections at once, give the CPU's output. */
TEST(CudaDecode, ZstdBatchesMatchCpu) {
    SKIP_WITHOUT_GPU();
    Case c = base_case();
    c.layers = 3;
    c.heads = 4;
    c.tokens = 700;
    c.zstd = 1;
    c.q = SQKV_QUANT_ASYMMETRIC;
    c.gran = SQKV_SCALE_PER_TILE;
    const std::vector<uint8_t> f = make_file(c, seed_of("decode-zstd-batches"));
    ASSERT_FALSE(f.empty());
    for (const char *batch : {"1", "20000", "60000", "100000000"}) {
        SCOPED_TRACE(batch);
        ASSERT_EQ(setenv("SQKV_CUDA_STAGING_BATCH", batch, 1), 0);
        compare_decode(f, 0, 3);
        compare_decode(f, (unsigned)SQKV_CUDA_TRUSTED, 2);
    }
    ASSERT_EQ(unsetenv("SQKV_CUDA_STAGING_BATCH"), 0);
}

/* A zstd-compressed section whose stored bytes were changed: the decoder refuses the file when it is
 * created (the stored body's checksum is checked on the host before anything is decompressed); with the
 * checksum recomputed the stream table breaks a rule of §5.1, and the error is the CPU reader's. */
TEST(CudaDecode, DamagedZstdSectionIsRefused) {
    SKIP_WITHOUT_GPU();
    Case c = base_case();
    c.layers = 1;
    c.zstd = 3;
    c.q = SQKV_QUANT_ASYMMETRIC;
    c.gran = SQKV_SCALE_PER_TILE;
    const std::vector<uint8_t> f = make_file(c, seed_of("zstd-damage"));
    ASSERT_FALSE(f.empty());
    bool found = false;
    for (size_t off = 64; off + 64 < f.size() && !found;) { /* the first SPARSE section with codec 1 */
        sqkv_section_header h;
        if (!sqkv_section_header_unpack(f.data() + off, &h)) break;
        if (h.kind == SQKV_KIND_SPARSE && h.codec == 1) {
            found = true;
            /* 0: a reserved byte of the stream table, checksum left (SECTION_CHECKSUM at creation);
             * 1: the same, checksum recomputed (the table's rule, at creation);
             * 2: the magic of the first zstd frame, checksum recomputed (COMPRESSED_STREAM, met when a
             *    decode call decompresses the frame) */
            for (int damage = 0; damage < 3; damage++) {
                std::vector<uint8_t> bad = f;
                uint8_t *body = bad.data() + off + 64;
                if (damage < 2) {
                    body[1] ^= 0x01;
                } else {
                    uint64_t at = 4 * 16; /* stream data after the four 16-byte records */
                    int rec = 0;
                    while (rec < 4 && body[16 * rec] != 1) {
                        uint64_t len;
                        memcpy(&len, body + 16 * rec + 8, 8);
                        at += (len + 7) & ~7ull;
                        rec++;
                    }
                    ASSERT_LT(rec, 4);
                    body[at] ^= 0xFF;
                }
                if (damage > 0) {
                    h.body_checksum = sqkv_checksum(body, (size_t)h.stored_size);
                    sqkv_section_header_pack(&h, bad.data() + off);
                }
                sqkv_reader *cr = nullptr;
                ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, 0, &cr));
                sqkv_error want = sqkv_reader_open_memory(cr, bad.data(), bad.size());
                if (want == SQKV_OK) want = sqkv_reader_verify(cr);
                sqkv_reader_destroy(cr);
                ASSERT_NE(SQKV_OK, want);
                if (damage == 2) {
                    EXPECT_EQ(SQKV_ERR_COMPRESSED_STREAM, want);
                }
                DevBuf dfile(bad.size());
                CUDA_OK(cudaMemcpy(dfile.p, bad.data(), bad.size(), cudaMemcpyHostToDevice));
                sqkv_cuda_decoder *d = nullptr;
                sqkv_cuda_status got = sqkv_cuda_decoder_create(bad.data(), bad.size(), dfile.p, nullptr, 0, &d);
                if (damage == 2) {
                    ASSERT_EQ(SQKV_OK, got) << sqkv_cuda_decoder_error_detail(d);
                    sqkv_geometry g;
                    SQ_OK(sqkv_cuda_decoder_geometry(d, &g));
                    const uint64_t tb = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, SQKV_DTYPE_FP16);
                    uint64_t wsz = 0;
                    SQ_OK(sqkv_cuda_decoder_workspace_size(d, 1, &wsz));
                    DevBuf ws(wsz), out(2 * tb);
                    void *kp = out.p, *vp = (uint8_t *)out.p + tb;
                    got = sqkv_cuda_decode_layers(d, 0, 1, SQKV_DTYPE_FP16, &kp, &vp, tb, ws.p, wsz, 0);
                }
                EXPECT_EQ((int)want, got) << "damage " << damage;
                EXPECT_STRNE("", sqkv_cuda_decoder_error_detail(d));
                sqkv_cuda_decoder_destroy(d);
            }
        }
        off += sqkv_section_extent(h.stored_size);
    }
    EXPECT_TRUE(found) << "no SPARSE section was stored with codec 1";
}

/* head_dim 128 takes decode_fast.cu; PER_TILE there: every width (3 bits: codes straddle words), both
 * quantizers, fp16 and bf16 files (each decoded to fp16 and bf16), partial chunks, token splits, both
 * unit-start sources. */
TEST(CudaDecode, FastPathPerTileWidthsQuantizers) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 3u, 4u, 8u})
        for (int q = 1; q <= 2; q++)
            for (sqkv_dtype e : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16}) {
                Case c = base_case();
                c.bits = bits;
                c.q = (sqkv_quantizer)q;
                c.gran = SQKV_SCALE_PER_TILE;
                c.e = e;
                c.sparsity = (n % 3 == 0) ? 0.0 : (n % 3 == 1) ? 0.8 : 0.99;
                c.heads = 1 + (uint32_t)(n % 3);
                c.hps = 1 + (uint32_t)(n % 2);
                c.tps = (n % 4 == 1) ? 64 : 0;
                c.tokens = 100 + 37 * (uint32_t)(n % 5);
                SCOPED_TRACE(c.name());
                compare_decode(make_file(c, seed_of("decode-tile") + n), 0, 1 + (uint32_t)(n % 2));
                n++;
            }
}

/* 8-bit PER_TILE on decode_fast.cu takes one of three paths by a unit's kept elements: at most 2048,
 * each element's level computed once (sparsity 0.75 keeps 32 a row: 2048 a full unit, the bound); up to
 * 4096 codes, staged codes (0.7 and 0.6); more, codes read from global memory (0.5: 4096 codes, which
 * span 1025 words unless a unit starts on a word; 0.3). Both quantizers, fp16 and bf16 files decoded to
 * both types, partial chunks, token splits, both unit-start sources. */
TEST(CudaDecode, FastPathEightBitUnitSizes) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (double sp : {0.75, 0.7, 0.6, 0.5, 0.3})
        for (int q = 1; q <= 2; q++)
            for (sqkv_dtype e : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16}) {
                Case c = base_case();
                c.bits = 8;
                c.q = (sqkv_quantizer)q;
                c.gran = SQKV_SCALE_PER_TILE;
                c.e = e;
                c.sparsity = sp;
                c.heads = 1 + (uint32_t)(n % 3);
                c.hps = 1 + (uint32_t)(n % 2);
                c.tps = (n % 4 == 1) ? 64 : 0;
                c.tokens = 64 * 2 + 1 + 29 * (uint32_t)(n % 5);
                SCOPED_TRACE(c.name());
                compare_decode(make_file(c, seed_of("decode-eight") + n), 0, 1 + (uint32_t)(n % 2));
                n++;
            }
}

/* EXACT on decode_fast.cu (head_dim 128): keys read each channel's run of values by aligned 8-byte
 * words, so units start at every value offset modulo 4 (splits by tokens and heads, partial chunks) and
 * runs end anywhere; every keep count from none to all, fp16 and bf16 files, each decoded to both
 * output types, both unit-start sources. */
TEST(CudaDecode, FastPathExactValues) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (double sp : {0.0, 0.3, 0.7, 0.95, 0.995})
        for (sqkv_dtype e : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16})
            for (int split = 0; split < 2; split++) {
                Case c = base_case();
                c.bits = 16;
                c.q = SQKV_QUANT_EXACT;
                c.gran = SQKV_SCALE_NONE;
                c.e = e;
                c.sparsity = sp;
                c.heads = 1 + (uint32_t)(n % 4);
                c.hps = 1 + (uint32_t)(n % 3);
                c.tps = split ? 64 * (1 + (uint32_t)(n % 3)) : 0;
                c.tokens = 64 * 3 + 1 + 13 * (uint32_t)(n % 5);
                c.window = (uint32_t)(n % 3) * 5;
                SCOPED_TRACE(c.name());
                compare_decode(make_file(c, seed_of("decode-exact") + n), 0, 1 + (uint32_t)(n % 2));
                n++;
            }
}

/* 3 bits PER_HEAD on decode_fast.cu (head_dim 128): both quantizers, fp16 and bf16 files, every
 * sparsity kind, partial chunks (token counts 1 mod 64 .. 63 mod 64), token splits. */
TEST(CudaDecode, FastPathThreeBitsPerHead) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (int q = 1; q <= 2; q++)
        for (sqkv_dtype e : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16})
            for (double sp : {0.0, 0.8, 0.99}) {
                Case c = base_case();
                c.bits = 3;
                c.q = (sqkv_quantizer)q;
                c.gran = SQKV_SCALE_PER_HEAD;
                c.e = e;
                c.sparsity = sp;
                c.heads = 1 + (uint32_t)(n % 3);
                c.hps = 1 + (uint32_t)(n % 2);
                c.tps = (n % 4 == 1) ? 64 : 0;
                c.tokens = 64 + 1 + 31 * (uint32_t)(n % 5);
                SCOPED_TRACE(c.name());
                compare_decode(make_file(c, seed_of("decode-fast-3") + n), 0, 1 + (uint32_t)(n % 2));
                n++;
            }
}

/* A call repeated with the same workspace reuses its uploaded plan (sqkv_cuda.h); any change of outputs,
 * layers, output type or workspace, or a Mustafar call in between, must give a fresh, correct plan. */
void decode_sequence(const Case &c, uint64_t seed) {
    const std::vector<uint8_t> file = make_file(c, seed);
    sqkv_reader *r = nullptr;
    ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, 0, &r));
    ASSERT_EQ(SQKV_OK, sqkv_reader_open_memory(r, file.data(), file.size()));
    sqkv_geometry g;
    ASSERT_EQ(SQKV_OK, sqkv_reader_geometry(r, &g));
    DevBuf dfile(file.size());
    CUDA_OK(cudaMemcpy(dfile.p, file.data(), file.size(), cudaMemcpyHostToDevice));
    sqkv_cuda_decoder *d = nullptr;
    SQ_OK(sqkv_cuda_decoder_create(file.data(), file.size(), dfile.p, nullptr, 0, &d));
    uint64_t wsz = 0;
    SQ_OK(sqkv_cuda_decoder_workspace_size(d, g.n_layers, &wsz));
    DevBuf ws1(wsz), ws2(wsz);
    const uint64_t tb = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, SQKV_DTYPE_FP16); /* bf16: same */
    DevBuf outa(2 * tb * g.n_layers), outb(2 * tb * g.n_layers);
    std::vector<uint8_t> want(tb), got(tb);
    struct Step {
        int buf, wsi;
        uint32_t first, n;
        sqkv_dtype dt;
        bool mustafar_before;
    };
    const Step steps[] = {{0, 0, 0, g.n_layers, SQKV_DTYPE_FP16, false}, {0, 0, 0, g.n_layers, SQKV_DTYPE_FP16, false},
                          {0, 0, 0, g.n_layers, SQKV_DTYPE_FP16, false}, {1, 0, 0, g.n_layers, SQKV_DTYPE_FP16, false},
                          {1, 0, 0, g.n_layers, SQKV_DTYPE_FP16, false}, {0, 0, 0, g.n_layers, SQKV_DTYPE_BF16, false},
                          {0, 0, 0, g.n_layers, SQKV_DTYPE_BF16, false}, {0, 0, 1, g.n_layers - 1, SQKV_DTYPE_FP16, false},
                          {0, 1, 0, g.n_layers, SQKV_DTYPE_FP16, false}, {0, 0, 0, g.n_layers, SQKV_DTYPE_FP16, false},
                          {0, 0, 0, g.n_layers, SQKV_DTYPE_FP16, true},  {0, 0, 0, g.n_layers, SQKV_DTYPE_FP16, false}};
    int step_no = 0;
    for (const Step &st : steps) {
        SCOPED_TRACE("step " + std::to_string(step_no++));
        DevBuf &ws = st.wsi ? ws2 : ws1;
        if (st.mustafar_before) {
            sqkv_mustafar_sizes sz;
            SQ_OK(sqkv_cuda_decoder_mustafar_sizes(d, 0, SQKV_TENSOR_K, 0, &sz));
            DevBuf dbm(8 * sz.n_tiles), dacc(4 * (sz.n_tiles + 1)), dval(2 * sz.value_count + 2);
            SQ_OK(sqkv_cuda_decode_mustafar(d, 0, SQKV_TENSOR_K, 0, (int64_t *)dbm.p, (int32_t *)dacc.p,
                                            (uint16_t *)dval.p, &sz, ws.p, wsz, 0));
            CUDA_OK(cudaDeviceSynchronize());
        }
        DevBuf &out = st.buf ? outb : outa;
        std::vector<void *> kp(st.n), vp(st.n);
        for (uint32_t i = 0; i < st.n; i++) {
            kp[i] = (uint8_t *)out.p + 2 * tb * i;
            vp[i] = (uint8_t *)out.p + 2 * tb * i + tb;
        }
        CUDA_OK(cudaMemset(out.p, 0x5A, out.n));
        SQ_OK(sqkv_cuda_decode_layers(d, st.first, st.n, st.dt, kp.data(), vp.data(), tb, ws.p, wsz, 0));
        CUDA_OK(cudaDeviceSynchronize());
        for (uint32_t i = 0; i < st.n; i++)
            for (int t = 0; t < 2; t++) {
                ASSERT_EQ(SQKV_OK, sqkv_reader_decode(r, st.first + i, (sqkv_tensor)t, 0, g.n_kv_heads, st.dt,
                                                      want.data(), tb));
                CUDA_OK(cudaMemcpy(got.data(), t ? vp[i] : kp[i], tb, cudaMemcpyDeviceToHost));
                ASSERT_TRUE(want == got) << "layer " << st.first + i << " tensor " << t;
            }
    }
    sqkv_cuda_decoder_destroy(d);
    sqkv_reader_destroy(r);
}

TEST(CudaDecode, RepeatedCallsReuseThePlanSafely) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t D : {128u, 64u})
        for (uint32_t window : {0u, 9u})
            for (uint32_t gran : {1u, 2u}) {
                Case c = base_case();
                c.layers = 3;
                c.head_dim = D;
                c.window = window;
                c.gran = (sqkv_scale_granularity)gran;
                c.q = gran == 2 ? SQKV_QUANT_ASYMMETRIC : SQKV_QUANT_SYMMETRIC;
                c.tokens = 130 + 61 * (uint32_t)n;
                SCOPED_TRACE(c.name());
                decode_sequence(c, seed_of("repeat") + n);
                n++;
            }
}

/* Layer by layer, as an engine restores a cache: after one validating call, one call per layer, all
 * queued back to back on one stream and read after one synchronization. Calls of at most
 * kInlineSections sections on the fast kernel pass their sections in the kernel's arguments and upload
 * nothing (decode.cu prepare_call); the others (more heads, a dense window, bf16 to fp16, head_dim 64)
 * upload as before. Both against the CPU decoder, for both output types. */
TEST(CudaDecode, LayerByLayerCallsBackToBack) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t heads : {8u, 9u})
        for (uint32_t variant = 0; variant < 6; variant++) {
            Case c = small_case();
            c.layers = 5;
            c.heads = heads;
            c.tokens = 70 + 37 * variant;
            c.window = variant == 4 ? 7 : 0;
            if (variant == 1 || variant == 5) c.e = c.src = SQKV_DTYPE_BF16;
            if (variant == 2) {
                c.q = SQKV_QUANT_ASYMMETRIC;
                c.gran = SQKV_SCALE_PER_TILE;
            }
            if (variant == 3) {
                c.bits = 16;
                c.q = SQKV_QUANT_EXACT;
                c.gran = SQKV_SCALE_NONE;
            }
            if (variant == 5) c.head_dim = 64;
            SCOPED_TRACE(c.name() + " heads " + std::to_string(heads));
            const std::vector<uint8_t> file = make_file(c, seed_of("layer-by-layer") + n++);
            ASSERT_FALSE(file.empty()) << "the CPU writer refused the case";
            sqkv_reader *r = nullptr;
            ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, 0, &r));
            ASSERT_EQ(SQKV_OK, sqkv_reader_open_memory(r, file.data(), file.size()));
            DevBuf dfile(file.size());
            CUDA_OK(cudaMemcpy(dfile.p, file.data(), file.size(), cudaMemcpyHostToDevice));
            sqkv_cuda_decoder *d = nullptr;
            SQ_OK(sqkv_cuda_decoder_create(file.data(), file.size(), dfile.p, nullptr, 0, &d));
            uint64_t wsz = 0;
            SQ_OK(sqkv_cuda_decoder_workspace_size(d, c.layers, &wsz));
            DevBuf ws(wsz);
            for (sqkv_dtype out : {SQKV_DTYPE_FP16, SQKV_DTYPE_BF16}) {
                const uint64_t tb = sqkv_dense_size(c.heads, c.tokens, c.head_dim, out);
                DevBuf dout(2 * tb * c.layers);
                std::vector<void *> kp(c.layers), vp(c.layers);
                for (uint32_t l = 0; l < c.layers; l++) {
                    kp[l] = (uint8_t *)dout.p + 2 * tb * l;
                    vp[l] = (uint8_t *)dout.p + 2 * tb * l + tb;
                }
                SQ_OK(sqkv_cuda_decode_layers(d, 0, c.layers, out, kp.data(), vp.data(), tb, ws.p, wsz, 0)); /* validates */
                CUDA_OK(cudaMemset(dout.p, 0x5A, dout.n));
                for (uint32_t l = 0; l < c.layers; l++)
                    SQ_OK(sqkv_cuda_decode_layers(d, l, 1, out, kp.data() + l, vp.data() + l, tb, ws.p, wsz, 0));
                CUDA_OK(cudaDeviceSynchronize());
                std::vector<uint8_t> want(tb), got(tb);
                for (uint32_t l = 0; l < c.layers; l++)
                    for (int t = 0; t < 2; t++) {
                        ASSERT_EQ(SQKV_OK, sqkv_reader_decode(r, l, (sqkv_tensor)t, 0, c.heads, out, want.data(), tb));
                        CUDA_OK(cudaMemcpy(got.data(), t ? vp[l] : kp[l], tb, cudaMemcpyDeviceToHost));
                        ASSERT_TRUE(want == got) << "layer " << l << " tensor " << t << " out " << out;
                    }
            }
            sqkv_cuda_decoder_destroy(d);
            sqkv_reader_destroy(r);
        }
}

TEST(CudaDecode, ManyHeadsAndLayersInOneCall) {
    SKIP_WITHOUT_GPU();
    Case c = base_case();
    c.layers = 5;
    c.heads = 32;
    c.head_dim = 64;
    c.tokens = 333;
    c.window = 13;
    SCOPED_TRACE(c.name());
    compare_decode(make_file(c, seed_of("many")), 0, 5);
}

/* Files grown by sqkv_append (§9.1: several INDEX sections, superseded DENSE and INDEX sections, the
 * new sparse sections of tokens that left the window): the decoder takes the sections of the last
 * index, as the CPU reader does. With and without the zstd layer, half-tile and ALL_KEPT sections. */
TEST(CudaDecode, AppendedFilesMatchCpu) {
    SKIP_WITHOUT_GPU();
    for (int variant = 0; variant < 3; variant++) {
        Case c = base_case();
        c.window = 20;
        c.tokens = 130;
        c.q = SQKV_QUANT_ASYMMETRIC;
        c.gran = SQKV_SCALE_PER_TILE;
        if (variant == 1) c.zstd = 3;
        if (variant == 2) {
            c.gran = SQKV_SCALE_PER_HALF_TILE;
            c.prune = SQKV_PRUNE_KEEP_ALL;
            c.k = 0;
            c.bits = 3;
        }
        SCOPED_TRACE(c.name());
        const uint64_t seed = seed_of("decode-append") + (uint64_t)variant;
        const std::vector<uint8_t> f = make_file(c, seed);
        ASSERT_FALSE(f.empty());
        char path[] = "/tmp/sqkv_cuda_append_XXXXXX";
        const int fd = mkstemp(path);
        ASSERT_GE(fd, 0);
        ASSERT_EQ((ssize_t)f.size(), write(fd, f.data(), f.size()));
        close(fd);
        const sqkv_geometry g = geometry_of(c);
        const sqkv_writer_options o = options_of(c);
        std::mt19937_64 rng(seed ^ 0xA99E9Dull);
        for (uint32_t n_new : {1u, 70u}) {
            std::vector<std::vector<uint8_t>> k(c.layers), v(c.layers);
            std::vector<const void *> kp(c.layers), vp(c.layers);
            for (uint32_t l = 0; l < c.layers; l++) {
                k[l] = random_tensor(rng, c.heads, n_new, c.head_dim, c.src, c.e);
                v[l] = random_tensor(rng, c.heads, n_new, c.head_dim, c.src, c.e);
                kp[l] = k[l].data();
                vp[l] = v[l].data();
            }
            char detail[256] = "";
            ASSERT_EQ(SQKV_OK, sqkv_append(path, &g, &o, nullptr, n_new, nullptr, c.src, kp.data(), vp.data(), detail,
                                           sizeof detail))
                << detail;
        }
        std::vector<uint8_t> grown;
        FILE *fp = fopen(path, "rb");
        ASSERT_NE(nullptr, fp);
        uint8_t buf[65536];
        for (size_t n; (n = fread(buf, 1, sizeof buf, fp)) > 0;) grown.insert(grown.end(), buf, buf + n);
        fclose(fp);
        unlink(path);
        ASSERT_GT(grown.size(), f.size());
        compare_decode(grown, 0, 2);
        compare_decode(grown, SQKV_CUDA_HOST_VALIDATE, 1);
        /* Mustafar's layout: the CPU reader refuses heads whose sparse region the appends split into
         * sections that do not start on 64-token tiles (UNSUPPORTED); the GPU decoder must agree */
        sqkv_reader *r = nullptr;
        ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, 0, &r));
        ASSERT_EQ(SQKV_OK, sqkv_reader_open_memory(r, grown.data(), grown.size()));
        sqkv_mustafar_sizes sz;
        const sqkv_error cpu = sqkv_reader_mustafar_sizes(r, 1, SQKV_TENSOR_K, 2, &sz);
        sqkv_reader_destroy(r);
        if (cpu == SQKV_OK) {
            compare_mustafar(grown, 1, SQKV_TENSOR_K, 2);
        } else {
            DevBuf dfile(grown.size());
            CUDA_OK(cudaMemcpy(dfile.p, grown.data(), grown.size(), cudaMemcpyHostToDevice));
            sqkv_cuda_decoder *d = nullptr;
            SQ_OK(sqkv_cuda_decoder_create(grown.data(), grown.size(), dfile.p, nullptr, 0, &d));
            EXPECT_EQ((int)cpu, sqkv_cuda_decoder_mustafar_sizes(d, 1, SQKV_TENSOR_K, 2, &sz));
            sqkv_cuda_decoder_destroy(d);
        }
    }
}

TEST(CudaDecode, TrustedAndHostValidatedModes) {
    SKIP_WITHOUT_GPU();
    Case c = base_case();
    c.gran = SQKV_SCALE_PER_TILE;
    for (uint32_t bits : {4u, 3u}) {
        c.bits = bits;
        const std::vector<uint8_t> f = make_file(c, seed_of("modes") + bits);
        compare_decode(f, SQKV_CUDA_TRUSTED, 2);
        compare_decode(f, SQKV_CUDA_HOST_VALIDATE, 1);
    }
}

TEST(CudaDecode, MustafarLayoutMatchesCpu) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 4u, 16u, 3u, 5u, 7u})
        for (uint32_t tps : {0u, 64u}) {
            Case c = base_case();
            c.bits = bits;
            c.tps = tps;
            c.tokens = 64 * 3 + 10;
            c.hps = 2;
            if (bits == 16) {
                c.q = SQKV_QUANT_EXACT;
                c.gran = SQKV_SCALE_NONE;
            } else {
                c.gran = (sqkv_scale_granularity)(1 + n % 2);
            }
            c.e = n % 3 == 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
            SCOPED_TRACE(c.name());
            const std::vector<uint8_t> f = make_file(c, seed_of("mustafar") + n);
            for (uint32_t head : {0u, 2u})
                for (int t = 0; t < 2; t++) compare_mustafar(f, 1, (sqkv_tensor)t, head);
            n++;
        }
}

/* sqkv_cuda_decode_mustafar_layers on decode_fast.cu's kernel (head_dim 128): every width, PER_HEAD
 * and PER_TILE, both quantizers, fp16 and bf16 files, empty and full tiles (sparsity 0.99 and 0), partial
 * chunks, splits by tokens (multiples of 64: the reader refuses others) and by heads, dense windows,
 * every decoder mode; each file once on the fast kernel and once on the general one (values arrays not
 * 16-byte aligned), all layers in one call, then the last layer alone. */
TEST(CudaDecode, MustafarLayersMatchCpu) {
    SKIP_WITHOUT_GPU();
    uint64_t n = 0;
    for (uint32_t bits : {2u, 3u, 4u, 8u, 16u})
        for (int gran = 1; gran <= 2; gran++) {
            if (bits == 16 && gran == 2) continue;
            for (int variant = 0; variant < 2; variant++) {
                Case c = base_case();
                c.bits = bits;
                if (bits == 16) {
                    c.q = SQKV_QUANT_EXACT;
                    c.gran = SQKV_SCALE_NONE;
                } else {
                    c.gran = (sqkv_scale_granularity)gran;
                    c.q = (sqkv_quantizer)(1 + (n + variant) % 2);
                }
                c.e = (n + variant) % 2 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
                c.sparsity = n % 3 == 0 ? 0.7 : n % 3 == 1 ? 0.99 : 0.0;
                c.heads = 1 + (uint32_t)(n % 3);
                c.hps = 1 + (uint32_t)(n % 2);
                c.tps = variant ? 64 : 0;
                c.tokens = 64 * 2 + 1 + 29 * (uint32_t)(n % 4);
                c.window = (uint32_t)(n % 3) * 7;
                c.layers = 3;
                SCOPED_TRACE(c.name());
                const std::vector<uint8_t> f = make_file(c, seed_of("mustafar-layers") + n);
                const unsigned flags = (unsigned)(n % 3); /* GPU checks, trusted, host validation */
                compare_mustafar_layers(f, flags, 0, c.layers, 0);
                compare_mustafar_layers(f, flags, 0, c.layers, 2);
                compare_mustafar_layers(f, flags, c.layers - 1, 1, 0);
                n++;
            }
        }
}

/* The layers call's arguments are checked before anything is queued. */
TEST(CudaDecode, MustafarLayersRejectsBadArguments) {
    SKIP_WITHOUT_GPU();
    Case c = base_case();
    const std::vector<uint8_t> f = make_file(c, seed_of("mustafar-layers-args"));
    DevBuf dfile(f.size());
    CUDA_OK(cudaMemcpy(dfile.p, f.data(), f.size(), cudaMemcpyHostToDevice));
    auto fresh = [&]() {
        sqkv_cuda_decoder *d = nullptr;
        EXPECT_EQ(SQKV_OK, sqkv_cuda_decoder_create(f.data(), f.size(), dfile.p, nullptr, 0, &d));
        return d;
    };
    uint64_t wsz = 0;
    sqkv_cuda_decoder *d = fresh();
    SQ_OK(sqkv_cuda_decoder_workspace_size(d, c.layers, &wsz));
    DevBuf ws(wsz);
    std::vector<sqkv_mustafar_sizes> sz(c.heads);
    for (uint32_t h = 0; h < c.heads; h++) SQ_OK(sqkv_cuda_decoder_mustafar_sizes(d, 0, SQKV_TENSOR_K, h, &sz[h]));
    uint64_t most = 0; /* every head writes into one values array here: as large as the largest head needs */
    for (const sqkv_mustafar_sizes &z : sz) most = std::max<uint64_t>(most, z.value_count);
    DevBuf bm(8 * sz[0].n_tiles * c.heads), acc(4 * (sz[0].n_tiles + 1) * c.heads), val(2 * most);
    std::vector<uint16_t *> vp(c.heads, (uint16_t *)val.p);
    sqkv_cuda_mustafar_out o = {(int64_t *)bm.p, (int32_t *)acc.p, vp.data(), sz.data()};
    EXPECT_EQ(SQKV_OK, sqkv_cuda_decode_mustafar_layers(d, 0, 0, &o, &o, ws.p, wsz, 0)) << "no layers: nothing to do";
    EXPECT_EQ(SQKV_ERR_INVALID_ARGUMENT, sqkv_cuda_decode_mustafar_layers(d, 0, 1, nullptr, &o, ws.p, wsz, 0));
    sqkv_cuda_decoder_destroy(d);
    d = fresh();
    EXPECT_EQ(SQKV_ERR_INVALID_ARGUMENT, sqkv_cuda_decode_mustafar_layers(d, c.layers, 1, &o, &o, ws.p, wsz, 0));
    EXPECT_STRNE("", sqkv_cuda_decoder_error_detail(d));
    sqkv_cuda_decoder_destroy(d);
    d = fresh();
    /* V's tile count differs from K's: the K sizes given for V are refused */
    EXPECT_EQ(SQKV_ERR_BUFFER_TOO_SMALL, sqkv_cuda_decode_mustafar_layers(d, 0, 1, &o, &o, ws.p, wsz, 0));
    sqkv_cuda_decoder_destroy(d);
    d = fresh();
    sqkv_cuda_mustafar_out odd = o;
    odd.bitmaps = (int64_t *)((uint8_t *)bm.p + 4);
    EXPECT_EQ(SQKV_ERR_MISALIGNED, sqkv_cuda_decode_mustafar_layers(d, 0, 1, &odd, &o, ws.p, wsz, 0));
    sqkv_cuda_decoder_destroy(d);
    /* with every size right, a workspace too small is refused, and the workspace given works */
    d = fresh();
    std::vector<sqkv_mustafar_sizes> szv(c.heads);
    for (uint32_t h = 0; h < c.heads; h++) SQ_OK(sqkv_cuda_decoder_mustafar_sizes(d, 0, SQKV_TENSOR_V, h, &szv[h]));
    uint64_t most_v = 0;
    for (const sqkv_mustafar_sizes &z : szv) most_v = std::max<uint64_t>(most_v, z.value_count);
    DevBuf bmv(8 * szv[0].n_tiles * c.heads), accv(4 * (szv[0].n_tiles + 1) * c.heads), valv(2 * most_v);
    std::vector<uint16_t *> vpv(c.heads, (uint16_t *)valv.p);
    sqkv_cuda_mustafar_out ov = {(int64_t *)bmv.p, (int32_t *)accv.p, vpv.data(), szv.data()};
    EXPECT_EQ(SQKV_ERR_BUFFER_TOO_SMALL, sqkv_cuda_decode_mustafar_layers(d, 0, 1, &o, &ov, ws.p, 64, 0));
    EXPECT_NE(nullptr, strstr(sqkv_cuda_decoder_error_detail(d), "workspace")) << sqkv_cuda_decoder_error_detail(d);
    sqkv_cuda_decoder_destroy(d);
    d = fresh();
    EXPECT_EQ(SQKV_OK, sqkv_cuda_decode_mustafar_layers(d, 0, 1, &o, &ov, ws.p, wsz, 0));
    CUDA_OK(cudaDeviceSynchronize());
    sqkv_cuda_decoder_destroy(d);
}

/* Random single-byte corruptions of tensor section bodies: with checksums, the GPU decoder reports
 * SECTION_CHECKSUM; trusted (checksums skipped) it reports what the CPU decoder reports, rule by rule
 * (or decodes exactly what the CPU decodes, when the byte changed only a value). */
TEST(CudaDecode, CorruptionsGiveTheCpuErrors) {
    SKIP_WITHOUT_GPU();
    /* 4 and 3 bits per tile (3: codes straddle words, the payload padding bits sit inside a byte); the
     * zstd layer (damage in stream tables and frames); half tiles; keep-all sections */
    for (int variant = 0; variant < 5; variant++) {
        const uint32_t bits = variant == 1 ? 3u : variant == 2 ? 2u : 4u;
        const uint64_t seed = seed_of("corrupt") + (uint64_t)variant;
        std::mt19937_64 rng(seed);
        Case c = base_case();
        c.layers = 1;
        c.heads = 2;
        c.bits = bits;
        c.q = SQKV_QUANT_ASYMMETRIC;
        c.gran = variant >= 3 ? SQKV_SCALE_PER_HALF_TILE : SQKV_SCALE_PER_TILE;
        if (variant == 2) c.zstd = 3;
        if (variant == 4) {
            c.prune = SQKV_PRUNE_KEEP_ALL;
            c.k = 0;
        }
        SCOPED_TRACE(c.name());
        const std::vector<uint8_t> good = make_file(c, seed);
        ASSERT_FALSE(good.empty());
        sqkv_reader *r = nullptr;
        ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, 0, &r));
        ASSERT_EQ(SQKV_OK, sqkv_reader_open_memory(r, good.data(), good.size()));
        std::vector<sqkv_section_info> tensors;
        size_t ns = 0;
        sqkv_reader_section_count(r, &ns);
        for (size_t i = 0; i < ns; i++) {
            sqkv_section_info si;
            sqkv_reader_section_info(r, i, &si);
            if (si.kind == 1 || si.kind == 2) tensors.push_back(si);
        }
        sqkv_reader_destroy(r);
        for (int trial = 0; trial < 60; trial++) {
            std::vector<uint8_t> f = good;
            const sqkv_section_info &si = tensors[rng() % tensors.size()];
            const uint64_t at = si.offset + 64 + rng() % si.stored_size;
            f[at] ^= (uint8_t)(1u << (rng() % 8));
            SCOPED_TRACE(testing::Message() << "seed " << seed << " trial " << trial << " byte " << at);
            /* checked: a checksum mismatch before anything is decoded (codec-1 sections: at creation) */
            do {
                DevBuf dfile(f.size());
                CUDA_OK(cudaMemcpy(dfile.p, f.data(), f.size(), cudaMemcpyHostToDevice));
                sqkv_cuda_decoder *d = nullptr;
                const sqkv_cuda_status created = sqkv_cuda_decoder_create(f.data(), f.size(), dfile.p, nullptr, 0, &d);
                if (created != SQKV_OK) {
                    EXPECT_EQ(SQKV_ERR_SECTION_CHECKSUM, created) << sqkv_cuda_decoder_error_detail(d);
                    sqkv_cuda_decoder_destroy(d);
                    break;
                }
                uint64_t wsz = 0;
                SQ_OK(sqkv_cuda_decoder_workspace_size(d, 1, &wsz));
                const uint64_t tb = sqkv_dense_size(c.heads, c.tokens, c.head_dim, SQKV_DTYPE_FP16);
                DevBuf ws(wsz), out(2 * tb);
                void *kp[1] = {out.p}, *vp[1] = {(uint8_t *)out.p + tb};
                EXPECT_EQ(SQKV_ERR_SECTION_CHECKSUM, sqkv_cuda_decode_layers(d, 0, 1, SQKV_DTYPE_FP16, kp, vp, tb, ws.p, wsz, 0));
                sqkv_cuda_decoder_destroy(d);
            } while (0);
            /* trusted: the CPU decoder's verdict (compare_decode compares codes and, when both decode, bytes) */
            sqkv_reader *tr = nullptr;
            ASSERT_EQ(SQKV_OK, sqkv_reader_create(nullptr, SQKV_READER_TRUSTED, &tr));
            const sqkv_error open_err = sqkv_reader_open_memory(tr, f.data(), f.size());
            sqkv_reader_destroy(tr);
            if (open_err != SQKV_OK) continue; /* structure errors are the CPU reader's own, shared code */
            std::vector<uint8_t> trusted_file = f;
            /* compare_decode opens a checking CPU reader; give it the same trust by fixing the checksum */
            sqkv_section_header h;
            sqkv_section_header_unpack(&trusted_file[si.offset], &h);
            h.body_checksum = XXH3_64bits(&trusted_file[si.offset + 64], si.stored_size);
            sqkv_section_header_pack(&h, &trusted_file[si.offset]);
            compare_decode(trusted_file, SQKV_CUDA_TRUSTED, 1);
        }
    }
}

TEST(CudaDecode, CreateRejectsBadFiles) {
    std::vector<uint8_t> junk(4096, 0x11);
    sqkv_cuda_decoder *d = nullptr;
    EXPECT_EQ(SQKV_ERR_INVALID_ARGUMENT, sqkv_cuda_decoder_create(junk.data(), junk.size(), nullptr, nullptr, 0, &d));
    const sqkv_cuda_status st = sqkv_cuda_decoder_create(junk.data(), junk.size(), (void *)0x1000, nullptr, 0, &d);
    EXPECT_EQ(SQKV_ERR_BAD_MAGIC, st);
    EXPECT_STRNE("", sqkv_cuda_decoder_error_detail(d));
    sqkv_cuda_decoder_destroy(d);
}

/* A cache on the GPU, encoded there, saved to a file, read back, restored to the GPU: equal to the CPU
 * decoding of the same file, and the file equal to the CPU writer's. */
TEST(CudaEndToEnd, SaveGpuCacheToFileAndRestore) {
    SKIP_WITHOUT_GPU();
    Case c = base_case();
    c.layers = 3;
    c.heads = 4;
    c.tokens = 300;
    c.window = 44;
    std::mt19937_64 rng(seed_of("e2e"));
    std::vector<std::vector<uint8_t>> k(c.layers), v(c.layers);
    for (uint32_t l = 0; l < c.layers; l++) {
        k[l] = random_tensor(rng, c.heads, c.tokens, c.head_dim, c.src, c.e);
        v[l] = random_tensor(rng, c.heads, c.tokens, c.head_dim, c.src, c.e);
    }
    std::vector<int32_t> tokens(c.tokens);
    for (auto &t : tokens) t = (int32_t)(rng() & 0xFFFF);
    const sqkv_geometry g = geometry_of(c);
    const sqkv_writer_options o = options_of(c);
    sqkv_cuda_encoder *enc = nullptr;
    SQ_OK(sqkv_cuda_encoder_create(&g, &o, &enc));
    SQ_OK(sqkv_cuda_encoder_set_tokens(enc, tokens.data(), tokens.size()));
    const uint8_t fp[4] = {1, 2, 3, 4};
    SQ_OK(sqkv_cuda_encoder_set_fingerprint(enc, fp, 4));
    sqkv_cuda_encode_sizes sz;
    SQ_OK(sqkv_cuda_encoder_sizes(enc, &sz));
    const size_t tb = (size_t)c.heads * c.tokens * c.head_dim * 2;
    DevBuf in(2 * tb * c.layers), out(sz.layer_capacity * c.layers), ws(sz.workspace_base + sz.workspace_per_layer * c.layers);
    std::vector<const void *> kp(c.layers), vp(c.layers), lp(c.layers);
    for (uint32_t l = 0; l < c.layers; l++) {
        uint8_t *b = (uint8_t *)in.p + 2 * tb * l;
        CUDA_OK(cudaMemcpy(b, k[l].data(), tb, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(b + tb, v[l].data(), tb, cudaMemcpyHostToDevice));
        kp[l] = b;
        vp[l] = b + tb;
        lp[l] = (uint8_t *)out.p + sz.layer_capacity * l;
    }
    SQ_OK(sqkv_cuda_encode_layers(enc, 0, c.layers, c.src, kp.data(), vp.data(), out.p, out.n, ws.p, ws.n, 0));
    SQ_OK(sqkv_cuda_encode_results(enc, ws.p, nullptr, 0));
    char path[] = "/tmp/sqkv_cuda_e2e_XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    auto fd_write = [](void *ctx, const void *data, size_t size) -> int {
        return write(*(int *)ctx, data, size) == (ssize_t)size ? 0 : 1;
    };
    int fdv = fd;
    SQ_OK(sqkv_cuda_encoder_write_file(enc, lp.data(), fd_write, &fdv, 0));
    close(fd);
    sqkv_cuda_encoder_destroy(enc);
    std::vector<uint8_t> file;
    {
        FILE *f = fopen(path, "rb");
        ASSERT_NE(nullptr, f);
        uint8_t buf[65536];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) file.insert(file.end(), buf, buf + got);
        fclose(f);
    }
    unlink(path);
    /* the same bytes as the CPU writer's file with the same tokens and fingerprint */
    {
        sqkv_writer *w = nullptr;
        ASSERT_EQ(SQKV_OK, sqkv_writer_create(&g, &o, &w));
        sqkv_writer_set_tokens(w, tokens.data(), tokens.size());
        sqkv_writer_set_fingerprint(w, fp, 4);
        for (uint32_t l = 0; l < c.layers; l++) ASSERT_EQ(SQKV_OK, sqkv_writer_add_layer(w, l, c.src, k[l].data(), v[l].data()));
        std::vector<uint8_t> want;
        ASSERT_EQ(SQKV_OK, sqkv_writer_write_callback(w, vec_write, &want));
        sqkv_writer_destroy(w);
        ASSERT_EQ("", first_difference(want, file));
    }
    compare_decode(file, 0, c.layers);
}
