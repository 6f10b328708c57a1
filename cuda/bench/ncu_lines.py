#!/usr/bin/env python3
"""Warp instructions and stall samples of one kernel by source line, from an Nsight Compute report made
with -lineinfo and --import-source yes (source-level numbers that ncu's own CUDA source view leaves empty).

  ncu -i REPORT.ncu-rep --page source --csv --print-source cuda,sass > cudasass.csv
  python3 cuda/bench/ncu_lines.py cudasass.csv encode_fast.cu [NAME:FIRST-LAST ...]
  python3 cuda/bench/ncu_lines.py --shared cudasass.csv encode_fast.cu


Each SASS instruction counts once, for the last line of FILE in its inline chain; an instruction whose chain
has no line of FILE (an inlined CUDA header intrinsic) counts for the FILE line before it in address order.
Without ranges it prints every line; with NAME:FIRST-LAST ranges (line numbers of FILE) it prints their
sums, also per row when --rows N gives the number of rows the launch processed. With --shared it lists the
lines with the most shared-memory bank-conflict wavefronts (L1 Wavefronts Shared beyond the ideal: a
line whose excess is large against its instructions reads or writes banks that collide). Standard library
only.
"""
import argparse
import collections
import csv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('csv')
    ap.add_argument('file')
    ap.add_argument('ranges', nargs='*')
    ap.add_argument('--rows', type=float, default=0)
    ap.add_argument('--shared', action='store_true')
    args = ap.parse_args()
    lines_of, counts = collections.defaultdict(list), {}
    current_file, line, cols = None, None, None
    for r in csv.reader(open(args.csv)):
        if not r:
            continue
        if r[0] == 'File Path':
            current_file = r[1].split('/')[-1]
            continue
        if r[0] == 'Function Name':
            continue
        if r[0] == 'Line No':
            cols = {name: i for i, name in enumerate(r)}
            continue
        if r[0]:
            line = int(r[0])
        address = r[2] if len(r) > 2 else ''
        if not address.startswith('0x'):
            continue
        def value(name):
            text = r[cols[name]].replace(',', '') if name in cols else ''
            return int(float(text)) if text else 0
        executed = value('Instructions Executed')
        stalls = value('Warp Stall Sampling (All Samples)')
        lines_of[address].append((current_file, line))
        counts[address] = (executed, stalls, value('L1 Wavefronts Shared'), value('L1 Wavefronts Shared Ideal'))
    per_line = collections.defaultdict(lambda: [0, 0, 0, 0])
    last = None
    for address in sorted(counts, key=lambda a: int(a, 16)):
        own = [ln for f, ln in lines_of[address] if f == args.file]
        if own:
            last = max(own)
        for i in range(4):
            per_line[last][i] += counts[address][i]
    if args.shared:
        waves = sum(v[2] for v in per_line.values())
        excess = sum(v[2] - v[3] for v in per_line.values())
        print(f'shared-memory wavefronts: {waves / 1e6:.2f} M, {excess / 1e6:.2f} M of them excess')
        for ln in sorted(per_line, key=lambda x: per_line[x][3] - per_line[x][2])[:25]:
            v = per_line[ln]
            print(f'{args.file}:{ln} {v[0] / 1e6:8.2f} M instructions {v[2] / 1e6:8.2f} M wavefronts '
                  f'{(v[2] - v[3]) / 1e6:8.2f} M excess')
        return
    total = sum(v[0] for v in per_line.values()) or 1
    total_stalls = sum(v[1] for v in per_line.values()) or 1
    print(f'total: {total / 1e6:.2f} M warp instructions, {total_stalls} stall samples')
    if not args.ranges:
        for ln in sorted(per_line, key=lambda x: (x is None, x or 0)):
            v = per_line[ln]
            print(f'{args.file}:{ln} {v[0] / 1e6:8.2f} M {100 * v[0] / total:5.1f}%  stalls {100 * v[1] / total_stalls:5.1f}%')
        return
    for spec in args.ranges:
        name, span = spec.rsplit(':', 1)
        first, last_line = (int(x) for x in span.split('-'))
        v = [sum(per_line[ln][i] for ln in per_line if ln is not None and first <= ln <= last_line) for i in (0, 1)]
        per_row = f'  {v[0] / args.rows:6.1f} per row' if args.rows else ''
        print(f'{name:24s} {v[0] / 1e6:8.2f} M {100 * v[0] / total:5.1f}%  stalls {100 * v[1] / total_stalls:5.1f}%{per_row}')


if __name__ == '__main__':
    main()
