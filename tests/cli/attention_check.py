#!/usr/bin/env python3
"""Recomputes `sqkv compare`'s attention-output error independently (binary64, no numpy).

Usage: attention_check.py ORIGINAL RESTORED SEED QUERIES
ORIGINAL and RESTORED are dense caches in any form kvtool.py reads (RESTORED e.g. from sqkv decode).
Prints the relative error ||O' - O|| / ||O|| over all layers, heads and queries, with the queries of
sqkv compare: for layer l and head h, QUERIES normal vectors from xoshiro256** seeded through
splitmix64 with (SEED ^ (l << 32) ^ h, 0x51E5, n_tokens, head_dim), polar-method normals
(tools/common/rng.h, tools/common/kv_metrics.c).
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvtool  # noqa: E402

MASK = (1 << 64) - 1


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def rotl(v, k):
    return ((v << k) | (v >> (64 - k))) & MASK


class Rng:
    def __init__(self, seed, a, b, c):
        x = seed
        for word in (a, b, c):
            x, z = splitmix(x)
            x = z ^ word
        self.s = []
        for _ in range(4):
            x, z = splitmix(x)
            self.s.append(z)

    def next(self):
        s = self.s
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def uniform(self):
        return ((self.next() >> 11) + 0.5) * (1.0 / 9007199254740992.0)

    def gaussian(self):
        while True:
            u, v = 2 * self.uniform() - 1, 2 * self.uniform() - 1
            q = u * u + v * v
            if 0 < q < 1:
                return u * math.sqrt(-2 * math.log(q) / q)


def attend(q, k, v, tokens, dim):
    scale = 1.0 / math.sqrt(dim)
    scores = [sum(q[d] * k[t * dim + d] for d in range(dim)) * scale for t in range(tokens)]
    top = max(scores)
    weights = [math.exp(x - top) for x in scores]
    total = sum(weights)
    return [sum(weights[t] * v[t * dim + d] for t in range(tokens)) / total for d in range(dim)]


def main():
    a, b = kvtool.load_cache(sys.argv[1]), kvtool.load_cache(sys.argv[2])
    seed, queries = int(sys.argv[3]), int(sys.argv[4])
    layers, heads, tokens, dim = a['shape']
    err = ref = 0.0
    per = tokens * dim
    for l in range(layers):
        for h in range(heads):
            rng = Rng((seed ^ (l << 32) ^ h) & MASK, 0x51E5, tokens, dim)
            ko, vo = a['K'][l][h * per:(h + 1) * per], a['V'][l][h * per:(h + 1) * per]
            kr, vr = b['K'][l][h * per:(h + 1) * per], b['V'][l][h * per:(h + 1) * per]
            for _ in range(queries):
                q = [float(_f32(rng.gaussian())) for _ in range(dim)]
                o, o2 = attend(q, ko, vo, tokens, dim), attend(q, kr, vr, tokens, dim)
                err += sum((y - x) ** 2 for x, y in zip(o, o2))
                ref += sum(x * x for x in o)
    print("%.9g" % math.sqrt(err / ref))


def _f32(x):
    import struct
    return struct.unpack('<f', struct.pack('<f', x))[0]


if __name__ == '__main__':
    main()
