#!/usr/bin/env python3
"""Test helper for the sqkv CLI tests: makes and reads dense KV caches without numpy.

Writes .npy (v1.0) and .safetensors files with deterministic values, and loads any dense form the
CLI reads or writes (PREFIX pair, stacked .npy, directory, .safetensors) to compare caches.
Commands (all print nothing on success and exit non-zero with a message on failure):
  make FORM PATH L H T D [--dtype f2|f4|bf16] [--tokens] [--meta K=V] [--seed S] [--zeros]
      FORM: pair | stacked | dir | safetensors
  same A B                 the two caches hold bit-identical values (after conversion to float)
  close A B MAXREL         relative L2 difference of K and of V below MAXREL
  relerr A B               prints the relative L2 errors of K and V of B against A
  slice A B LAYERS HEADS   B equals A restricted to the given layer and head lists ("0,2")
  tokens A N               A carries token ids 0..N-1 scaled as make writes them
"""
import json
import math
import os
import random
import struct
import sys


def fail(msg):
    sys.stderr.write("kvtool: %s\n" % msg)
    sys.exit(1)


# ---------------------------------------------------------------------------------------- values

def make_values(seed, layers, heads, tokens, dim, zeros=False):
    """K and V as nested lists [layer][head][token][dim] of floats exactly representable in fp16."""
    rng = random.Random(seed)
    def one():
        out = []
        for _ in range(layers):
            layer = []
            for _ in range(heads):
                head = []
                for _ in range(tokens):
                    row = []
                    for _ in range(dim):
                        x = rng.gauss(0.0, 1.0)
                        x = math.copysign(0.01 + abs(x), x)
                        if zeros and rng.random() < 0.1:
                            x = 0.0
                        row.append(struct.unpack('<e', struct.pack('<e', x))[0])
                    head.append(row)
                layer.append(head)
            out.append(layer)
        return out
    return one(), one()


def flat(nested):
    if isinstance(nested, list):
        out = []
        for x in nested:
            out.extend(flat(x))
        return out
    return [nested]


def bf16_bits(x):
    u = struct.unpack('<I', struct.pack('<f', x))[0]
    u += 0x7FFF + ((u >> 16) & 1)
    return (u >> 16) & 0xFFFF


def pack(values, dtype):
    if dtype == 'f2':
        return struct.pack('<%de' % len(values), *values)
    if dtype == 'f4':
        return struct.pack('<%df' % len(values), *values)
    if dtype == 'bf16':
        return struct.pack('<%dH' % len(values), *[bf16_bits(v) for v in values])
    if dtype == 'i4':
        return struct.pack('<%di' % len(values), *values)
    fail("bad dtype " + dtype)


