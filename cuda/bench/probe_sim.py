#!/usr/bin/env python3
"""Probe counts of the fast encoder's row-threshold search (encode_fast.cu, prune_fast_kernel P1), on the
host, so that a change of the search rule can be judged before it is written as a kernel.

The kernel finds each row's threshold T (the keep-th largest 15-bit fp16 magnitude of the row's 128
elements) by bisection over [floor, max + 1), where floor is the smallest of the row's 32 group maxima
(groups of four channels of one parity in one half row, group_max_floor<4>), and stops a row at once
when a probe counts exactly keep elements. A warp serves 16 consecutive tokens of one head and runs until
its slowest row is done, so the cost is the per-warp maximum, not the per-row mean.

Besides the kernel's rule ("current") it reports rules that stop earlier and would need a finishing step:
  need1  stop when the bracket's top part needs one more element (keep - count(>= hi) == 1): T is then the
         largest magnitude below hi, one pass of packed maxima;
  K<n>   stop when the bracket [lo, hi) holds at most n elements (count(>= lo) - count(>= hi) <= n): the
         threshold is then chosen among those n.
The finishing steps are not modelled: their cost has to be added to the probes saved.

Standard library only; not part of the build. Usage:
  python3 cuda/bench/probe_sim.py [--keep 26] [--synthetic-rows 16384] FILE.npy ...
where each FILE.npy is an fp16 array whose last axis is 128 (e.g. shared/data/kv/*.k.npy); the synthetic
rows follow cuda/bench/bench.cc fill_fp16 (the benchmark's generator).
"""
import argparse
import bisect
import struct


def load_rows(path):
    raw = open(path, 'rb').read()
    if raw[:6] != b'\x93NUMPY':
        raise SystemExit(f'{path}: not an .npy file')
    header_len = struct.unpack('<H', raw[8:10])[0]
    header = raw[10:10 + header_len].decode('latin1')
    if "'<f2'" not in header or not header.rstrip().rstrip('}').rstrip().rstrip(',').endswith('128)'):
        raise SystemExit(f'{path}: expected little-endian float16 with a last axis of 128')
    data = raw[10 + header_len:]
    values = struct.unpack('<%dH' % (len(data) // 2), data)
    return [[x & 0x7FFF for x in values[i:i + 128]] for i in range(0, len(values), 128)]


def synthetic_rows(n_rows, seed=1):
    mask = 2**64 - 1
    x = (seed * 0x9E3779B97F4A7C15 + 1) & mask
    rows = []
    for _ in range(n_rows):
        row = []
        for d in range(128):
            x ^= x >> 12
            x ^= (x << 25) & mask
            x ^= x >> 27
            r = (x * 0x2545F4914F6CDD1D) & mask
            u = ((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + ((r >> 48) & 0xFFFF)) / 65536.0 - 2.0
            v = u * (8.0 if d % 17 == 3 else 1.0)
            row.append(struct.unpack('<H', struct.pack('<e', v))[0] & 0x7FFF)
        rows.append(row)
    return rows


def group_max_floor(row):
    maxima = []
    for d0 in (0, 64):
        for group in range(8):
            for parity in (0, 1):
                maxima.append(max(row[d0 + 8 * group + 2 * j + parity] for j in range(4)))
    return min(maxima)


def probes(row, keep, stop_at_bracket=None, need1=False):
    ordered = sorted(row)

    def count_ge(t):
        return 128 - bisect.bisect_left(ordered, t)

    hi = min(ordered[-1], 0x7BFF) + 1
    lo = min(group_max_floor(row), hi - 1)
    c_lo, c_hi, hi_counted = (128 if lo == 0 else -1), 0, False
    n = 0
    while hi - lo > 1 or c_lo < 0:
        if stop_at_bracket is not None and c_lo >= 0 and hi_counted and c_lo - c_hi <= stop_at_bracket:
            break
        if need1 and hi_counted and keep - c_hi == 1:
            break
        mid = (lo + hi) >> 1
        c = count_ge(mid)
        n += 1
        if c >= keep:
            lo, c_lo = mid, c
        else:
            hi, c_hi, hi_counted = mid, c, True
        if c == keep:
            break
    return n


RULES = [('current', {}), ('need1', {'need1': True}), ('K2', {'stop_at_bracket': 2}),
         ('K4', {'stop_at_bracket': 4}), ('K8', {'stop_at_bracket': 8})]


def report(label, rows, keep):
    cells = []
    for name, kw in RULES:
        per_row = [probes(r, keep, **kw) for r in rows]
        per_warp = [max(per_row[i:i + 16]) for i in range(0, len(per_row), 16)]
        cells.append(f'{sum(per_row) / len(per_row):.2f} / {sum(per_warp) / len(per_warp):.2f}')
    print(f'| {label} | ' + ' | '.join(cells) + ' |')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('files', nargs='*')
    ap.add_argument('--keep', type=int, default=26, help='kept elements per row (26: the writer default, s=0.8)')
    ap.add_argument('--synthetic-rows', type=int, default=16384)
    args = ap.parse_args()
    print('| rows | ' + ' | '.join(f'{name}: probes per row / per warp' for name, _ in RULES) + ' |')
    print('|---' * (len(RULES) + 1) + '|')
    for path in args.files:
        report(path.split('/')[-1], load_rows(path), args.keep)
    if args.synthetic_rows:
        report('synthetic (bench.cc)', synthetic_rows(args.synthetic_rows), args.keep)


if __name__ == '__main__':
    main()
