//! x86-64 tile kernels for the K-quants (Q4_K, Q5_K, Q6_K) against Q8_K activations, on the
//! same packed layout as [`super::x86`]: per 32-value block, the integer dot of each of the 16
//! rows (one `vpdpbusd` chain, or `vpmaddubsw` + `vpmaddwd` on AVX2) is multiplied by the row's
//! integer scale and summed over the superblock in integers, exactly as ggml does; the float
//! scales apply once per superblock.

use core::arch::x86_64::*;

use super::act::QuantActs;
use super::codes::{K_Q4K, K_Q6K};
use super::kblocks::QK_K;
use super::pack::{PackedMatrix, TILE};
use super::x86::{dp_avx2, spread_bits, store_avx2_half, store_vnni};

/// Blocks of 32 per superblock.
const BPS: usize = QK_K / 32;

/// AVX-512 VNNI: rows `t0..t0+MT` of `a` (quantized as Q8_K) against tile `tile`; writes
/// `cols` (≤ 16) outputs of each row at `out + row * ldo`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI; `p` must hold a K-quant matching `K`,
/// `tile < p.tiles`, `t0 + MT <= a.m`, `a.k == p.k`, `a` quantized by
/// [`QuantActs::quantize_k_into`], and `out + row * ldo .. + cols` writable for every row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
pub(crate) unsafe fn tile_vnni_k<const MT: usize, const K: u8>(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    let nb = p.nb;
    let nsb = nb / BPS;
    let nib = _mm512_set1_epi8(0x0F);
    let bit4 = _mm512_set1_epi8(0x10);
    let bit5 = _mm512_set1_epi8(0x20);
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); MT];
    let tb0 = tile * nb;
    // SAFETY (all pointer arithmetic below): tile block and superblock indices stay below what
    // `PackedMatrix::pack` allocated for `p.tiles` tiles; activation indices below `a.m * a.k`
    // (and its per-16 and per-256 arrays) by the caller's contract.
    let qs = p.qs.as_ptr().add(tb0 * 4) as *const __m512i;
    let aq = a.q.as_ptr();
    let bs16 = a.bs16.as_ptr();
    let spr = if K == K_Q6K { 2 } else { 1 };
    for sb in 0..nsb {
        let mut isum = [zero; MT];
        for j in 0..BPS {
            let b = sb * BPS + j;
            let mut w = [zero; 8];
            for g in 0..4 {
                let v = _mm512_load_si512(qs.add(b * 4 + g));
                w[2 * g] = _mm512_and_si512(v, nib);
                w[2 * g + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
            }
            if K != K_Q4K {
                let qh = p.qh.as_ptr().add((tb0 + b) * 8);
                for (h, wh) in w.iter_mut().enumerate() {
                    *wh = _mm512_or_si512(*wh, _mm512_maskz_mov_epi8(*qh.add(h), bit4));
                }
            }
            if K == K_Q6K {
                let qh2 = p.qh2.as_ptr().add((tb0 + b) * 8);
                for (h, wh) in w.iter_mut().enumerate() {
                    *wh = _mm512_or_si512(*wh, _mm512_maskz_mov_epi8(*qh2.add(h), bit5));
                }
            }
            let ks = p.ks.as_ptr().add((tb0 + b) * spr * TILE);
            let s0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(ks as *const __m128i));
            let s1 = if K == K_Q6K {
                _mm512_cvtepi8_epi32(_mm_loadu_si128(ks.add(TILE) as *const __m128i))
            } else {
                zero
            };
            for (t, isum_t) in isum.iter_mut().enumerate() {
                let ab = (t0 + t) * nb + b;
                let ap = aq.add(ab * 32) as *const i32;
                let x = |h: usize| _mm512_set1_epi32(ap.add(h).read_unaligned());
                let (bs_lo, bs_hi) = (*bs16.add(2 * ab), *bs16.add(2 * ab + 1));
                let mut lo = _mm512_dpbusd_epi32(zero, w[0], x(0));
                let mut hi = _mm512_dpbusd_epi32(zero, w[4], x(4));
                lo = _mm512_dpbusd_epi32(lo, w[1], x(1));
                hi = _mm512_dpbusd_epi32(hi, w[5], x(5));
                lo = _mm512_dpbusd_epi32(lo, w[2], x(2));
                hi = _mm512_dpbusd_epi32(hi, w[6], x(6));
                lo = _mm512_dpbusd_epi32(lo, w[3], x(3));
                hi = _mm512_dpbusd_epi32(hi, w[7], x(7));
                if K == K_Q6K {
                    // Offset 32 per 16-value group, each group with its own scale.
                    lo = _mm512_sub_epi32(lo, _mm512_set1_epi32(32 * bs_lo));
                    hi = _mm512_sub_epi32(hi, _mm512_set1_epi32(32 * bs_hi));
                    let v =
                        _mm512_add_epi32(_mm512_mullo_epi32(lo, s0), _mm512_mullo_epi32(hi, s1));
                    *isum_t = _mm512_add_epi32(*isum_t, v);
                } else {
                    let dot = _mm512_add_epi32(lo, hi);
                    *isum_t = _mm512_add_epi32(*isum_t, _mm512_mullo_epi32(dot, s0));
                }
            }
        }
        let at = (tile * nsb + sb) * TILE;
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(p.d.as_ptr().add(at) as *const __m256i));
        // Q4_K/Q5_K: the minimums' integer term, Σ_j mn_j · bsum32_j, two blocks per vpdpwssd.
        let (mut mins, mut mw) = ([zero; 4], _mm512_setzero_ps());
        if K != K_Q6K {
            let km = p.kmin.as_ptr().add((tile * nsb + sb) * 128) as *const __m512i;
            for (jp, v) in mins.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(km.add(jp));
            }
            mw = _mm512_cvtph_ps(_mm256_loadu_si256(p.m.as_ptr().add(at) as *const __m256i));
        }
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let ad = _mm512_set1_ps(*a.dk.get_unchecked((t0 + t) * nsb + sb));
            *acc_t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, ad), *acc_t);
            if K != K_Q6K {
                let bp = a.bsp.as_ptr().add(((t0 + t) * nsb + sb) * 4);
                let mut msum = zero;
                for (jp, v) in mins.iter().enumerate() {
                    msum = _mm512_dpwssd_epi32(msum, *v, _mm512_set1_epi32(*bp.add(jp)));
                }
                *acc_t = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(mw, ad), *acc_t);
            }
        }
    }
    store_vnni(&acc, out, t0, ldo, cols);
}

