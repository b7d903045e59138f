# Peer check, a first step towards the comparison harness: Faiss IndexHNSWFlat (M 32, efC 200)
# and IndexFlatL2 on the same .npy file with the same thread count, to set beside
# `vectorwise build` and `vectorwise bench --index`. Queries are uniform random unit vectors, as
# vectorwise's `random` set, but not the same draws: compare recall statistically.
# Usage: python3 -m venv .venv && .venv/bin/pip install faiss-cpu numpy
#        vectorwise generate --n 100000 --out s100k.npy
#        .venv/bin/python bench/compare/faiss_hnsw.py s100k.npy 2      # build threads
#        vectorwise build --vectors s100k.npy --out s100k.vwi && vectorwise bench --index s100k.vwi --queries 300 --ef 64,256
import sys, time, numpy as np, faiss
faiss.omp_set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
x = np.load(sys.argv[1])
idx = faiss.IndexHNSWFlat(x.shape[1], 32)
idx.hnsw.efConstruction = 200
t = time.time(); idx.add(x); print(f"faiss build {time.time()-t:.1f} s", flush=True)
rng = np.random.default_rng(3)
q = rng.standard_normal((300, x.shape[1])).astype("float32"); q /= np.linalg.norm(q, axis=1, keepdims=True)
flat = faiss.IndexFlatL2(x.shape[1]); flat.add(x)
faiss.omp_set_num_threads(1)
t = time.time(); _, gt = flat.search(q, 10); print(f"faiss exact {1000*(time.time()-t)/len(q):.2f} ms/q (1 thread, batch of {len(q)})")
t = time.time()
for i in range(50): flat.search(q[i:i+1], 10)
print(f"faiss exact single query {1000*(time.time()-t)/50:.2f} ms/q")
for ef in [64, 256]:
    idx.hnsw.efSearch = ef
    t = time.time(); lat = []
    res = []
    for i in range(len(q)):
        s = time.time(); _, I = idx.search(q[i:i+1], 10); lat.append(time.time() - s); res.append(I[0])
    rec = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res, gt)])
    print(f"faiss ef {ef}: recall {rec:.3f}  p50 {1000*np.median(lat):.3f} ms")
