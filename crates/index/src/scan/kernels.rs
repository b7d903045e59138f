//! The quantised-scan kernels: 4-bit fast-scan (table lookups sixteen at a
//! time with a byte shuffle, as in Faiss's `PQ…x4fs` and André et al.'s
//! "Quicker ADC"), the 8-bit scalar-quantised distance of the re-rank
//! stage, and the query's table of the first. A scalar reference and an AVX2
//! version of each; the set is chosen
//! once from the CPU (and `VECTORWISE_SIMD=scalar` forces the reference).
//!
//! Block layout (see [`super::pack_block`]): 32 points per block; for each
//! pair of sub-quantisers `(2p, 2p+1)` 32 bytes, byte `j < 16` holding the
//! codes of sub-quantiser `2p` for points `j` (low nibble) and `j + 16` (high
//! nibble), byte `16 + j` the same for sub-quantiser `2p + 1`. The query's
//! table is laid out the same way: 16 entries of `2p`, then 16 of `2p + 1`, so
//! one 256-bit shuffle looks up 64 codes.

use super::CENTROIDS;
use std::sync::OnceLock;

/// Sums, for each point of consecutive blocks, its table entries. Entries
/// must be at most [`MAX_ENTRY`] (the AVX2 kernel adds two in a byte). `lut` is
/// `pairs × 32` bytes, `codes` a whole number of blocks of that size, `out`
/// 32 sums per block, `masks` one per block with bit `j` set when point `j`'s
/// sum is below `threshold`.
pub type BlockScanFn = fn(codes: &[u8], lut: &[u8], threshold: u16, out: &mut [u16], masks: &mut [u32]);

/// Largest table entry the block kernels accept: two of them fit a byte.
pub const MAX_ENTRY: u8 = 127;
/// `Σ w_i (q_i − c_i)²` over 8-bit codes `c`.
pub type Sq8Fn = fn(codes: &[u8], q: &[f32], w: &[f32]) -> f32;
/// The set's [`Sq8Fn`] for four codes at once, bit for bit the same four
/// values: one point's sum is a chain of dependent adds, so four chains
/// side by side keep the FMA units busy where one waits on latency.
pub type Sq8x4Fn = fn(codes: [&[u8]; 4], q: &[f32], w: &[f32]) -> [f32; 4];

/// The query's table: for sub-quantiser `s` and its centroid `c`, the
/// squared distance `d` from the query's `s`-th sub-vector to the centroid,
/// as `(d − min_s) · scale` rounded half up, where `min_s` is the smallest of
/// `s`'s 16 and `scale` maps the largest spread to [`MAX_ENTRY`]. `centroids`
/// is `m × 16 × dsub`, `q` the query zero-padded to `m × dsub`, `out` `m × 16`
/// bytes (the pair layout is sub-quantiser order). Every set gives the same
/// bytes: the same float operations in the same order.
pub type TableFn = fn(centroids: &[f32], q: &[f32], dsub: usize, out: &mut [u8]);
/// Bit `j` of `masks[b]` set when `sums[32 b + j] < threshold`: the masks
/// [`BlockScanFn`] makes, for sums already made. `sums` is 32 per mask.
pub type BelowFn = fn(sums: &[u16], threshold: u16, masks: &mut [u32]);

#[derive(Clone, Copy, Debug)]
pub struct ScanKernels {
    pub name: &'static str,
    pub block: BlockScanFn,
    pub sq8: Sq8Fn,
    pub sq8x4: Sq8x4Fn,
    pub table: TableFn,
    pub below: BelowFn,
}

pub const SCALAR: ScanKernels =
    ScanKernels { name: "scalar", block: block_scalar, sq8: sq8_scalar, sq8x4: sq8x4_scalar, table: table_scalar, below: below_scalar };

/// Every kernel set this CPU can run, best last.
pub fn available() -> Vec<ScanKernels> {
    #[allow(unused_mut)]
    let mut sets = vec![SCALAR];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        sets.push(ScanKernels {
            name: "avx2+fma",
            block: x86::block_avx2,
            sq8: x86::sq8_avx2,
            sq8x4: x86::sq8x4_avx2,
            table: x86::table_avx2,
            below: x86::below_avx2_checked,
        });
    }
    sets
}

