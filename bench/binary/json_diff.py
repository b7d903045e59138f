#!/usr/bin/env python3
"""Differential JSON fuzzer for VectorWise search bodies: old binary vs new binary.

Sends each body, byte for byte, to both servers (sequentially, one request at a
time) and compares status code and response body.  Headers are not compared.

Usage:
  json_diff.py [--setup] [--old 9101] [--new 9102] [--seed 1] [--mutations 3000] [--numbers 1500]
               [--only curated|numbers|mutate|tree|all] [--no-filter-dups] [--headers]
               [--old-pid P --new-pid P] [--out diffs.jsonl]
  Every difference goes to --out (JSON lines: body, both statuses, both bodies, class);
  class KNOWN-filter-duplicate-key is the finding of the first review (see classify()).

Setup expected (identical on both servers):
  * /search over a 384-d cosine index
  * collection "c"   (dim 4, cosine) with 5 points with payloads
  * collection "tip" (dim 4, ip)     with the same points (id 1 = [1,0,0,0]):
    distance to id 1 is exactly -x[0] as f32, so number narrowing is visible.
  * collection "tl2" (dim 4, l2)
"""
import argparse
import http.client
import json
import os
import random
import socket
import sys
import time

# ----------------------------------------------------------------------------
# HTTP


class Conn:
    def __init__(self, port, timeout=20.0):
        self.port = port
        self.timeout = timeout
        self.c = None
        self.last_headers = []

    def close(self):
        if self.c is not None:
            try:
                self.c.close()
            except Exception:
                pass
        self.c = None

    def raw_req(self, method, path, body, headers):
        """Fresh connection; if the server stops reading (413), still read its answer."""
        t0 = time.monotonic()
        sock = socket.create_connection(('127.0.0.1', self.port), timeout=self.timeout)
        try:
            head = f'{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n'
            head += ''.join(f'{k}: {v}\r\n' for k, v in headers) + f'Content-Length: {len(body)}\r\n\r\n'
            try:
                sock.sendall(head.encode('latin-1') + body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                r = http.client.HTTPResponse(sock)
                r.begin()
                data = r.read()
                self.last_headers = sorted((k.lower(), v) for k, v in r.getheaders() if k.lower() not in ('date', 'connection'))
                return r.status, data, time.monotonic() - t0
            except socket.timeout as e:
                return 'TIMEOUT', repr(e).encode(), time.monotonic() - t0
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                return 'EXC', repr(e).encode(), time.monotonic() - t0
        finally:
            sock.close()

    def req(self, method, path, body, headers):
        if len(body) > 1_000_000:
            return self.raw_req(method, path, body, headers)
        last = None
        for _ in range(2):
            t0 = time.monotonic()
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection('127.0.0.1', self.port, timeout=self.timeout)
                self.c.putrequest(method, path, skip_accept_encoding=True)
                for k, v in headers:
                    self.c.putheader(k, v)
                self.c.putheader('Content-Length', str(len(body)))
                self.c.endheaders(body)
                r = self.c.getresponse()
                data = r.read()
                self.last_headers = sorted((k.lower(), v) for k, v in r.getheaders() if k.lower() != 'date')
                if (r.getheader('connection') or '').lower() == 'close':
                    self.close()
                return r.status, data, time.monotonic() - t0
            except socket.timeout as e:
                self.close()
                return 'TIMEOUT', repr(e).encode(), time.monotonic() - t0
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                self.close()
                last = e
        return 'EXC', repr(last).encode(), 0.0


NONDET_KEYS = set()  # filled if a nondeterministic field is ever seen


def normalise(body):
    """Bodies are compared byte for byte; only strip fields known to vary."""
    if not NONDET_KEYS:
        return body
    try:
        v = json.loads(body)
    except Exception:
        return body

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in NONDET_KEYS}
        if isinstance(x, list):
            return [strip(i) for i in x]
        return x
    return json.dumps(strip(v), sort_keys=False).encode()


def classify(route, body, so, bo, sn, bn):
    """Known finding: the old server rejects a duplicate key inside the collection "filter"
    object (422 json_invalid "duplicate key"), the new one does not notice it."""
    if route in ('csearch', 'cbatch', 'tip', 'tipbatch', 'tl2') and so == 422 and b'"duplicate key `' in bo \
            and b'duplicate key' not in bn:
        try:
            tree = json.loads(body, object_pairs_hook=lambda ps: ps)
            flt = [v for k, v in tree if k == 'filter']
            def has_dup(x):
                if isinstance(x, list) and x and all(isinstance(p, tuple) for p in x):
                    ks = [k for k, _ in x]
                    return len(ks) != len(set(ks)) or any(has_dup(v) for _, v in x)
                if isinstance(x, list):
                    return any(has_dup(i) for i in x)
                return False
            if flt and has_dup(flt[0]):
                return 'KNOWN-filter-duplicate-key'
        except Exception:
            pass
    return 'OTHER'


# ----------------------------------------------------------------------------
# Raw JSON construction: lets us write duplicate keys, escaped keys, raw tokens


class Raw:
    def __init__(self, s):
        self.s = s


class Obj:
    def __init__(self, pairs):
        self.pairs = pairs  # list of (key, value); key is str or Raw


