// stream_sink.cc: see stream_sink.h.
#include "stream_sink.h"

#include <algorithm>
#include <cstring>

namespace sqkv_test {
namespace {

int SinkHeader(void *ctx, const sqkv_geometry *g) {
    StreamSink *s = static_cast<StreamSink *>(ctx);
    s->g = *g;
    s->tensors.assign(2 * g->n_layers, Bytes(sqkv_dense_size(g->n_kv_heads, g->n_tokens, g->head_dim, s->dtype), 0xEE));
    return 0;
}

int SinkTensor(void *ctx, const sqkv_stream_tensor *t) {
    StreamSink *s = static_cast<StreamSink *>(ctx);
    const size_t width = DtypeSize(s->dtype), row = static_cast<size_t>(t->token_count) * s->g.head_dim * width;
    Bytes &dst = s->tensors[2 * t->layer + t->tensor];
    const uint8_t *src = static_cast<const uint8_t *>(t->data);
    for (uint32_t h = 0; h < t->head_count; h++)
        std::memcpy(dst.data() + (static_cast<size_t>(t->head_start + h) * s->g.n_tokens + t->token_start) * s->g.head_dim * width,
                    src + h * t->head_stride, row);
    return 0;
}

}  // namespace

sqkv_error StreamDecode(const Bytes &file, size_t chunk, StreamSink *sink, std::string *detail) {
    StreamSink local;
    if (!sink) sink = &local;
    sqkv_stream_callbacks cb{};
    cb.ctx = sink;
    cb.on_header = SinkHeader;
    cb.on_tensor = SinkTensor;
    sqkv_stream_decoder *d = nullptr;
    sqkv_error err = sqkv_stream_decoder_create(nullptr, 0, sink->dtype, &cb, &d);
    if (err) return err;
    for (size_t at = 0; at < file.size() && !err; at += chunk)
        err = sqkv_stream_decoder_push(d, file.data() + at, std::min(chunk, file.size() - at));
    const sqkv_error fin = sqkv_stream_decoder_finish(d, nullptr);
    if (!err) err = fin;
    if (detail) *detail = sqkv_stream_decoder_error_detail(d);
    sqkv_stream_decoder_destroy(d);
    return err;
}

std::vector<uint16_t> AsU16(const Bytes &b) {
    std::vector<uint16_t> out(b.size() / 2);
    for (size_t i = 0; i < out.size(); i++) out[i] = static_cast<uint16_t>(b[2 * i] | (b[2 * i + 1] << 8));
    return out;
}

}  // namespace sqkv_test