/// The set in use: the best available, or scalar when `VECTORWISE_SIMD=scalar`.
pub fn scan_kernels() -> &'static ScanKernels {
    static CHOSEN: OnceLock<ScanKernels> = OnceLock::new();
    CHOSEN.get_or_init(|| crate::distance::pick(available(), |k| k.name))
}

fn check_blocks(codes: &[u8], lut: &[u8], out: &[u16], masks: &[u32]) -> usize {
    let ok = !lut.is_empty() && lut.len() % 32 == 0 && codes.len() % lut.len() == 0;
    let blocks = if ok { codes.len() / lut.len() } else { 0 };
    assert!(ok && out.len() == blocks * 32 && masks.len() == blocks, "block and table sizes disagree");
    blocks
}

pub fn below_scalar(sums: &[u16], threshold: u16, masks: &mut [u32]) {
    assert_eq!(sums.len(), masks.len() * 32, "32 sums per mask");
    for (block, mask) in sums.chunks_exact(32).zip(masks.iter_mut()) {
        *mask = block.iter().enumerate().fold(0, |m, (j, &x)| m | (u32::from(x < threshold) << j));
    }
}

pub fn block_scalar(codes: &[u8], lut: &[u8], threshold: u16, out: &mut [u16], masks: &mut [u32]) {
    check_blocks(codes, lut, out, masks);
    for ((block, out), mask) in codes.chunks_exact(lut.len()).zip(out.chunks_exact_mut(32)).zip(masks.iter_mut()) {
        out.fill(0);
        for (c, l) in block.chunks_exact(32).zip(lut.chunks_exact(32)) {
            for j in 0..16 {
                let (a, b) = (c[j], c[16 + j]);
                let lo = l[(a & 15) as usize] as u16 + l[16 + (b & 15) as usize] as u16;
                let hi = l[(a >> 4) as usize] as u16 + l[16 + (b >> 4) as usize] as u16;
                out[j] = out[j].wrapping_add(lo);
                out[16 + j] = out[16 + j].wrapping_add(hi);
            }
        }
        *mask = out.iter().enumerate().fold(0, |m, (j, &x)| m | (((x < threshold) as u32) << j));
    }
}

pub fn table_scalar(centroids: &[f32], q: &[f32], dsub: usize, out: &mut [u8]) {
    table_body(centroids, q, dsub, out);
}

/// [`TableFn`]'s one body: each set compiles it with its own instructions
/// (inlined into a `target_feature` function the compiler vectorises it over
/// the 16 centroids; in generic code it stayed scalar and was 15 % of a
/// one-list probe of clustered-100k at 1024 lists: mean 13.3 → 12.3 µs there,
/// real-manpages one list 22.5 → 20 µs, `bench --index`, alternating runs).
/// Every `dsub` up to 8 has its own instance: on the generic path the
/// default 6 at 384-d was slower (real-manpages, 316 lists, one list
/// 20.0 → 17.3 µs and batch +18 %, 48 lists 71.1 → 68.1 µs with its own).
#[inline(always)]
fn table_body(centroids: &[f32], q: &[f32], dsub: usize, out: &mut [u8]) {
    let m = out.len() / CENTROIDS;
    assert!(
        dsub > 0 && out.len() == m * CENTROIDS && q.len() == m * dsub && centroids.len() == m * CENTROIDS * dsub,
        "table sizes disagree"
    );
    let mut dist = vec![0f32; m * CENTROIDS];
    match dsub {
        1 => distances::<1>(centroids, q, &mut dist),
        2 => distances::<2>(centroids, q, &mut dist),
        3 => distances::<3>(centroids, q, &mut dist),
        4 => distances::<4>(centroids, q, &mut dist),
        5 => distances::<5>(centroids, q, &mut dist),
        6 => distances::<6>(centroids, q, &mut dist),
        7 => distances::<7>(centroids, q, &mut dist),
        8 => distances::<8>(centroids, q, &mut dist),
        _ => {
            for (i, d) in dist.iter_mut().enumerate() {
                let (s, c) = (i / CENTROIDS, i % CENTROIDS);
                let cent = &centroids[(s * CENTROIDS + c) * dsub..][..dsub];
                *d = cent.iter().zip(&q[s * dsub..][..dsub]).fold(0f32, |acc, (&a, &b)| acc + (a - b) * (a - b));
            }
        }
    }
    let mut mins = vec![0f32; m];
    let mut range = 0f32;
    for (row, min) in dist.chunks_exact(CENTROIDS).zip(mins.iter_mut()) {
        // From ±∞, as `f32::min`/`max` folds did: a NaN is never taken.
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &d in row {
            lo = if d < lo { d } else { lo };
            hi = if d > hi { d } else { hi };
        }
        *min = lo;
        range = if hi - lo > range { hi - lo } else { range };
    }
    let top = MAX_ENTRY as f32;
    let scale = if range > 0.0 { top / range } else { 0.0 };
    // The entries are not negative, so rounding is half up: `+ 0.5` and
    // truncation (`as` saturates), which vectorises where `f32::round` is a
    // libm call per entry.
    for ((o, d), &min) in out.chunks_exact_mut(CENTROIDS).zip(dist.chunks_exact(CENTROIDS)).zip(&mins) {
        for (o, &d) in o.iter_mut().zip(d) {
            let v = (d - min) * scale + 0.5;
            *o = (if v < top { v } else { top }) as u8;
        }
    }
}