/// AVX2 + FMA: same contract as [`tile_vnni_k`], two 8-row halves per tile.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; otherwise as [`tile_vnni_k`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn tile_avx2_k<const MT: usize, const K: u8>(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    let nb = p.nb;
    let nsb = nb / BPS;
    let nib = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let zero = _mm256_setzero_si256();
    let tb0 = tile * nb;
    // SAFETY: as in `tile_vnni_k`.
    let qs = p.qs.as_ptr().add(tb0 * 4) as *const u8;
    let aq = a.q.as_ptr();
    let bs16 = a.bs16.as_ptr();
    let spr = if K == K_Q6K { 2 } else { 1 };
    for half in 0..2 {
        let mut acc = [_mm256_setzero_ps(); MT];
        for sb in 0..nsb {
            let mut isum = [zero; MT];
            for j in 0..BPS {
                let b = sb * BPS + j;
                let line = |l: usize| {
                    _mm256_load_si256(qs.add((b * 4 + l) * 64 + 32 * half) as *const __m256i)
                };
                let mut w = [zero; 8];
                for g in 0..4 {
                    let v = line(g);
                    w[2 * g] = _mm256_and_si256(v, nib);
                    w[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
                }
                if K != K_Q4K {
                    let qh = p.qh.as_ptr().add((tb0 + b) * 8);
                    for (h, wh) in w.iter_mut().enumerate() {
                        let set = spread_bits((*qh.add(h) >> (32 * half)) as u32);
                        *wh = _mm256_or_si256(*wh, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
                    }
                }
                if K == K_Q6K {
                    let qh2 = p.qh2.as_ptr().add((tb0 + b) * 8);
                    for (h, wh) in w.iter_mut().enumerate() {
                        let set = spread_bits((*qh2.add(h) >> (32 * half)) as u32);
                        *wh = _mm256_or_si256(*wh, _mm256_and_si256(set, _mm256_set1_epi8(0x20)));
                    }
                }
                let ks = p.ks.as_ptr().add((tb0 + b) * spr * TILE + 8 * half);
                let s0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(ks as *const __m128i));
                let s1 = if K == K_Q6K {
                    _mm256_cvtepi8_epi32(_mm_loadl_epi64(ks.add(TILE) as *const __m128i))
                } else {
                    zero
                };
                for (t, isum_t) in isum.iter_mut().enumerate() {
                    let ab = (t0 + t) * nb + b;
                    let ap = aq.add(ab * 32) as *const i32;
                    let x = |h: usize| _mm256_set1_epi32(ap.add(h).read_unaligned());
                    let (bs_lo, bs_hi) = (*bs16.add(2 * ab), *bs16.add(2 * ab + 1));
                    let mut lo = dp_avx2(zero, w[0], x(0), ones);
                    let mut hi = dp_avx2(zero, w[4], x(4), ones);
                    lo = dp_avx2(lo, w[1], x(1), ones);
                    hi = dp_avx2(hi, w[5], x(5), ones);
                    lo = dp_avx2(lo, w[2], x(2), ones);
                    hi = dp_avx2(hi, w[6], x(6), ones);
                    lo = dp_avx2(lo, w[3], x(3), ones);
                    hi = dp_avx2(hi, w[7], x(7), ones);
                    if K == K_Q6K {
                        lo = _mm256_sub_epi32(lo, _mm256_set1_epi32(32 * bs_lo));
                        hi = _mm256_sub_epi32(hi, _mm256_set1_epi32(32 * bs_hi));
                        let v = _mm256_add_epi32(
                            _mm256_mullo_epi32(lo, s0),
                            _mm256_mullo_epi32(hi, s1),
                        );
                        *isum_t = _mm256_add_epi32(*isum_t, v);
                    } else {
                        let dot = _mm256_add_epi32(lo, hi);
                        *isum_t = _mm256_add_epi32(*isum_t, _mm256_mullo_epi32(dot, s0));
                    }
                }
            }
            let at = (tile * nsb + sb) * TILE + 8 * half;
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(p.d.as_ptr().add(at) as *const __m128i));
            // Q4_K/Q5_K's minimum term, two blocks per vpmaddwd (rows 8·half.. of each pair).
            let (mut mins, mut mw) = ([zero; 4], _mm256_setzero_ps());
            if K != K_Q6K {
                let km = p.kmin.as_ptr().add((tile * nsb + sb) * 128 + 16 * half);
                for (jp, v) in mins.iter_mut().enumerate() {
                    *v = _mm256_loadu_si256(km.add(32 * jp) as *const __m256i);
                }
                mw = _mm256_cvtph_ps(_mm_loadu_si128(p.m.as_ptr().add(at) as *const __m128i));
            }
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let ad = _mm256_set1_ps(*a.dk.get_unchecked((t0 + t) * nsb + sb));
                *acc_t =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, ad), *acc_t);
                if K != K_Q6K {
                    let bp = a.bsp.as_ptr().add(((t0 + t) * nsb + sb) * 4);
                    let mut msum = zero;
                    for (jp, v) in mins.iter().enumerate() {
                        let pr = _mm256_madd_epi16(*v, _mm256_set1_epi32(*bp.add(jp)));
                        msum = _mm256_add_epi32(msum, pr);
                    }
                    *acc_t =
                        _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(mw, ad), *acc_t);
                }
            }
        }
        store_avx2_half(&acc, out, t0, ldo, cols, half);
    }
}
