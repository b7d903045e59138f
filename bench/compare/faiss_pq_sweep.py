# Faiss PQ fast scan + exact re-rank, one thread, one query per call, on the demo data:
# KF=32,64,100 python faiss_pq_sweep.py data/vectors.npy "PQ64x4fs,RFlat" ...  (300 random unit queries, seed 7)
import sys, time, numpy as np, faiss
base = np.load(sys.argv[1], mmap_mode='r')
n, d = base.shape
rng = np.random.default_rng(7)
nq = 300
q = rng.standard_normal((nq, d)).astype('float32'); q /= np.linalg.norm(q, axis=1, keepdims=True)
faiss.omp_set_num_threads(2)
flat = faiss.IndexFlatL2(d); flat.add(np.ascontiguousarray(base))
_, gt = flat.search(q, 10)
for key in sys.argv[2:]:
    t=time.time(); idx = faiss.index_factory(d, key); idx.train(np.ascontiguousarray(base[:200000])); idx.add(np.ascontiguousarray(base)); bt=time.time()-t
    faiss.omp_set_num_threads(1)
    for kf in [int(x) for x in __import__("os").environ.get("KF","16,32,64,128").split(",")]:
        ps = faiss.IndexRefineSearchParameters(k_factor=kf)
        lat=[]; rec=[]
        for i in range(nq):
            t=time.perf_counter(); _, I = idx.search(q[i:i+1], 10, params=ps); lat.append(time.perf_counter()-t)
            rec.append(len(set(I[0]) & set(gt[i]))/10)
        lat=np.array(lat)*1e3
        print(f"{key} build {bt:.1f}s k_factor {kf}: recall {np.mean(rec):.4f} p50 {np.median(lat):.3f} ms mean {lat.mean():.3f}", flush=True)
    faiss.omp_set_num_threads(2)