/// Squared distances from each sub-vector of `q` to its 16 centroids, the
/// `D` terms added in order.
#[inline(always)]
fn distances<const D: usize>(centroids: &[f32], q: &[f32], dist: &mut [f32]) {
    for ((row, cents), qs) in dist.chunks_exact_mut(CENTROIDS).zip(centroids.chunks_exact(CENTROIDS * D)).zip(q.chunks_exact(D)) {
        let qs: &[f32; D] = qs.try_into().expect("D floats");
        for (c, o) in row.iter_mut().enumerate() {
            let mut acc = 0f32;
            for d in 0..D {
                let x = cents[c * D + d] - qs[d];
                acc += x * x;
            }
            *o = acc;
        }
    }
}

pub fn sq8_scalar(codes: &[u8], q: &[f32], w: &[f32]) -> f32 {
    assert!(codes.len() == q.len() && q.len() == w.len(), "kernel inputs differ in length");
    codes.iter().zip(q).zip(w).map(|((&c, &q), &w)| w * (q - c as f32) * (q - c as f32)).sum()
}

pub fn sq8x4_scalar(codes: [&[u8]; 4], q: &[f32], w: &[f32]) -> [f32; 4] {
    codes.map(|c| sq8_scalar(c, q, w))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::check_blocks;
    use std::arch::x86_64::*;

    pub fn table_avx2(centroids: &[f32], q: &[f32], dsub: usize, out: &mut [u8]) {
        // SAFETY: handed out by `available()` only after avx2 and fma were
        // detected; the body checks its sizes and indexes safely.
        unsafe { table_avx2_impl(centroids, q, dsub, out) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn table_avx2_impl(centroids: &[f32], q: &[f32], dsub: usize, out: &mut [u8]) {
        super::table_body(centroids, q, dsub, out);
    }

    pub fn block_avx2(codes: &[u8], lut: &[u8], threshold: u16, out: &mut [u16], masks: &mut [u32]) {
        let blocks = check_blocks(codes, lut, out, masks);
        // SAFETY: handed out by `available()` only after avx2 was detected;
        // the sizes were checked above.
        unsafe { blocks_avx2_impl(codes, lut, out, blocks) };
        // SAFETY: as above; `out` holds 32 sums per block.
        unsafe { below_avx2(out, threshold, masks) };
    }

    pub fn below_avx2_checked(sums: &[u16], threshold: u16, masks: &mut [u32]) {
        assert_eq!(sums.len(), masks.len() * 32, "32 sums per mask");
        // SAFETY: handed out by `available()` only after avx2 was detected;
        // the sizes were checked above.
        unsafe { below_avx2(sums, threshold, masks) };
    }

    /// Bit `j` of `masks[b]`: `out[32 b + j] < threshold` (unsigned).
    #[target_feature(enable = "avx2")]
    unsafe fn below_avx2(out: &[u16], threshold: u16, masks: &mut [u32]) {
        if threshold == 0 {
            masks.fill(0);
            return;
        }
        let limit = _mm256_set1_epi16((threshold - 1) as i16);
        for (b, m) in masks.iter_mut().enumerate() {
            // SAFETY: out holds 32 u16 (two 32-byte loads) per block.
            let (x0, x1) = unsafe {
                (_mm256_loadu_si256(out.as_ptr().add(b * 32).cast()), _mm256_loadu_si256(out.as_ptr().add(b * 32 + 16).cast()))
            };
            // x <= limit  <=>  min(x, limit) == x
            let l0 = _mm256_cmpeq_epi16(_mm256_min_epu16(x0, limit), x0);
            let l1 = _mm256_cmpeq_epi16(_mm256_min_epu16(x1, limit), x1);
            // packs works per 128-bit half: restore point order after it.
            let packed = _mm256_permute4x64_epi64(_mm256_packs_epi16(l0, l1), 0b11_01_10_00);
            *m = _mm256_movemask_epi8(packed) as u32;
        }
    }

    /// Two blocks per pass, sharing each table load.
    #[target_feature(enable = "avx2")]
    unsafe fn blocks_avx2_impl(codes: &[u8], lut: &[u8], out: &mut [u16], blocks: usize) {
        let pairs = lut.len() / 32;
        let bytes = lut.len();
        let mut b = 0;
        while b + 2 <= blocks {
            // SAFETY: blocks b and b + 1 exist; out has 32 sums per block.
            unsafe {
                let c0 = codes.as_ptr().add(b * bytes);
                let c1 = c0.add(bytes);
                let (s0, s1) = two_blocks::<true>(c0, c1, lut.as_ptr(), pairs);
                store(s0, out.as_mut_ptr().add(b * 32));
                store(s1, out.as_mut_ptr().add((b + 1) * 32));
            }
            b += 2;
        }
        if b < blocks {
            // SAFETY: as above; the odd last block is scanned twice, once wasted.
            unsafe {
                let c0 = codes.as_ptr().add(b * bytes);
                let (s0, _) = two_blocks::<false>(c0, c0, lut.as_ptr(), pairs);
                store(s0, out.as_mut_ptr().add(b * 32));
            }
        }
    }

    type Sums = [__m256i; 4];

    /// How far ahead the block kernel prefetches codes (bytes).
    const PREFETCH: usize = 8192;

    /// `PREFETCHING`: ask for the codes [`PREFETCH`] bytes ahead. Off for a
    /// lone block, which is what stage 1's sampled estimate scans: there the
    /// lines ahead are between samples and were never used (sphere-1m with
    /// 2-d sub-quantisers, rerank 128: 1.75 → 1.61 ms a query with the
    /// estimate prefetching its next sample instead).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn two_blocks<const PREFETCHING: bool>(c0: *const u8, c1: *const u8, lut: *const u8, pairs: usize) -> (Sums, Sums) {
        let nibble = _mm256_set1_epi8(0x0f);
        let z = _mm256_setzero_si256();
        let (mut a, mut b) = ([z; 4], [z; 4]);
        // Two pairs at a time: their looked-up bytes (each <= MAX_ENTRY) are
        // added as bytes, then widened once.
        let mut p = 0;
        while p + 2 <= pairs {
            // Ask for the codes PREFETCH bytes ahead: one line per stream per
            // step. A hint: never faults, whatever the address.
            if PREFETCHING {
                _mm_prefetch::<_MM_HINT_T0>(c0.wrapping_add(p * 32 + PREFETCH).cast());
                _mm_prefetch::<_MM_HINT_T0>(c1.wrapping_add(p * 32 + PREFETCH).cast());
            }
            // SAFETY: the caller guarantees `pairs × 32` bytes behind each pointer.
            let (l, m, x0, y0, x1, y1) = unsafe {
                (
                    _mm256_loadu_si256(lut.add(p * 32).cast()),
                    _mm256_loadu_si256(lut.add(p * 32 + 32).cast()),
                    _mm256_loadu_si256(c0.add(p * 32).cast()),
                    _mm256_loadu_si256(c0.add(p * 32 + 32).cast()),
                    _mm256_loadu_si256(c1.add(p * 32).cast()),
                    _mm256_loadu_si256(c1.add(p * 32 + 32).cast()),
                )
            };
            let (lo, hi) = lookup2(l, m, x0, y0, nibble);
            widen(&mut a, lo, hi);
            let (lo, hi) = lookup2(l, m, x1, y1, nibble);
            widen(&mut b, lo, hi);
            p += 2;
        }
        if p < pairs {
            // SAFETY: as above.
            let (l, x0, x1) = unsafe {
                (
                    _mm256_loadu_si256(lut.add(p * 32).cast()),
                    _mm256_loadu_si256(c0.add(p * 32).cast()),
                    _mm256_loadu_si256(c1.add(p * 32).cast()),
                )
            };
            let (lo, hi) = lookup(l, x0, nibble);
            widen(&mut a, lo, hi);
            let (lo, hi) = lookup(l, x1, nibble);
            widen(&mut b, lo, hi);
        }
        (a, b)
    }

    /// The table bytes for the low and high nibbles of one pair's codes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lookup(l: __m256i, c: __m256i, nibble: __m256i) -> (__m256i, __m256i) {
        let lo = _mm256_shuffle_epi8(l, _mm256_and_si256(c, nibble));
        let hi = _mm256_shuffle_epi8(l, _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble));
        (lo, hi)
    }

    /// [`lookup`] for two pairs, summed bytewise.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lookup2(l: __m256i, m: __m256i, c: __m256i, d: __m256i, nibble: __m256i) -> (__m256i, __m256i) {
        let (lo0, hi0) = lookup(l, c, nibble);
        let (lo1, hi1) = lookup(m, d, nibble);
        (_mm256_add_epi8(lo0, lo1), _mm256_add_epi8(hi0, hi1))
    }

    /// Adds 32 byte sums into 16-bit accumulators: `acc[0]`/`acc[2]` take the
    /// whole lane (low byte + 256 × high byte), `acc[1]`/`acc[3]` the high
    /// byte; the low bytes' sum is recovered in [`store`] (Faiss's trick: one
    /// AND fewer per shuffle).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn widen(acc: &mut Sums, lo: __m256i, hi: __m256i) {
        acc[0] = _mm256_add_epi16(acc[0], lo);
        acc[1] = _mm256_add_epi16(acc[1], _mm256_srli_epi16(lo, 8));
        acc[2] = _mm256_add_epi16(acc[2], hi);
        acc[3] = _mm256_add_epi16(acc[3], _mm256_srli_epi16(hi, 8));
    }

    /// Writes one block's 32 sums in point order.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store(s: Sums, out: *mut u16) {
        // Low bytes: whole-lane sum minus 256 × high-byte sum (wrapping).
        let even = |whole: __m256i, high: __m256i| _mm256_sub_epi16(whole, _mm256_slli_epi16(high, 8));
        let (lo_even, lo_odd) = (even(s[0], s[1]), s[1]);
        let (hi_even, hi_odd) = (even(s[2], s[3]), s[3]);
        // Lane half 0 holds sub-quantiser 2p, half 1 sub-quantiser 2p+1, for
        // the same points: add the halves, then interleave even and odd points.
        let fold = |v: __m256i| _mm_add_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let (le, lo_) = (fold(lo_even), fold(lo_odd));
        let (he, ho) = (fold(hi_even), fold(hi_odd));
        let p = out.cast::<__m128i>();
        // SAFETY: the caller gives 32 writable u16 = four 16-byte stores.
        unsafe {
            _mm_storeu_si128(p, _mm_unpacklo_epi16(le, lo_));
            _mm_storeu_si128(p.add(1), _mm_unpackhi_epi16(le, lo_));
            _mm_storeu_si128(p.add(2), _mm_unpacklo_epi16(he, ho));
            _mm_storeu_si128(p.add(3), _mm_unpackhi_epi16(he, ho));
        }
    }

    pub fn sq8_avx2(codes: &[u8], q: &[f32], w: &[f32]) -> f32 {
        assert!(codes.len() == q.len() && q.len() == w.len(), "kernel inputs differ in length");
        // SAFETY: handed out by `available()` only after avx2 and fma were
        // detected; the lengths were checked above.
        unsafe { sq8_avx2_impl(codes, q, w) }
    }

    pub fn sq8x4_avx2(codes: [&[u8]; 4], q: &[f32], w: &[f32]) -> [f32; 4] {
        assert!(codes.iter().all(|c| c.len() == q.len()) && q.len() == w.len(), "kernel inputs differ in length");
        // SAFETY: handed out by `available()` only after avx2 and fma were
        // detected; the lengths were checked above.
        unsafe { sq8x4_avx2_impl(codes, q, w) }
    }

    /// [`sq8_avx2_impl`] for four codes: each one's operations, in its order.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sq8x4_avx2_impl(codes: [&[u8]; 4], q: &[f32], w: &[f32]) -> [f32; 4] {
        let n = q.len();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for q and w (equal lengths).
            let (qv, wv) = unsafe { (_mm256_loadu_ps(q.as_ptr().add(i)), _mm256_loadu_ps(w.as_ptr().add(i))) };
            for (a, c) in acc.iter_mut().zip(codes) {
                // SAFETY: every code is n long, so 8 bytes at i are in bounds.
                let c = unsafe { _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(c.as_ptr().add(i).cast()))) };
                let d = _mm256_sub_ps(qv, c);
                *a = _mm256_fmadd_ps(_mm256_mul_ps(d, d), wv, *a);
            }
            i += 8;
        }
        let mut out = [0f32; 4];
        for ((o, a), c) in out.iter_mut().zip(acc).zip(codes) {
            let half = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
            let mut sum = _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)));
            for j in i..n {
                let d = q[j] - c[j] as f32;
                sum += w[j] * d * d;
            }
            *o = sum;
        }
        out
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn sq8_avx2_impl(codes: &[u8], q: &[f32], w: &[f32]) -> f32 {
        let n = codes.len();
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for all three slices (equal lengths).
            let (c, qv, wv) = unsafe {
                (
                    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(codes.as_ptr().add(i).cast()))),
                    _mm256_loadu_ps(q.as_ptr().add(i)),
                    _mm256_loadu_ps(w.as_ptr().add(i)),
                )
            };
            let d = _mm256_sub_ps(qv, c);
            acc = _mm256_fmadd_ps(_mm256_mul_ps(d, d), wv, acc);
            i += 8;
        }
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let mut sum = _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)));
        while i < n {
            let d = q[i] - codes[i] as f32;
            sum += w[i] * d * d;
            i += 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_block_kernel_matches_scalar(pairs in 1usize..40, blocks in 1usize..6, seed in any::<u64>()) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let codes: Vec<u8> = (0..blocks * pairs * 32).map(|_| rng.random()).collect();
            let lut: Vec<u8> = (0..pairs * 32).map(|_| rng.random_range(0..=MAX_ENTRY)).collect();
            let threshold: u16 = rng.random_range(0..(pairs * 2 * MAX_ENTRY as usize) as u16);
            let mut want = vec![0u16; blocks * 32];
            let mut want_masks = vec![0u32; blocks];
            block_scalar(&codes, &lut, threshold, &mut want, &mut want_masks);
            for (b, m) in want_masks.iter().enumerate() {
                for j in 0..32 {
                    prop_assert_eq!(m >> j & 1 == 1, want[b * 32 + j] < threshold);
                }
            }
            for k in available() {
                let mut got = vec![7u16; blocks * 32];
                let mut masks = vec![9u32; blocks];
                (k.block)(&codes, &lut, threshold, &mut got, &mut masks);
                prop_assert_eq!(&got, &want, "{}", k.name);
                prop_assert_eq!(&masks, &want_masks, "{}", k.name);
                // The same masks from the sums alone, at this threshold and the edges.
                for t in [threshold, 0, 1, u16::MAX] {
                    let mut from_sums = vec![5u32; blocks];
                    (k.below)(&want, t, &mut from_sums);
                    let mut reference = vec![5u32; blocks];
                    below_scalar(&want, t, &mut reference);
                    prop_assert_eq!(&from_sums, &reference, "{} below {}", k.name, t);
                    for (b, m) in reference.iter().enumerate() {
                        for j in 0..32 {
                            prop_assert_eq!(m >> j & 1 == 1, want[b * 32 + j] < t);
                        }
                    }
                }
            }
        }

        #[test]
        fn every_table_kernel_matches_scalar_byte_for_byte(m in 1usize..50, dsub in 1usize..9, seed in any::<u64>()) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let centroids: Vec<f32> = (0..m * CENTROIDS * dsub).map(|_| rng.random_range(-2.0..2.0)).collect();
            let q: Vec<f32> = (0..m * dsub).map(|_| rng.random_range(-2.0..2.0)).collect();
            let mut want = vec![0u8; m * CENTROIDS];
            table_scalar(&centroids, &q, dsub, &mut want);
            // The reference's meaning: each sub-quantiser's nearest centroid
            // gets 0, and some entry of the widest spread gets MAX_ENTRY.
            for row in want.chunks_exact(CENTROIDS) {
                prop_assert_eq!(row.iter().min(), Some(&0));
            }
            prop_assert_eq!(want.iter().max(), Some(&MAX_ENTRY));
            for k in available() {
                let mut got = vec![1u8; m * CENTROIDS];
                (k.table)(&centroids, &q, dsub, &mut got);
                prop_assert_eq!(&got, &want, "{}", k.name);
            }
        }

        #[test]
        fn every_sq8x4_kernel_matches_its_sq8_bit_for_bit(n in 0usize..300, seed in any::<u64>()) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let codes: Vec<Vec<u8>> = (0..4).map(|_| (0..n).map(|_| rng.random()).collect()).collect();
            let q: Vec<f32> = (0..n).map(|_| rng.random_range(-10.0..270.0)).collect();
            let w: Vec<f32> = (0..n).map(|_| rng.random_range(0.0..2.0)).collect();
            let four = [&codes[0][..], &codes[1][..], &codes[2][..], &codes[3][..]];
            for k in available() {
                let got = (k.sq8x4)(four, &q, &w);
                for (g, c) in got.iter().zip(four) {
                    prop_assert_eq!(g.to_bits(), (k.sq8)(c, &q, &w).to_bits(), "{}", k.name);
                }
            }
        }

        #[test]
        fn every_sq8_kernel_matches_scalar(codes in proptest::collection::vec(any::<u8>(), 0..300), seed in any::<u64>()) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let q: Vec<f32> = codes.iter().map(|_| rng.random_range(-10.0..270.0)).collect();
            let w: Vec<f32> = codes.iter().map(|_| rng.random_range(0.0..2.0)).collect();
            let want = sq8_scalar(&codes, &q, &w);
            for k in available() {
                let got = (k.sq8)(&codes, &q, &w);
                prop_assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{}: {} vs {}", k.name, got, want);
            }
        }
    }

    #[test]
    fn the_scalar_block_reads_the_documented_layout() {
        // One pair: sub-quantiser 0 gives point j code j % 16, sub-quantiser 1 code 15 - j % 16.
        let mut codes = [0u8; 32];
        for j in 0..16 {
            codes[j] = (j as u8) | (((j as u8 + 1) % 16) << 4);
            codes[16 + j] = (15 - j as u8) | ((15 - (j as u8 + 1) % 16) << 4);
        }
        let mut lut = [0u8; 32];
        for c in 0..16 {
            lut[c] = c as u8; // sub-quantiser 0: entry = code
            lut[16 + c] = 100; // sub-quantiser 1: constant
        }
        let mut out = [0u16; 32];
        let mut mask = [0u32];
        block_scalar(&codes, &lut, 105, &mut out, &mut mask);
        assert_eq!(mask[0], 0x1f | (0xf << 16) | (1 << 31), "points 0-4, 16-19 and 31 sum below 105");
        for k in available() {
            let mut got = [0u16; 32];
            (k.block)(&codes, &lut, 105, &mut got, &mut mask);
            assert_eq!(got, out, "{}", k.name);
            assert_eq!(mask[0], 0x1f | (0xf << 16) | (1 << 31), "{}", k.name);
        }
        for j in 0..16 {
            assert_eq!(out[j], j as u16 + 100);
            assert_eq!(out[16 + j], ((j + 1) % 16) as u16 + 100);
        }
    }

    #[test]
    fn every_kernel_checks_sizes_before_any_read() {
        for k in available() {
            for (codes, lut, out) in [(64, 32, 32), (64, 64, 64), (48, 32, 32), (0, 0, 0)] {
                let r = std::panic::catch_unwind(|| (k.block)(&vec![0; codes], &vec![0; lut], 1, &mut vec![0; out], &mut vec![0; out / 32]));
                assert!(r.is_err(), "{}: {codes}/{lut}/{out} accepted", k.name);
            }
            let r = std::panic::catch_unwind(|| (k.sq8)(&[0; 9], &[0.0; 8], &[0.0; 8]));
            assert!(r.is_err(), "{}: sq8 accepted inputs of different lengths", k.name);
            let (a, b) = ([0u8; 8], [0u8; 9]);
            let r = std::panic::catch_unwind(|| (k.sq8x4)([&a, &a, &b, &a], &[0.0; 8], &[0.0; 8]));
            assert!(r.is_err(), "{}: sq8x4 accepted inputs of different lengths", k.name);
        }
    }
}