def ser(x, ws=''):
    if isinstance(x, Raw):
        return x.s
    if isinstance(x, Obj):
        return '{' + ws + (',' + ws).join(ser(k, ws) + ws + ':' + ws + ser(v, ws) for k, v in x.pairs) + ws + '}'
    if isinstance(x, dict):
        return ser(Obj(list(x.items())), ws)
    if isinstance(x, (list, tuple)):
        return '[' + ws + (',' + ws).join(ser(i, ws) for i in x) + ws + ']'
    if isinstance(x, bool) or x is None:
        return json.dumps(x)
    if isinstance(x, str):
        return json.dumps(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return repr(x)
    raise TypeError(type(x))


def esc_all(s):
    return '"' + ''.join('\\u%04x' % ord(c) for c in s) + '"'


def esc_one(s, i):
    return '"' + s[:i] + '\\u%04x' % ord(s[i]) + s[i + 1:] + '"'


# ----------------------------------------------------------------------------
# Token corpora

NUMS = [
    '0', '-0', '0.0', '-0.0', '0e0', '-0e0', '0E+5', '-0.0e-0', '1', '-1', '1.5', '-1.5', '1e0', '1E0', '1e+0', '1e-0',
    '1e2', '1E+2', '1e-2', '1.0e2', '100', '3', '3.0', '3.00000000000000000001', '2.9999999999999999', '3e0', '0.3e1',
    '30e-1', '255', '256', '65535', '65536', '4294967295', '4294967296', '9007199254740993',
    '9223372036854775807', '9223372036854775808', '-9223372036854775808', '-9223372036854775809',
    '18446744073709551615', '18446744073709551616', '-18446744073709551616',
    '123456789012345678901234567890', '-123456789012345678901234567890',
    '1' + '0' * 400, '1' + '0' * 309, '1' + '0' * 38, '34028235' + '0' * 31, '34028236' + '0' * 31,
    '1e38', '1e39', '-1e39', '3.4028235e38', '-3.4028235e38', '3.4028236e38', '3.40282357e38', '3.402823466e38',
    '3.4028235677973366e38', '3.4028235677973362e38', '3.402823669209385e38', '3.4028236692093846e38',
    '3.4028236692093847e38', '1.7976931348623157e308', '-1.7976931348623157e308', '1.8e308', '-1.8e308', '1e308', '1e309',
    '1e400', '-1e400', '1e-400', '-1e-400', '2e-324', '5e-324', '4.9e-324', '2.4703282292062327e-324', '2.4703282292062328e-324',
    '1e-45', '-1e-45', '1e-46', '-1e-46', '7e-46', '7.006492321624085e-46', '7.006492321624086e-46', '1.401298464324817e-45',
    '1.1754943508222875e-38', '1.1754942e-38', '1e-38', '1e-39',
    '0.1', '0.30000000000000004', '3.141592653589793238462643383279502884197169399375105820974944592307816406286',
    '1.00000005960464477539062500001', '1.000000059604644775390625', '1.0000000596046447753906249999',
    '0.' + '0' * 500 + '1', '0.' + '1' * 800, '1' * 500 + '.5', '1.' + '0' * 1000 + '1',
    '1e00000000000000000000000000000001', '1e-00000000000000000000000000000001', '1e18446744073709551616',
    '1e-18446744073709551616', '0e18446744073709551616', '0.0000000000000000000000000000000000000000000001e46',
    '123e-2', '1.5E-3', '5e-1', '-5e-1',
    '1e17', '99999999999999999', '100000000000000000', '9.9999999e16', '1.0000000000000001e17', '7.0710678118654752e16',
    '7.0710678e16', '7.0710679e16', '70710678118654752', '70710680000000000', '18014399583223809', '18014398509481985',
]
BAD_NUMS = ['00', '01', '-01', '007', '1.', '-', '.5', '+1', '1e', '1e+', '1E-', '--1', '- 1', '1..2', '1.2.3', 'NaN',
            'nan', 'Infinity', '-Infinity', 'inf', '0x10', '1_000', '1,5', '0b1', '1f', '1d', '١', '１', '1e1.5',
            '.', 'e5', '-e5', '0-', '1-1', '-0.', '0.e1', '1.e1', '01.5', '-00', '00.0', '0.0.0']
OTHERS = ['"1"', '"abc"', '""', 'true', 'false', 'null', '[]', '[1]', '[[1]]', '{}', '{"a":1}', '"\\u0000"', '"1e39"',
          '"NaN"', '"inf"', '"-0"', '" 1"', '"0x1"', '[null]', '{"value":1}', '"\\ud800"', '"\\udc00"', '"\\ud83d\\ude00"',
          '"\u00e9"', '"\\/"', '[1,2,3,4]']
BAD_TOK = ['tru', 'nul', 'True', 'None', 'undefined', "'a'", '"a', '[1,]', '[,1]', '{"a":}', '{,}', '"\x01"', '"\t"',
           '"\\x41"', '"\\u12"', '"\\uZZZZ"', '"\\a"', '[', ']', '{', '}', '', ',', ':', '"a":1', '/*c*/1', '1//c']

VEC_TOKENS = NUMS + BAD_NUMS + OTHERS + BAD_TOK

ROUTES = {
    # name: (path, field, dim, batch, search-extra-fields)
    'search': ('/search', 'query_vector', 384, False),
    'batch': ('/search/batch', 'query_vectors', 384, True),
    'csearch': ('/collections/c/search', 'vector', 4, False),
    'cbatch': ('/collections/c/search/batch', 'vectors', 4, True),
    'tip': ('/collections/tip/search', 'vector', 4, False),
    'tipbatch': ('/collections/tip/search/batch', 'vectors', 4, True),
    'tl2': ('/collections/tl2/search', 'vector', 4, False),
}
ROUTE_GROUP = {'search': 'search', 'batch': 'batch', 'csearch': 'csearch', 'tip': 'csearch', 'tl2': 'csearch',
               'cbatch': 'cbatch', 'tipbatch': 'cbatch'}

JSON_CT = [('Content-Type', 'application/json')]

FILTERS = [
    '{"must":[{"key":"tag","match":{"value":"a"}}]}',
    '{"must":[{"key":"price","range":{"gte":3,"lt":6}}]}',
    '{"should":[{"key":"tag","match":{"any":["a","c"]}}]}',
    '{"must_not":[{"key":"tag","match":{"value":"a"}}]}',
    '{"must":[{"has_id":[1,2]}]}',
    '{"must":[{"is_empty":{"key":"tags"}}]}',
    '{"must":[{"key":"tags","match":{"value":"x"}}]}',
    '{"must":[{"key":"n.x","match":{"value":1}}]}',
    '{"must":[{"must":[{"key":"tag","match":{"value":"a"}}]}]}',
    '{"must":[{"should":[{"has_id":[3]},{"key":"price","range":{"gt":4}}]}]}',
    '{}', 'null', '[]', '1', '"a"', 'true',
    '{"must":null}', '{"must":[]}', '{"should":[]}', '{"must":{}}', '{"must":[null]}', '{"must":[{}]}',
    '{"must":[{"key":"tag"}]}', '{"must":[{"match":{"value":"a"}}]}', '{"must":[{"key":1,"match":{"value":"a"}}]}',
    '{"must":[{"key":"tag","match":{"value":null}}]}', '{"must":[{"key":"tag","match":{"value":[1]}}]}',
    '{"must":[{"key":"tag","match":{"value":1.5}}]}', '{"must":[{"key":"price","match":{"value":3.0}}]}',
    '{"must":[{"key":"price","match":{"value":3}}]}', '{"must":[{"key":"price","match":{"value":-0}}]}',
    '{"must":[{"key":"price","match":{"value":18446744073709551616}}]}',
    '{"must":[{"key":"price","match":{"any":[]}}]}', '{"must":[{"key":"price","match":{"any":[3,"a",true]}}]}',
    '{"must":[{"key":"price","match":{"any":[3,5.0]}}]}', '{"must":[{"key":"price","match":{"value":3,"any":[3]}}]}',
    '{"must":[{"key":"price","match":{"value":true}}]}', '{"must":[{"key":"tag","match":{"except":["a"]}}]}',
    '{"must":[{"key":"price","range":{}}]}', '{"must":[{"key":"price","range":{"gt":"3"}}]}',
    '{"must":[{"key":"price","range":{"gt":1e39}}]}', '{"must":[{"key":"price","range":{"gt":1e400}}]}',
    '{"must":[{"key":"price","range":{"gt":-1e308,"lte":1.7976931348623157e308}}]}',
    '{"must":[{"key":"price","range":{"gt":null}}]}', '{"must":[{"key":"price","range":{"gt":3,"gt":4}}]}',
    '{"must":[{"key":"price","range":{"gt":3,"lt":1}}]}', '{"must":[{"key":"price","range":{"gte":NaN}}]}',
    '{"must":[{"has_id":[]}]}', '{"must":[{"has_id":[-1]}]}', '{"must":[{"has_id":[1.5]}]}',
    '{"must":[{"has_id":["1"]}]}', '{"must":[{"has_id":[18446744073709551615]}]}',
    '{"must":[{"has_id":[18446744073709551616]}]}', '{"must":[{"has_id":1}]}', '{"must":[{"has_id":[1e0]}]}',
    '{"must":[{"is_empty":{"key":"tags"},"has_id":[1]}]}', '{"must":[{"is_null":{"key":"tag"}}]}',
    '{"must":[{"key":"","match":{"value":"a"}}]}', '{"must":[{"key":"tag","match":{"value":"a"},"extra":1}]}',
    '{"must":[{"key":"t\\u0061g","match":{"value":"\\u0061"}}]}', '{"m\\u0075st":[{"key":"tag","match":{"value":"a"}}]}',
    '{"must":[],"must":[]}', '{"must":[],"m\\u0075st":[]}', '{"bogus":1}', '{"min_should":{"conditions":[],"min_count":1}}',
    '{"must":[{"key":"tag","match":{"value":"\\ud800"}}]}', '{"must":[{"key":"tag","match":{"value":"a"}}],"should":[{"has_id":[2]}],"must_not":[{"has_id":[3]}]}',
    '{"must":[{"key":"tag","match":{"text":"a"}}]}', '{"must":[{"key":"price","values_count":{"gte":1}}]}',
    '{"must":[{"key":"price","geo_radius":{}}]}', '{"must":[{"nested":{"key":"n","filter":{}}}]}',
    '{"must":' + '[{"must":' * 40 + '[]' + '}]' * 40 + '}',
    '{"must":' + '[{"must":' * 70 + '[]' + '}]' * 70 + '}',
]


def rnd_vec(rng, dim, kind='short'):
    if kind == 'short':
        return [Raw(str(rng.randint(-9, 9) or 1)) for _ in range(dim)]
    return [Raw(repr(round(rng.uniform(-1, 1), 4))) for _ in range(dim)]


def base_pairs(route, rng, vec=None, k=3):
    path, field, dim, batch = ROUTES[route]
    if vec is None:
        if batch:
            vec = [rnd_vec(rng, dim, 'float') for _ in range(2)]
        else:
            vec = rnd_vec(rng, dim, 'float')
    pairs = [(field, vec)]
    if k is not None:
        pairs.append(('k', Raw(str(k)) if not isinstance(k, Raw) else k))
    return pairs


# ----------------------------------------------------------------------------
# Curated cases: yield (route, body_bytes, headers, label)


def curated(rng):
    out = []

    def add(route, body, label, headers=JSON_CT):
        if isinstance(body, str):
            body = body.encode('utf-8', 'surrogatepass')
        out.append((route, body, headers, label))

    for route in ROUTES:
        path, field, dim, batch = ROUTES[route]
        V = rnd_vec(rng, dim, 'float')

        def wrap_vec(v):  # value for the vector field
            return [v, rnd_vec(rng, dim, 'float')] if batch else v

        def body(pairs, ws=''):
            return ser(Obj(pairs), ws)

        # valid baseline
        add(route, body([(field, wrap_vec(V)), ('k', Raw('3'))]), 'baseline')
        # 1. tokens in a vector element (first, last, middle)
        for tok in VEC_TOKENS:
            for pos in ([0, dim - 1] if dim > 4 else [0, 2]):
                v = list(V)
                v[pos] = Raw(tok)
                add(route, body([(field, wrap_vec(v)), ('k', Raw('3'))]), f'vec[{pos}]={tok[:40]}')
            if dim == 4:
                add(route, body([(field, wrap_vec([Raw(tok)] * 4)), ('k', Raw('3'))]), f'vec all={tok[:40]}')
                add(route, body([(field, wrap_vec([Raw(tok), Raw('1e39'), Raw('"x"'), Raw('-0')])), ('k', Raw('3'))]), f'vec mixed={tok[:40]}')
        # 2. whole vector replaced
        wholes = ['[]', '[[]]', 'null', '"abc"', '1', '{}', 'true', '[[1,2,3,4]]', '[' + ','.join(['0'] * dim) + ']',
                  '[' + ','.join(['1'] * (dim - 1)) + ']', '[' + ','.join(['1'] * (dim + 1)) + ']',
                  '[' + ','.join(['1'] * (2 * dim)) + ']', '[1]', '[' + ','.join(['-0'] * dim) + ']',
                  '[' + ','.join(['1e-46'] * dim) + ']', '[' + ','.join(['1e-45'] * dim) + ']',
                  '[' + ','.join(['1e18'] * dim) + ']', '[' + ','.join(['1e17'] * dim) + ']',
                  '[' + ','.join(['5e16'] * dim) + ']', '[' + ','.join(['1e-20'] * dim) + ']',
                  '[' + ','.join(['1e-30'] * dim) + ']', '[' + ','.join(['3.4028235e38'] * dim) + ']',
                  '[' + ','.join(['"1"'] * dim) + ']', '[' + ','.join(['null'] * dim) + ']',
                  '[' + ','.join(['[1]'] * dim) + ']', '[' + ','.join(['1'] * (dim - 1) + ['"x"']) + ']',
                  '[' + ','.join(['"x"'] * (dim + 1)) + ']', '[' + ','.join(['1e39'] * (dim - 1)) + ']',
                  '{"0":1}', '[1,2,3,4', ]
        for w in wholes:
            if batch:
                for b in [w, '[' + w + ']', '[' + w + ',' + ser(V) + ']', '[' + ser(V) + ',' + w + ']']:
                    add(route, body([(field, Raw(b)), ('k', Raw('3'))]), f'batch whole={b[:60]}')
            else:
                add(route, body([(field, Raw(w)), ('k', Raw('3'))]), f'whole={w[:60]}')
        # 3. k
        KS = NUMS + BAD_NUMS + OTHERS + ['100', '101', '1e2', '100.0', '100.5', '1.01e2', '99.99999999999999999', '1e20',
                                         '0', '-1', '2', '3.5', '0.5', '"3"', '"three"', '1e-400', '-1e-400']
        for kt in KS:
            add(route, body([(field, wrap_vec(V)), ('k', Raw(kt))]), f'k={kt[:40]}')
        add(route, body([(field, wrap_vec(V))]), 'k absent')
        add(route, body([('k', Raw('3'))]), 'vector absent')
        add(route, '{}', 'empty object')
        # 4. optional fields
        OPT = {
            'profile': ['"balanced"', '"low_latency"', '"high_accuracy"', '"Balanced"', '"fast"', '""', 'null', '1', '["balanced"]',
                        '"bal\\u0061nced"', '"balanced "', '{"balanced":1}', 'true'],
            'recall_target': ['0.9', '0.95', '0.99', '1', '1.0', '0', '0.0', '-0', '1.5', '-0.1', '"0.9"', 'null', '1e-400', '1e39',
                              '0.999999999999999999999', '0.5', '0.1', '2', '1e400', 'true', '[0.9]', '0.90000000000000002'],
            'ef_search': ['1', '10', '64', '0', '-1', '1e6', '100000000', '4294967296', '18446744073709551616', '1.5', '64.0', '"64"',
                          'null', 'true', '[64]', '-0', '1e2'],
        }
        if not batch or True:
            for name, vals in OPT.items():
                for val in vals:
                    add(route, body([(field, wrap_vec(V)), ('k', Raw('10')), (name, Raw(val))]), f'{name}={val[:40]}')
            add(route, body([(field, wrap_vec(V)), ('k', Raw('10')), ('profile', Raw('"balanced"')), ('recall_target', Raw('0.9'))]), 'profile+recall')
            add(route, body([(field, wrap_vec(V)), ('k', Raw('10')), ('profile', Raw('"balanced"')), ('ef_search', Raw('64'))]), 'profile+ef')
            add(route, body([(field, wrap_vec(V)), ('k', Raw('10')), ('recall_target', Raw('0.9')), ('ef_search', Raw('64'))]), 'recall+ef')
            add(route, body([(field, wrap_vec(V)), ('k', Raw('10')), ('profile', Raw('null')), ('recall_target', Raw('null')), ('ef_search', Raw('null'))]), 'all opt null')
            add(route, body([(field, wrap_vec(V)), ('k', Raw('10')), ('profile', Raw('"x"')), ('recall_target', Raw('"y"')), ('ef_search', Raw('"z"'))]), 'all opt bad')
        if route in ('csearch', 'cbatch', 'tip', 'tl2', 'tipbatch'):
            for name in ['with_payload', 'with_vector']:
                for val in ['true', 'false', 'null', '1', '0', '"true"', '["tag"]', '{}', '[]', '{"include":["tag"]}']:
                    add(route, body([(field, wrap_vec(V)), ('k', Raw('5')), (name, Raw(val))]), f'{name}={val}')
            for f in FILTERS:
                add(route, body([(field, wrap_vec(V)), ('k', Raw('5')), ('with_payload', Raw('true')), ('filter', Raw(f))]), f'filter={f[:80]}')
                add(route, body([(field, wrap_vec(V)), ('k', Raw('5')), ('filter', Raw(f)), ('k', Raw('5'))]), f'filter+dupk={f[:60]}')
                add(route, body([(field, wrap_vec([Raw('"x"')] + V[1:])), ('k', Raw('"a"')), ('filter', Raw(f))]), f'filter+errors={f[:60]}')
        # 5. keys: duplicates, escapes, unknown
        kdups = [
            [(field, wrap_vec(V)), (field, wrap_vec(V)), ('k', Raw('3'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('k', Raw('3'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('k', Raw('4'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('k', Raw('"x"'))],
            [(field, wrap_vec(V)), ('k', Raw('"x"')), ('k', Raw('3'))],
            [(field, Raw('"x"')), ('k', Raw('3')), (field, wrap_vec(V))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (field, Raw('null'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('1')), ('foo', Raw('2'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('profile', Raw('"balanced"')), ('profile', Raw('"balanced"'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('ef_search', Raw('1')), ('ef_search', Raw('2'))],
            [(Raw(esc_one(field, 5 if len(field) > 5 else 0)), wrap_vec(V)), ('k', Raw('3'))],
            [(Raw(esc_all(field)), wrap_vec(V)), ('k', Raw('3'))],
            [(field, wrap_vec(V)), (Raw('"\\u006b"'), Raw('3'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (Raw('"\\u006b"'), Raw('4'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (Raw('"\\u006b"'), Raw('3'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (Raw(esc_one(field, 0)), wrap_vec(V))],
            [(Raw(esc_one(field, 1)), wrap_vec(V)), ('k', Raw('3')), (field, wrap_vec(V))],
            [(Raw(esc_one(field, 1)), Raw('"bad"')), ('k', Raw('3'))],
            [(Raw(esc_one(field, 1)), wrap_vec([Raw('1e39')] + V[1:])), ('k', Raw('3'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (Raw('"pro\\u0066ile"'), Raw('"balanced"'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (Raw('"pro\\u0066ile"'), Raw('"nope"'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('profile', Raw('"balanced"')), (Raw('"pro\\u0066ile"'), Raw('"balanced"'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (Raw('"ef\\u005fsearch"'), Raw('32'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (Raw('"recall\\u005ftarget"'), Raw('0.9'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (Raw('"recall\\u005ftarget"'), Raw('0.9')), ('recall_target', Raw('0.9'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (Raw('"\\/k"'), Raw('3'))],
            [(field, wrap_vec(V)), (Raw('"k\\u0000"'), Raw('3'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), (Raw('"k\\u0000"'), Raw('3'))],
            [(field, wrap_vec(V)), ('K', Raw('3'))],
            [(field.upper(), wrap_vec(V)), ('k', Raw('3'))],
            [(field + ' ', wrap_vec(V)), ('k', Raw('3'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('', Raw('1'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('', Raw('1')), ('', Raw('2'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('1'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('null'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('1e400'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('18446744073709551616'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('-0'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('1e39'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('"\\ud800"'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('[1,{"a":[null,true]},"x"]'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('1')), ('bar', Raw('2')), ('baz', Raw('3'))],
            [('foo', Raw('1')), (field, wrap_vec(V)), ('k', Raw('3'))],
            [('k', Raw('3')), (field, wrap_vec(V))],
            [('k', Raw('"x"')), (field, Raw('"y"')), ('foo', Raw('1'))],
            [('foo', Raw('1')), ('k', Raw('"x"')), (field, wrap_vec([Raw('"s"')] + V[1:]))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('query_vector' if field != 'query_vector' else 'vector', wrap_vec(V))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('query_vectors', Raw('[]')), ('vectors', Raw('[]')), ('vector', Raw('[]'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('with_payload', Raw('true'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('filter', Raw('null'))],
            [(field, wrap_vec(V)), ('k', Raw('3')), ('filter', Raw('{"must":[]}'))],
        ]
        for i, pairs in enumerate(kdups):
            add(route, body(pairs), f'keys#{i}')
        # 6. deep nesting in unknown fields and in the vector
        for d in [10, 64, 100, 125, 126, 127, 128, 129, 130, 200, 1000, 5000, 50000]:
            add(route, body([(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('[' * d + ']' * d))]), f'deep arr {d}')
            add(route, body([(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('{"a":' * d + '1' + '}' * d))]), f'deep obj {d}')
            add(route, body([('foo', Raw('[' * d + ']' * d)), (field, wrap_vec(V)), ('k', Raw('3'))]), f'deep arr first {d}')
            add(route, body([(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('[' * d))]), f'deep arr unclosed {d}')
            add(route, body([(field, Raw('[' * d + ']' * d)), ('k', Raw('3'))]), f'deep vec {d}')
            add(route, body([(field, wrap_vec(V)), ('k', Raw('[' * d + ']' * d))]), f'deep k {d}')
            if route in ('csearch', 'cbatch'):
                add(route, body([(field, wrap_vec(V)), ('k', Raw('3')), ('filter', Raw('{"must":' + '[{"must":' * d + '[]' + '}]' * d + '}'))]), f'deep filter {d}')
                add(route, body([(field, wrap_vec(V)), ('k', Raw('3')), ('filter', Raw('{"must":[{"key":"tag","match":{"value":' + '[' * d + ']' * d + '}}]}'))]), f'deep match {d}')
        # 7. whitespace, BOM, trailing garbage
        good = body([(field, wrap_vec(V)), ('k', Raw('3'))])
        bad = body([(field, wrap_vec([Raw('"x"')] + V[1:])), ('k', Raw('0'))])
        for b, nm in [(good, 'good'), (bad, 'bad')]:
            for pre, post in [(' ', ''), ('', ' '), ('\n\t\r ', '\n\t\r '), ('\ufeff', ''), ('\ufeff\ufeff', ''), (' \ufeff', ''),
                              ('\u00a0', ''), ('', '\u00a0'), ('\x00', ''), ('', '\x00'), ('', 'x'), ('', '}'), ('', '{}'), ('', ','),
                              ('', ' // c'), ('', '/*c*/'), ('', '\x0c'), ('\x0c', ''), ('\x0b', ''), ('', ' 1'), ('', '[]'),
                              ('', '\ufeff'), ('', '\n\n'), ('', '\r\n'), ('', ' ' * 10000)]:
                add(route, pre + b + post, f'{nm} pre={pre[:5]!r} post={post[:5]!r}')
            add(route, b.encode('utf-16'), f'{nm} utf-16')
            add(route, b.encode('utf-16-le'), f'{nm} utf-16-le')
            add(route, b'\xef\xbb\xbf' + b.encode(), f'{nm} utf8 bom bytes')
            add(route, ser(Obj([(field, wrap_vec(V)), ('k', Raw('3'))]), ws=' \n\t'), f'{nm} ws everywhere')
        # 8. non-object bodies
        for b in ['', ' ', '[]', '[1]', '"s"', '1', 'null', 'true', '{', '}', '{}', '{"a"}', '{"a":1', '{"a":1,}', '{,}', '[{}]',
                  '[' + good + ']', good + good, '\x00', '\xff', '{"' + field + '"}', '{"' + field + '":}', '{' + field + ':[]}',
                  "{'k':3}", '{"k":3 "x":1}', '{"k":3,,"x":1}', '{"k":3}:', '{"k" 3}', '{1:2}', '{null:1}', '{"k":3}}', '{{}}']:
            add(route, b, f'nonobj {b[:40]!r}')
        # 9. Content-Type variations
        for b, nm in [(good, 'good'), (bad, 'bad'), ('{', 'broken'), ('[]', 'array')]:
            for hs in [[], [('Content-Type', 'text/plain')], [('Content-Type', 'application/json; charset=utf-8')],
                       [('Content-Type', 'APPLICATION/JSON')], [('Content-Type', 'application/json;charset=latin-1')],
                       [('Content-Type', 'application/x-www-form-urlencoded')], [('Content-Type', 'application/vnd.api+json')],
                       [('Content-Type', 'application/jsonx')], [('Content-Type', 'application/json ')],
                       [('Content-Type', '')], [('Content-Type', 'multipart/form-data; boundary=x')],
                       [('Content-Type', 'application/json'), ('Content-Type', 'text/plain')],
                       [('Content-Type', 'application/json; charset="utf-8"')], [('Content-Type', 'application/problem+json')],
                       [('Content-Type', 'application/json'), ('Content-Encoding', 'gzip')],
                       [('Content-Type', 'application/octet-stream')], [('Content-Type', 'application/x-npy')]]:
                add(route, b, f'{nm} ct={hs}', headers=hs)
        # 10. invalid UTF-8 / control chars / surrogates
        for raw in [b'\xff', b'\xc0\x80', b'\xed\xa0\x80', b'\xe2\x82', b'\xf4\x90\x80\x80', b'\x80', b'\x01', b'\x1f', b'\x7f',
                    b'\\ud800', b'\\udfff', b'\\ud800\\u0041', b'\\ud83d\\ude00', b'\\u0000', b'\xf0\x9f\x98\x80', b'\\uD800\\uDC00']:
            for tmpl in [b'{"F":V,"k":3,"profile":"X"}', b'{"F":V,"k":3,"X":1}', b'{"F":V,"k":3,"foo":"X"}',
                         b'{"F":V,"k":"X"}', b'{"X":1,"F":V,"k":3}', b'{"F":V,"k":3,"foo":["X"]}', b'{"F":V,"k":3,"foo":{"X":1}}']:
                vv = ser(wrap_vec(V)).encode()
                if ROUTES[route][3]:
                    vv = ser(wrap_vec(V)).encode()
                bb = tmpl.replace(b'F', field.encode()).replace(b'V', vv).replace(b'X', raw)
                add(route, bb, f'utf8 {raw!r} in {tmpl[:30]!r}')
            v = list(V)
            v[1] = Raw('"' + raw.decode('latin-1') + '"')
            add(route, (ser(Obj([(field, wrap_vec(v)), ('k', Raw('3'))]))).encode('latin-1'), f'utf8 {raw!r} in vec elem')
        # 11. sizes near the body limit
        LIM = 4194304
        for target in ([] if route in ('tip', 'tl2', 'tipbatch') else  [LIM - 1, LIM, LIM + 1, LIM + 100, 2 * LIM]):
            pad = target - len(good.encode())
            add(route, good + ' ' * pad, f'pad ws to {target}')
            s = body([(field, wrap_vec(V)), ('k', Raw('3')), ('foo', Raw('""'))])
            pad2 = target - len(s.encode())
            add(route, s[:-3] + '"' + 'a' * pad2 + '"}', f'pad str to {target}')
        # long numbers in the vector, near the limit
        digits = (LIM - 200 - 40 * dim) // dim
        if digits > 10 and route not in ('tip', 'tl2', 'tipbatch'):
            v = [Raw('0.' + '1' * digits) for _ in range(dim)]
            add(route, body([(field, v if not batch else [v]), ('k', Raw('3'))]), f'long digits {digits}')
        if batch:
            row = ser(V)
            for n in [0, 1, 2, 1023, 1024, 1025, 2048]:
                add(route, body([(field, Raw('[' + ','.join([row] * n) + ']')), ('k', Raw('3'))]), f'batch rows {n}')
            add(route, body([(field, Raw('[' + ','.join([row] * 1025) + ',"x"]')), ('k', Raw('3'))]), 'batch 1026 w/ bad last')
            add(route, body([(field, Raw('[' + ','.join(['"x"'] + [row] * 1025) + ']')), ('k', Raw('3'))]), 'batch 1026 w/ bad first')
            add(route, body([(field, Raw('[' + ','.join([ser(V[:-1])] * 1025) + ']')), ('k', Raw('3'))]), 'batch 1025 ragged')
            for rows in [[V, V[:-1]], [V[:-1], V], [V, []], [[], V], [[], []], [V, V + V], [V, Raw('null')], [V, Raw('"x"')],
                         [V, [Raw('"x"')] + V[1:]], [[Raw('"x"')] + V[1:], [Raw('1e39')] + V[1:]], [V[:-1], [Raw('"x"')] + V[1:]],
                         [[Raw('"x"')] + V[1:], V[:-1]], [V, [Raw('0')] * dim], [[Raw('0')] * dim, V[:-1]],
                         [[Raw('1e39')] * dim, V[:-1]], [V, Raw('[[1]]')], [V[:1]], [Raw('{}')], [V, Raw('{"0":1}')]]:
                add(route, body([(field, rows), ('k', Raw('3'))]), f'batch rows {ser(rows)[:60]}')
                add(route, body([(field, rows), ('k', Raw('"x"')), ('foo', Raw('1'))]), f'batch rows+err {ser(rows)[:60]}')
    return out


# ----------------------------------------------------------------------------
# Number narrowing: random decimal forms on the ip collection (distance = -x)


def rnd_number(rng):
    sign = rng.choice(['', '', '-'])
    r = rng.random()
    if r < 0.3:
        mant = str(rng.randint(0, 10 ** rng.randint(1, 30)))
        frac = ''
    else:
        mant = str(rng.randint(0, 10 ** rng.randint(1, 20)))
        frac = '.' + ''.join(rng.choice('0123456789') for _ in range(rng.randint(1, 40)))
    exp = ''
    if rng.random() < 0.6:
        exp = rng.choice(['e', 'E']) + rng.choice(['', '+', '-']) + str(rng.randint(0, 60) if rng.random() < 0.8 else rng.randint(0, 400))
    return sign + mant + frac + exp


def f32_boundary_numbers(rng):
    import struct
    out = []
    for _ in range(200):
        # midpoints between adjacent f32 values, and values just around them
        bits = rng.randint(0x00000001, 0x7f7fffff)
        a = struct.unpack('<f', struct.pack('<I', bits))[0]
        b = struct.unpack('<f', struct.pack('<I', bits + 1))[0]
        from decimal import Decimal, getcontext
        getcontext().prec = 80
        mid = (Decimal(a) + Decimal(b)) / 2
        out.append(format(mid, 'f') if abs(mid) > Decimal('1e-5') and abs(mid) < Decimal('1e20') else format(mid, 'e'))
        out.append(format(mid + mid * Decimal('1e-30'), 'e'))
        out.append(format(mid - mid * Decimal('1e-30'), 'e'))
        out.append(repr(float(mid)))
    # u64 double rounding: 2^e + 2^(e-24) + 1
    for e in range(53, 64):
        out.append(str(2 ** e + 2 ** (e - 24) + 1))
        out.append(str(2 ** e + 2 ** (e - 24) - 1))
        out.append(str(2 ** e + 2 ** (e - 24)))
        out.append(str(-(2 ** e + 2 ** (e - 24) + 1)))
    return out


def number_cases(rng, n):
    out = []
    toks = NUMS + f32_boundary_numbers(rng) + [rnd_number(rng) for _ in range(n)]
    for t in toks:
        # ip: distance to id 1 ([1,0,0,0]) is -x0; keep the vector small enough for the 1e34 norm limit
        out.append(('tip', ('{"vector":[%s,0,0,0],"k":5}' % t).encode(), JSON_CT, f'num {t[:60]}'))
        out.append(('tip', ('{"vector":[1,%s,0.5,0],"k":5}' % t).encode(), JSON_CT, f'num2 {t[:60]}'))
        out.append(('tipbatch', ('{"vectors":[[%s,0,0,0],[0,%s,1,0]],"k":5}' % (t, t)).encode(), JSON_CT, f'numb {t[:60]}'))
        out.append(('tl2', ('{"vector":[%s,1,0,0],"k":5}' % t).encode(), JSON_CT, f'numl2 {t[:60]}'))
        out.append(('csearch', ('{"vector":[%s,1,0,0],"k":5}' % t).encode(), JSON_CT, f'numc {t[:60]}'))
        out.append(('csearch', ('{"vector":[1,0,0,0],"k":%s}' % t).encode(), JSON_CT, f'k {t[:60]}'))
        out.append(('search', ('{"query_vector":[%s%s],"k":3}' % (t, ',0.5' * 383)).encode(), JSON_CT, f'nums {t[:60]}'))
        out.append(('search', ('{"query_vector":[%s],"k":%s}' % (','.join(['1'] * 384), t)).encode(), JSON_CT, f'k384 {t[:60]}'))
        out.append(('search', ('{"query_vector":[%s],"k":10,"recall_target":%s}' % (','.join(['1'] * 384), t)).encode(), JSON_CT, f'rt {t[:60]}'))
        out.append(('search', ('{"query_vector":[%s],"k":10,"ef_search":%s}' % (','.join(['1'] * 384), t)).encode(), JSON_CT, f'ef {t[:60]}'))
    return out


# ----------------------------------------------------------------------------
# Mutations


def rnd_json_value(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.5:
        return Raw(rng.choice(NUMS[:80] + OTHERS + ['"balanced"', '"a"', '3', '0.9', '64']))
    if r < 0.75:
        return [rnd_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return Obj([(rng.choice(['a', 'k', 'vector', 'query_vector', 'must', 'key', 'match', 'value']), rnd_json_value(rng, depth + 1))
                for _ in range(rng.randint(0, 3))])


def seed_pairs(route, rng):
    path, field, dim, batch = ROUTES[route]
    V = rnd_vec(rng, dim, 'short' if dim > 4 else 'float')
    vec = [V, rnd_vec(rng, dim, 'short' if dim > 4 else 'float')] if batch else V
    pairs = [(field, vec), ('k', Raw(rng.choice(['1', '3', '5', '10'])))]
    opts = []
    if rng.random() < 0.3:
        opts.append(('profile', Raw(rng.choice(['"balanced"', '"low_latency"', '"high_accuracy"']))))
    if rng.random() < 0.2:
        opts.append(('recall_target', Raw(rng.choice(['0.9', '0.95', '0.99']))))
    if rng.random() < 0.2:
        opts.append(('ef_search', Raw(rng.choice(['16', '64', '128']))))
    if route in ('csearch', 'cbatch', 'tip', 'tipbatch', 'tl2'):
        if rng.random() < 0.5:
            opts.append(('filter', Raw(rng.choice(FILTERS[:10]))))
        if rng.random() < 0.4:
            opts.append(('with_payload', Raw(rng.choice(['true', 'false']))))
        if rng.random() < 0.3:
            opts.append(('with_vector', Raw(rng.choice(['true', 'false']))))
    pairs += opts
    rng.shuffle(pairs)
    return pairs


def struct_mutate(pairs, route, rng):
    path, field, dim, batch = ROUTES[route]
    pairs = list(pairs)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(9)
        if op == 0 and pairs:  # replace a value
            i = rng.randrange(len(pairs))
            pairs[i] = (pairs[i][0], rnd_json_value(rng))
        elif op == 1:  # add unknown / known key
            pairs.insert(rng.randint(0, len(pairs)), (rng.choice(['foo', 'k', field, 'profile', 'ef_search', 'recall_target', 'filter', 'with_payload', '']), rnd_json_value(rng)))
        elif op == 2 and pairs:  # delete key
            pairs.pop(rng.randrange(len(pairs)))
        elif op == 3 and pairs:  # duplicate key
            p = rng.choice(pairs)
            pairs.insert(rng.randint(0, len(pairs)), p)
        elif op == 4 and pairs:  # escape a key
            i = rng.randrange(len(pairs))
            k = pairs[i][0]
            if isinstance(k, str) and k:
                pairs[i] = (Raw(esc_one(k, rng.randrange(len(k)))), pairs[i][1])
        elif op == 5:  # mutate a vector element
            for i, (k, v) in enumerate(pairs):
                if k == field and isinstance(v, list) and v:
                    v = list(v)
                    tgt = v
                    if batch and isinstance(v[0], list):
                        j = rng.randrange(len(v))
                        if isinstance(v[j], list) and v[j]:
                            v[j] = list(v[j])
                            tgt = v[j]
                    if tgt:
                        tgt[rng.randrange(len(tgt))] = Raw(rng.choice(VEC_TOKENS))
                    pairs[i] = (k, v)
                    break
        elif op == 6:  # change vector length
            for i, (k, v) in enumerate(pairs):
                if k == field and isinstance(v, list):
                    v = list(v)
                    if v and rng.random() < 0.5:
                        v.pop(rng.randrange(len(v)))
                    else:
                        v.insert(rng.randint(0, len(v)), Raw('1') if not batch else [Raw('1')] * dim)
                    pairs[i] = (k, v)
                    break
        elif op == 7:  # k
            pairs.append(('k', Raw(rng.choice(NUMS + OTHERS))))
            # remove other k sometimes
            if rng.random() < 0.7:
                ks = [j for j, p in enumerate(pairs[:-1]) if p[0] == 'k']
                for j in reversed(ks):
                    pairs.pop(j)
        elif op == 8 and pairs:  # deep value
            d = rng.choice([5, 120, 127, 128, 129, 300])
            pairs.insert(rng.randint(0, len(pairs)), ('foo', Raw('[' * d + ']' * d)))
    return pairs


def byte_mutate(b, rng):
    b = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        if not b:
            b += b'{'
        op = rng.randrange(8)
        i = rng.randrange(len(b))
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i] = ord(rng.choice('{}[]:,"\\ 0123456789-+.eE\x00tfn'))
        elif op == 2:
            del b[i:i + rng.randint(1, 8)]
        elif op == 3:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 16)]
        elif op == 4:
            b[i:i] = rng.choice([b'\\u005f', b'\\u0000', b'\\ud800', b'-0', b'1e39', b'1e400', b'00', b'"', b'\xff', b'\xef\xbb\xbf',
                                 b',', b'null', b'[', b']', b'{', b'}', b'"k":3,', b'"foo":1,', b' ', b'\n', b'\t', b'1e-46',
                                 b'18446744073709551616', b'.5', b'e5'])
        elif op == 5:
            # replace a number token
            s = bytes(b)
            import re
            ms = list(re.finditer(rb'-?\d+(\.\d+)?([eE][-+]?\d+)?', s))
            if ms:
                m = rng.choice(ms)
                b[m.start():m.end()] = rng.choice(NUMS + BAD_NUMS).encode()
        elif op == 6:
            del b[i:]
        else:
            b[i:i] = bytes([rng.randrange(256)])
    return bytes(b)


def to_tree(x):
    """json value -> Raw/Obj/list tree, numbers kept as Raw tokens."""
    if isinstance(x, dict):
        return Obj([(k, to_tree(v)) for k, v in x.items()])
    if isinstance(x, list):
        return [to_tree(i) for i in x]
    return Raw(json.dumps(x))


def parse_tree(s):
    return to_tree(json.loads(s, object_pairs_hook=lambda ps: dict(ps)))


def all_nodes(t, out=None):
    """(container, index) slots of every value under t, containers included."""
    if out is None:
        out = []
    if isinstance(t, Obj):
        for i, (k, v) in enumerate(t.pairs):
            out.append((t, i))
            all_nodes(v, out)
    elif isinstance(t, list):
        for i, v in enumerate(t):
            out.append((t, i))
            all_nodes(v, out)
    return out


def get_slot(c, i):
    return c.pairs[i][1] if isinstance(c, Obj) else c[i]


def set_slot(c, i, v):
    if isinstance(c, Obj):
        c.pairs[i] = (c.pairs[i][0], v)
    else:
        c[i] = v


NO_FILTER_DUPS = False  # set by --no-filter-dups: keep the known finding (duplicate keys inside "filter") out


def tree_mutate(root, rng, n):
    import copy
    root = copy.deepcopy(root)
    for _ in range(n):
        nodes = all_nodes(root)
        objs = [root] + [get_slot(c, i) for c, i in nodes if isinstance(get_slot(c, i), Obj)]
        dup_objs = objs
        if NO_FILTER_DUPS:
            inside = set()
            for k, v in (root.pairs if isinstance(root, Obj) else []):
                if isinstance(v, Obj):
                    inside.add(id(v))
                    inside.update(id(get_slot(c, i)) for c, i in all_nodes(v))
            dup_objs = [o for o in objs if id(o) not in inside or o is root]
        op = rng.randrange(10)
        if op <= 2 and dup_objs:
            objs = dup_objs  # duplicate a key (same spelling or escaped) somewhere in any object
            o = rng.choice(objs)
            if o.pairs:
                k, v = rng.choice(o.pairs)
                if rng.random() < 0.5:
                    v = rnd_json_value(rng) if rng.random() < 0.3 else v
                kk = k
                if isinstance(k, str) and k and rng.random() < 0.4:
                    kk = Raw(esc_one(k, rng.randrange(len(k))))
                o.pairs.insert(rng.randint(0, len(o.pairs)), (kk, v))
        elif op == 3 and objs:  # escape a key
            o = rng.choice(objs)
            if o.pairs:
                i = rng.randrange(len(o.pairs))
                k = o.pairs[i][0]
                if isinstance(k, str) and k:
                    o.pairs[i] = (Raw(esc_one(k, rng.randrange(len(k)))), o.pairs[i][1])
        elif op == 4 and nodes:  # replace a value with a random token / value
            c, i = rng.choice(nodes)
            set_slot(c, i, Raw(rng.choice(VEC_TOKENS)) if rng.random() < 0.5 else rnd_json_value(rng))
        elif op == 5 and objs:  # remove a key
            o = rng.choice(objs)
            if o.pairs:
                o.pairs.pop(rng.randrange(len(o.pairs)))
        elif op == 6 and objs:  # add a key
            o = rng.choice(objs)
            o.pairs.insert(rng.randint(0, len(o.pairs)), (rng.choice(['foo', 'k', 'must', 'should', 'must_not', 'key', 'match', 'value', 'any',
                                                                      'range', 'gt', 'gte', 'lt', 'lte', 'has_id', 'is_empty', 'filter', 'vector',
                                                                      'profile', 'ef_search', 'recall_target', 'with_payload', 'with_vector', '']),
                                                          rnd_json_value(rng)))
        elif op == 7 and nodes:  # number token swap
            nums = [(c, i) for c, i in nodes if isinstance(get_slot(c, i), Raw) and get_slot(c, i).s[:1] in '-0123456789']
            if nums:
                c, i = rng.choice(nums)
                set_slot(c, i, Raw(rng.choice(NUMS)))
        elif op == 8 and nodes:  # wrap / unwrap
            c, i = rng.choice(nodes)
            v = get_slot(c, i)
            set_slot(c, i, [v] if rng.random() < 0.5 else Obj([('value', v)]))
        else:  # list length
            lists = [get_slot(c, i) for c, i in nodes if isinstance(get_slot(c, i), list)]
            if lists:
                l = rng.choice(lists)
                if l and rng.random() < 0.5:
                    l.pop(rng.randrange(len(l)))
                elif l:
                    l.insert(rng.randint(0, len(l)), rng.choice(l))
    return root


def tree_cases(rng, n_per_route):
    out = []
    for route in ['csearch', 'cbatch', 'search', 'batch', 'tip']:
        for i in range(n_per_route):
            pairs = seed_pairs(route, rng)
            if route in ('csearch', 'cbatch', 'tip') and not any(k == 'filter' for k, _ in pairs):
                pairs.append(('filter', Raw(rng.choice(FILTERS[:10]))))
            txt = ser(Obj(pairs))
            root = parse_tree(txt)
            n = rng.choice([1, 1, 1, 2, 3])
            body = ser(tree_mutate(root, rng, n), rng.choice(['', '', ' '])).encode('utf-8', 'surrogatepass')
            out.append((route, body, JSON_CT, f'tree#{i}'))
    return out


def mutation_cases(rng, n_per_route):
    out = []
    for route in ['search', 'batch', 'csearch', 'cbatch']:
        for i in range(n_per_route):
            pairs = seed_pairs(route, rng)
            if rng.random() < 0.55:
                pairs = struct_mutate(pairs, route, rng)
                ws = rng.choice(['', '', '', ' ', '\n', ' \t'])
                body = ser(Obj(pairs), ws).encode('utf-8', 'surrogatepass')
                if rng.random() < 0.2:
                    body = byte_mutate(body, rng)
                out.append((route, body, JSON_CT, f'struct#{i}'))
            else:
                body = ser(Obj(pairs)).encode()
                out.append((route, byte_mutate(body, rng), JSON_CT, f'bytes#{i}'))
    return out


# ----------------------------------------------------------------------------


POINTS = {
    'c': '{"points": [{"id": 1, "vector": [1,0,0,0], "payload": {"tag": "a", "price": 3}},'
         '{"id": 2, "vector": [0,1,0,0], "payload": {"tag": "b", "price": 5, "n":{"x":1}}},'
         '{"id": 3, "vector": [0.5,0.5,0.1,0], "payload": {"tag": "a", "price": 7.5, "tags":["x","y"]}},'
         '{"id": 4, "vector": [0,0,1,1], "payload": {"tag": "c"}},{"id": 5, "vector": [-1,0.2,0,0.3], "payload": {}}]}',
    'tip': '{"points": [{"id": 1, "vector": [1,0,0,0], "payload": {"tag": "a", "price": 3}},'
           '{"id": 2, "vector": [0,1,0,0], "payload": {"tag": "b", "price": 5}},'
           '{"id": 3, "vector": [0.5,0.5,0.1,0], "payload": {"tag": "a", "price": 7.5}},'
           '{"id": 4, "vector": [1e16,-3e15,2,0], "payload": {"tag": "c"}},{"id": 5, "vector": [-1,0.2,0,0.3], "payload": {}}]}',
}
POINTS['tl2'] = POINTS['tip']
METRIC = {'c': 'cosine', 'tip': 'ip', 'tl2': 'l2'}


def setup(ports):
    """Create the collections and upsert the same points on every server (idempotent)."""
    for port in ports:
        conn = Conn(port)
        for name, metric in METRIC.items():
            st, body, _ = conn.req('GET', f'/collections/{name}', b'', [])
            if st != 200:
                st, body, _ = conn.req('PUT', f'/collections/{name}', json.dumps({'dimension': 4, 'metric': metric}).encode(), JSON_CT)
                print(f'create {name} on {port}: {st}')
            st, body, _ = conn.req('PUT', f'/collections/{name}/points', POINTS[name].encode(), JSON_CT)
            print(f'upsert {name} on {port}: {st} {body[:60]!r}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--old', type=int, default=9101)
    ap.add_argument('--new', type=int, default=9102)
    ap.add_argument('--old-pid', type=int)
    ap.add_argument('--new-pid', type=int)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--mutations', type=int, default=3000, help='mutated bodies per route')
    ap.add_argument('--numbers', type=int, default=1500, help='random number literals')
    ap.add_argument('--only', default='all')
    ap.add_argument('--out', default='/tmp/review/diffs.jsonl')
    ap.add_argument('--no-filter-dups', action='store_true', help='tree mutations add no duplicate keys inside nested objects (known finding)')
    ap.add_argument('--setup', action='store_true', help='create collections c/tip/tl2 and upsert the points on both servers first')
    ap.add_argument('--headers', action='store_true', help='also report (informationally) response-header differences, Date excluded')
    ap.add_argument('--slow', type=float, default=2.0, help='flag responses slower than this (s)')
    args = ap.parse_args()
    rng = random.Random(args.seed)
    if args.setup:
        setup([args.old, args.new])
    global NO_FILTER_DUPS
    NO_FILTER_DUPS = args.no_filter_dups

    cases = []
    if args.only in ('all', 'curated'):
        cases += curated(rng)
    if args.only in ('all', 'numbers'):
        cases += number_cases(rng, args.numbers)
    if args.only in ('all', 'mutate'):
        cases += mutation_cases(rng, args.mutations)
    if args.only in ('all', 'tree'):
        cases += tree_cases(rng, args.mutations)

    old, new = Conn(args.old), Conn(args.new)
    counts, diffs, statuses, notes, classes, hdiffs = {}, 0, {}, [], {}, 0
    fout = open(args.out, 'w')
    t_start = time.monotonic()
    for n, (route, body, headers, label) in enumerate(cases):
        path = ROUTES[route][0]
        so, bo, to = old.req('POST', path, body, headers)
        sn, bn, tn = new.req('POST', path, body, headers)
        g = ROUTE_GROUP[route]
        if args.headers and so == sn and old.last_headers != new.last_headers:
            hdiffs += 1
            if hdiffs <= 20:
                ho, hn = dict(old.last_headers), dict(new.last_headers)
                print(f'HEADER-DIFF [{route}] {label}: ' + str({k: (ho.get(k), hn.get(k)) for k in set(ho) | set(hn) if ho.get(k) != hn.get(k)}), flush=True)
        counts[g] = counts.get(g, 0) + 1
        statuses[(g, so)] = statuses.get((g, so), 0) + 1
        if sn == 500 or sn in ('EXC', 'TIMEOUT') or tn > args.slow:
            notes.append(dict(route=route, label=label, status_new=str(sn), t_new=tn, t_old=to, body=body[:300].decode('latin-1')))
        if so != sn or normalise(bo) != normalise(bn):
            # re-check determinism of the old server
            so2, bo2, _ = old.req('POST', path, body, headers)
            nondet = (so2 != so or normalise(bo2) != normalise(bo))
            diffs += 1
            cls = classify(route, body, so, bo, sn, bn)
            classes[cls] = classes.get(cls, 0) + 1
            rec = dict(cls=cls, route=route, path=path, label=label, headers=headers, body=body.decode('latin-1'), body_len=len(body),
                       status_old=so, status_new=sn, resp_old=bo.decode('latin-1')[:2000], resp_new=bn.decode('latin-1')[:2000],
                       old_nondeterministic=nondet)
            fout.write(json.dumps(rec) + '\n')
            fout.flush()
            if cls != 'KNOWN-filter-duplicate-key' or classes[cls] <= 3:
                print(f'DIFF {cls} [{route}] {label}: {so} vs {sn}\n  body={body[:200]!r}\n  old={bo[:300]!r}\n  new={bn[:300]!r}', flush=True)
        if args.old_pid and args.new_pid and n % 200 == 0:
            for nm, pid in (('old', args.old_pid), ('new', args.new_pid)):
                try:
                    os.kill(pid, 0)
                except OSError:
                    print(f'!!! {nm} server (pid {pid}) is gone after case {n} [{route}] {label}', flush=True)
                    notes.append(dict(crash=nm, case=n, label=label))
                    sys.exit(2)
        if n % 1000 == 0:
            print(f'... {n}/{len(cases)} cases, {diffs} diffs, {time.monotonic() - t_start:.0f}s', flush=True)
    print('\n== bodies per route group:', counts)
    print('== old status histogram:', {f'{k[0]}:{k[1]}': v for k, v in sorted(statuses.items(), key=str)})
    print(f'== differences: {diffs} (details in {args.out}); by class: {classes}')
    if args.headers:
        print(f'== header differences (informational): {hdiffs}')
    print(f'== notes (new 500/exception/timeout/slow>{args.slow}s): {len(notes)}')
    for x in notes[:50]:
        print('   ', x)


if __name__ == '__main__':
    main()
