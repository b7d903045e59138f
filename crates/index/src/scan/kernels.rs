//! The quantised-scan kernels: 4-bit fast-scan (table lookups sixteen at a
//! time with a byte shuffle, as in Faiss's `PQ…x4fs` and André et al.'s
//! "Quicker ADC") and the 8-bit scalar-quantised distance of the re-rank
//! stage. A scalar reference and an AVX2 version of each; the set is chosen
//! once from the CPU (and `VECTORWISE_SIMD=scalar` forces the reference).
//!
//! Block layout (see [`super::pack_block`]): 32 points per block; for each
//! pair of sub-quantisers `(2p, 2p+1)` 32 bytes, byte `j < 16` holding the
//! codes of sub-quantiser `2p` for points `j` (low nibble) and `j + 16` (high
//! nibble), byte `16 + j` the same for sub-quantiser `2p + 1`. The query's
//! table is laid out the same way: 16 entries of `2p`, then 16 of `2p + 1`, so
//! one 256-bit shuffle looks up 64 codes.

use std::sync::OnceLock;

/// Sums, for each of the 32 points of one block, its table entries. `codes`
/// and `lut` are `pairs × 32` bytes.
pub type BlockScanFn = fn(codes: &[u8], lut: &[u8], out: &mut [u16; 32]);
/// `Σ w_i (q_i − c_i)²` over 8-bit codes `c`.
pub type Sq8Fn = fn(codes: &[u8], q: &[f32], w: &[f32]) -> f32;

#[derive(Clone, Copy, Debug)]
pub struct ScanKernels {
    pub name: &'static str,
    pub block: BlockScanFn,
    pub sq8: Sq8Fn,
}

pub const SCALAR: ScanKernels = ScanKernels { name: "scalar", block: block_scalar, sq8: sq8_scalar };

/// Every kernel set this CPU can run, best last.
pub fn available() -> Vec<ScanKernels> {
    #[allow(unused_mut)]
    let mut sets = vec![SCALAR];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        sets.push(ScanKernels { name: "avx2+fma", block: x86::block_avx2, sq8: x86::sq8_avx2 });
    }
    sets
}

/// The set in use: the best available, or scalar when `VECTORWISE_SIMD=scalar`.
pub fn scan_kernels() -> &'static ScanKernels {
    static CHOSEN: OnceLock<ScanKernels> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let sets = available();
        let wanted = std::env::var("VECTORWISE_SIMD").ok();
        wanted
            .and_then(|w| sets.iter().find(|k| k.name.starts_with(w.as_str())).copied())
            .unwrap_or_else(|| *sets.last().expect("scalar is always available"))
    })
}

fn check_block(codes: &[u8], lut: &[u8]) {
    assert!(codes.len() == lut.len() && codes.len() % 32 == 0, "block and table sizes disagree");
}

pub fn block_scalar(codes: &[u8], lut: &[u8], out: &mut [u16; 32]) {
    check_block(codes, lut);
    *out = [0; 32];
    for (c, l) in codes.chunks_exact(32).zip(lut.chunks_exact(32)) {
        for j in 0..16 {
            let (a, b) = (c[j], c[16 + j]);
            let lo = l[(a & 15) as usize] as u16 + l[16 + (b & 15) as usize] as u16;
            let hi = l[(a >> 4) as usize] as u16 + l[16 + (b >> 4) as usize] as u16;
            out[j] = out[j].wrapping_add(lo);
            out[16 + j] = out[16 + j].wrapping_add(hi);
        }
    }
}

pub fn sq8_scalar(codes: &[u8], q: &[f32], w: &[f32]) -> f32 {
    assert!(codes.len() == q.len() && q.len() == w.len(), "kernel inputs differ in length");
    codes.iter().zip(q).zip(w).map(|((&c, &q), &w)| w * (q - c as f32) * (q - c as f32)).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::check_block;
    use std::arch::x86_64::*;

    pub fn block_avx2(codes: &[u8], lut: &[u8], out: &mut [u16; 32]) {
        check_block(codes, lut);
        // SAFETY: handed out by `available()` only after avx2 was detected;
        // the sizes were checked above.
        unsafe { block_avx2_impl(codes, lut, out) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn block_avx2_impl(codes: &[u8], lut: &[u8], out: &mut [u16; 32]) {
        let nibble = _mm256_set1_epi8(0x0f);
        let low_byte = _mm256_set1_epi16(0x00ff);
        let (mut lo_even, mut lo_odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let (mut hi_even, mut hi_odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for p in 0..codes.len() / 32 {
            // SAFETY: p * 32 + 32 <= len for both slices (equal lengths, multiple of 32).
            let (c, l) = unsafe {
                (
                    _mm256_loadu_si256(codes.as_ptr().add(p * 32).cast()),
                    _mm256_loadu_si256(lut.as_ptr().add(p * 32).cast()),
                )
            };
            let lo = _mm256_and_si256(c, nibble);
            let hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble);
            let a = _mm256_shuffle_epi8(l, lo);
            let b = _mm256_shuffle_epi8(l, hi);
            lo_even = _mm256_add_epi16(lo_even, _mm256_and_si256(a, low_byte));
            lo_odd = _mm256_add_epi16(lo_odd, _mm256_srli_epi16(a, 8));
            hi_even = _mm256_add_epi16(hi_even, _mm256_and_si256(b, low_byte));
            hi_odd = _mm256_add_epi16(hi_odd, _mm256_srli_epi16(b, 8));
        }
        // Lane half 0 holds sub-quantiser 2p, half 1 sub-quantiser 2p+1, for
        // the same points: add the halves, then interleave even and odd points.
        let fold = |v: __m256i| _mm_add_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let (le, lo_) = (fold(lo_even), fold(lo_odd));
        let (he, ho) = (fold(hi_even), fold(hi_odd));
        let p = out.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `out` is 32 u16 = four 16-byte stores.
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
        fn every_block_kernel_matches_scalar(pairs in 1usize..40, seed in any::<u64>()) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let codes: Vec<u8> = (0..pairs * 32).map(|_| rng.random()).collect();
            let lut: Vec<u8> = (0..pairs * 32).map(|_| rng.random()).collect();
            let mut want = [0u16; 32];
            block_scalar(&codes, &lut, &mut want);
            for k in available() {
                let mut got = [0u16; 32];
                (k.block)(&codes, &lut, &mut got);
                prop_assert_eq!(got, want, "{}", k.name);
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
        block_scalar(&codes, &lut, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], j as u16 + 100);
            assert_eq!(out[16 + j], ((j + 1) % 16) as u16 + 100);
        }
    }

    #[test]
    #[should_panic(expected = "sizes disagree")]
    fn mismatched_block_sizes_panic_before_any_read() {
        let mut out = [0u16; 32];
        for k in available() {
            (k.block)(&[0; 64], &[0; 32], &mut out);
        }
    }
}