def unpack(data, dtype):
    if dtype == 'f2':
        return list(struct.unpack('<%de' % (len(data) // 2), data))
    if dtype == 'f4':
        return list(struct.unpack('<%df' % (len(data) // 4), data))
    if dtype == 'bf16':
        return [struct.unpack('<f', struct.pack('<I', h << 16))[0] for h in struct.unpack('<%dH' % (len(data) // 2), data)]
    if dtype == 'i4':
        return list(struct.unpack('<%di' % (len(data) // 4), data))
    fail("bad dtype " + dtype)


# ---------------------------------------------------------------------------------------- .npy

def npy_bytes(values, dtype, shape):
    descr = {'f2': '<f2', 'f4': '<f4', 'i4': '<i4'}[dtype]
    shape_text = '(%d,)' % shape[0] if len(shape) == 1 else '(' + ', '.join(str(s) for s in shape) + ')'
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_text)
    total = 10 + len(header) + 1
    pad = (64 - total % 64) % 64
    header = header + ' ' * pad + '\n'
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', len(header)) + header.encode('latin1') + pack(values, dtype)


def read_npy(path):
    data = open(path, 'rb').read()
    if data[:6] != b'\x93NUMPY':
        fail(path + ": not .npy")
    major = data[6]
    if major == 1:
        hlen = struct.unpack('<H', data[8:10])[0]
        start = 10
    else:
        hlen = struct.unpack('<I', data[8:12])[0]
        start = 12
    header = data[start:start + hlen].decode('latin1')
    d = eval(header, {"__builtins__": {}}, {"True": True, "False": False})
    dtype = {'<f2': 'f2', '<f4': 'f4', '<i4': 'i4'}[d['descr']]
    if d['fortran_order']:
        fail(path + ": fortran order")
    return dtype, list(d['shape']), unpack(data[start + hlen:], dtype)


# ---------------------------------------------------------------------------------------- .safetensors

def safetensors_bytes(tensors, meta):
    """tensors: list of (name, dtype, shape, values)."""
    header = {}
    if meta:
        header['__metadata__'] = meta
    blobs = []
    at = 0
    for name, dtype, shape, values in tensors:
        blob = pack(values, dtype)
        st = {'f2': 'F16', 'f4': 'F32', 'bf16': 'BF16', 'i4': 'I32'}[dtype]
        header[name] = {'dtype': st, 'shape': shape, 'data_offsets': [at, at + len(blob)]}
        at += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * ((8 - (len(text) + 8) % 8) % 8)
    return struct.pack('<Q', len(text)) + text + b''.join(blobs)


def read_safetensors(path):
    data = open(path, 'rb').read()
    n = struct.unpack('<Q', data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop('__metadata__', {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        dtype = {'F16': 'f2', 'F32': 'f4', 'BF16': 'bf16', 'I32': 'i4'}[t['dtype']]
        b, e = t['data_offsets']
        out[name] = (dtype, t['shape'], unpack(data[base + b:base + e], dtype))
    return out, meta


# ---------------------------------------------------------------------------------------- caches

def write_cache(form, path, k, v, dtype, tokens, meta):
    L, H, T, D = len(k), len(k[0]), len(k[0][0]), len(k[0][0][0])
    if form == 'pair':
        open(path + '.k.npy', 'wb').write(npy_bytes(flat(k), dtype, [L, H, T, D]))
        open(path + '.v.npy', 'wb').write(npy_bytes(flat(v), dtype, [L, H, T, D]))
        if tokens is not None:
            open(path + '.tokens.npy', 'wb').write(npy_bytes(tokens, 'i4', [T]))
    elif form == 'stacked':
        open(path, 'wb').write(npy_bytes(flat(k) + flat(v), dtype, [2, L, H, T, D]))
    elif form == 'dir':
        os.makedirs(path, exist_ok=True)
        for l in range(L):
            open(os.path.join(path, 'layers.%d.key.npy' % l), 'wb').write(npy_bytes(flat(k[l]), dtype, [H, T, D]))
            open(os.path.join(path, 'layers.%d.value.npy' % l), 'wb').write(npy_bytes(flat(v[l]), dtype, [H, T, D]))
        if tokens is not None:
            open(os.path.join(path, 'tokens.npy'), 'wb').write(npy_bytes(tokens, 'i4', [T]))
    elif form == 'safetensors':
        tensors = []
        for l in range(L):
            tensors.append(('layers.%d.key' % l, dtype, [H, T, D], flat(k[l])))
            tensors.append(('layers.%d.value' % l, dtype, [H, T, D], flat(v[l])))
        if tokens is not None:
            tensors.append(('tokens', 'i4', [T], tokens))
        open(path, 'wb').write(safetensors_bytes(tensors, meta))
    else:
        fail("bad form " + form)


def split(values, L, H, T, D):
    per = H * T * D
    return [values[l * per:(l + 1) * per] for l in range(L)]


def load_cache(path):
    """Returns dict with K, V (lists of per-layer flat float lists), shape [L,H,T,D], tokens or None."""
    if os.path.isdir(path):
        k, v, shape = [], [], None
        l = 0
        while os.path.exists(os.path.join(path, 'layers.%d.key.npy' % l)):
            _, s, kv = read_npy(os.path.join(path, 'layers.%d.key.npy' % l))
            _, _, vv = read_npy(os.path.join(path, 'layers.%d.value.npy' % l))
            k.append(kv)
            v.append(vv)
            shape = s
            l += 1
        tp = os.path.join(path, 'tokens.npy')
        tokens = read_npy(tp)[2] if os.path.exists(tp) else None
        return {'K': k, 'V': v, 'shape': [l] + shape, 'tokens': tokens, 'meta': {}}
    if path.endswith('.k.npy'):
        path = path[:-len('.k.npy')]
    elif path.endswith('.safetensors') or (os.path.exists(path) and open(path, 'rb').read(6) != b'\x93NUMPY'):
        tensors, meta = read_safetensors(path)
        names = sorted((n for n in tensors if n.startswith('layers.')), key=lambda n: (int(n.split('.')[1]), n))
        layers = sorted({int(n.split('.')[1]) for n in names})
        k = [tensors['layers.%d.key' % l][2] for l in layers]
        v = [tensors['layers.%d.value' % l][2] for l in layers]
        shape = [len(layers)] + tensors['layers.%d.key' % layers[0]][1]
        tokens = tensors['tokens'][2] if 'tokens' in tensors else None
        return {'K': k, 'V': v, 'shape': shape, 'tokens': tokens, 'meta': meta, 'layer_ids': layers}
    if os.path.exists(path):
        _, shape, values = read_npy(path)
        if len(shape) != 5 or shape[0] != 2:
            fail(path + ": not a stacked cache")
        half = len(values) // 2
        L, H, T, D = shape[1:]
        return {'K': split(values[:half], L, H, T, D), 'V': split(values[half:], L, H, T, D), 'shape': shape[1:],
                'tokens': None, 'meta': {}}
    _, shape, kv = read_npy(path + '.k.npy')
    _, _, vv = read_npy(path + '.v.npy')
    tp = path + '.tokens.npy'
    tokens = read_npy(tp)[2] if os.path.exists(tp) else None
    L, H, T, D = shape
    return {'K': split(kv, L, H, T, D), 'V': split(vv, L, H, T, D), 'shape': shape, 'tokens': tokens, 'meta': {}}


def rel_l2(a, b):
    err = sum((y - x) ** 2 for x, y in zip(a, b))
    ref = sum(x * x for x in a)
    return math.sqrt(err / ref) if ref else (0.0 if err == 0 else float('inf'))


def main(argv):
    if len(argv) < 2:
        fail("usage: see the module docstring")
    cmd = argv[1]
    if cmd == 'make':
        form, path = argv[2], argv[3]
        L, H, T, D = (int(x) for x in argv[4:8])
        dtype, tokens, meta, seed, zeros = 'f2', None, {}, 1, False
        rest = argv[8:]
        i = 0
        while i < len(rest):
            if rest[i] == '--dtype':
                dtype = rest[i + 1]
                i += 2
            elif rest[i] == '--tokens':
                tokens = [1000 + 7 * t for t in range(T)]
                i += 1
            elif rest[i] == '--meta':
                key, value = rest[i + 1].split('=', 1)
                meta[key] = value
                i += 2
            elif rest[i] == '--seed':
                seed = int(rest[i + 1])
                i += 2
            elif rest[i] == '--zeros':
                zeros = True
                i += 1
            else:
                fail("unknown option " + rest[i])
        k, v = make_values(seed, L, H, T, D, zeros)
        write_cache(form, path, k, v, dtype, tokens, meta)
        return
    if cmd in ('same', 'close', 'relerr'):
        a, b = load_cache(argv[2]), load_cache(argv[3])
        if a['shape'] != b['shape']:
            fail("shapes differ: %s vs %s" % (a['shape'], b['shape']))
        ka, kb, va, vb = flat(a['K']), flat(b['K']), flat(a['V']), flat(b['V'])
        if cmd == 'same':
            for name, x, y in (('K', ka, kb), ('V', va, vb)):
                for i, (p, q) in enumerate(zip(x, y)):
                    if p != q:
                        fail("%s element %d differs: %r vs %r" % (name, i, p, q))
            return
        ek, ev = rel_l2(ka, kb), rel_l2(va, vb)
        if cmd == 'relerr':
            print("%.9g %.9g" % (ek, ev))
            return
        limit = float(argv[4])
        if not (ek < limit and ev < limit):
            fail("relative L2 K %.6f V %.6f not below %s" % (ek, ev, limit))
        return
    if cmd == 'slice':
        a, b = load_cache(argv[2]), load_cache(argv[3])
        layers = [int(x) for x in argv[4].split(',')]
        heads = [int(x) for x in argv[5].split(',')]
        L, H, T, D = a['shape']
        if b['shape'] != [len(layers), len(heads), T, D]:
            fail("slice shape %s, expected %s" % (b['shape'], [len(layers), len(heads), T, D]))
        per = T * D
        for name in ('K', 'V'):
            for i, l in enumerate(layers):
                want = []
                for h in heads:
                    want.extend(a[name][l][h * per:(h + 1) * per])
                if want != b[name][i]:
                    fail("%s of layer %d differs in the slice" % (name, l))
        return
    if cmd == 'tokens':
        a = load_cache(argv[2])
        n = int(argv[3])
        if a['tokens'] != [1000 + 7 * t for t in range(n)]:
            fail("token ids differ: %r" % (a['tokens'][:8] if a['tokens'] else None))
        return
    fail("unknown command " + cmd)


if __name__ == '__main__':
    main(sys.argv)
