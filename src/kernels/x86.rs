//! x86-64 tile kernels: AVX-512 VNNI (`vpdpbusd`, 16 rows per instruction) and AVX2
//! (`vpmaddubsw` + `vpmaddwd`, two 8-row halves). Each computes `MT` activation rows against
//! one 16-row tile over all blocks, keeping the `MT x 16` accumulators in registers, so each
//! weight block is loaded and unpacked once for `MT` tokens.

use core::arch::x86_64::*;

use super::act::QuantActs;
use super::codes::{has_high_bit, has_min, offset_of, K_Q8_0};
use super::pack::{PackedMatrix, TILE};

/// AVX-512 VNNI: rows `t0..t0+MT` of `a` against tile `tile`; writes `cols` (≤ 16) outputs of
/// each row at `out + row * ldo`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI; `tile < p.tiles`, `t0 + MT <= a.m`, `a.k == p.k`,
/// and `out + row * ldo .. + cols` must be writable for every row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
pub(crate) unsafe fn tile_vnni<const MT: usize, const K: u8>(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    let nb = p.nb;
    let lpb = if K == K_Q8_0 { 8 } else { 4 };
    let off = offset_of(K);
    let nib = _mm512_set1_epi8(0x0F);
    let bit4 = _mm512_set1_epi8(0x10);
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); MT];
    let tb0 = tile * nb;
    // SAFETY (all pointer arithmetic below): tile block indices stay below `p.tiles * nb`, whose
    // lines, masks and scales `PackedMatrix::pack` allocated; activation indices stay below
    // `a.m * a.k` by the caller's contract.
    let qs = p.qs.as_ptr().add(tb0 * lpb) as *const __m512i;
    let dp = p.d.as_ptr().add(tb0 * TILE);
    let aq = a.q.as_ptr();
    for b in 0..nb {
        let mut w = [zero; 8];
        if K == K_Q8_0 {
            for (h, wh) in w.iter_mut().enumerate() {
                *wh = _mm512_load_si512(qs.add(b * 8 + h));
            }
        } else {
            for g in 0..4 {
                let v = _mm512_load_si512(qs.add(b * 4 + g));
                w[2 * g] = _mm512_and_si512(v, nib);
                w[2 * g + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
            }
            if has_high_bit(K) {
                let qh = p.qh.as_ptr().add((tb0 + b) * 8);
                for (h, wh) in w.iter_mut().enumerate() {
                    *wh = _mm512_or_si512(*wh, _mm512_maskz_mov_epi8(*qh.add(h), bit4));
                }
            }
        }
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(dp.add(b * TILE) as *const __m256i));
        let mw = if has_min(K) {
            _mm512_cvtph_ps(_mm256_loadu_si256(
                p.m.as_ptr().add((tb0 + b) * TILE) as *const __m256i
            ))
        } else {
            _mm512_setzero_ps()
        };
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let row = t0 + t;
            let ab = row * nb + b;
            let ap = aq.add(ab * 32) as *const i32;
            let x = |h: usize| _mm512_set1_epi32(ap.add(h).read_unaligned());
            let mut s0 = _mm512_dpbusd_epi32(zero, w[0], x(0));
            let mut s1 = _mm512_dpbusd_epi32(zero, w[1], x(1));
            s0 = _mm512_dpbusd_epi32(s0, w[2], x(2));
            s1 = _mm512_dpbusd_epi32(s1, w[3], x(3));
            s0 = _mm512_dpbusd_epi32(s0, w[4], x(4));
            s1 = _mm512_dpbusd_epi32(s1, w[5], x(5));
            s0 = _mm512_dpbusd_epi32(s0, w[6], x(6));
            s1 = _mm512_dpbusd_epi32(s1, w[7], x(7));
            let mut isum = _mm512_add_epi32(s0, s1);
            if off != 0 {
                isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(off * *a.isum.get_unchecked(ab)));
            }
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(*a.d.get_unchecked(ab)));
            *acc_t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, *acc_t);
            if has_min(K) {
                *acc_t = _mm512_fmadd_ps(mw, _mm512_set1_ps(*a.s.get_unchecked(ab)), *acc_t);
            }
        }
    }
    store_vnni(&acc, out, t0, ldo, cols);
}

/// Stores the first `cols` (≤ 16) lanes of each row's accumulator at `out + (t0 + t) * ldo`.
///
/// # Safety
/// AVX-512 F; those `cols` floats of every row must be writable.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn store_vnni(acc: &[__m512], out: *mut f32, t0: usize, ldo: usize, cols: usize) {
    let mask: __mmask16 = if cols >= TILE {
        0xFFFF
    } else {
        ((1u32 << cols) - 1) as u16
    };
    for (t, acc_t) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(out.add((t0 + t) * ldo), mask, *acc_t);
    }
}

/// Stores lanes `8·half ..` of the tile's first `cols` columns (AVX2 half tiles).
///
/// # Safety
/// AVX2; the stored floats of every row must be writable.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn store_avx2_half(
    acc: &[__m256],
    out: *mut f32,
    t0: usize,
    ldo: usize,
    cols: usize,
    half: usize,
) {
    let c0 = 8 * half;
    for (t, acc_t) in acc.iter().enumerate() {
        let dst = out.add((t0 + t) * ldo + c0);
        if cols >= c0 + 8 {
            _mm256_storeu_ps(dst, *acc_t);
        } else if cols > c0 {
            let mut tmp = [0f32; 8];
            _mm256_storeu_ps(tmp.as_mut_ptr(), *acc_t);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, cols - c0);
        }
    }
}

/// Spreads 32 mask bits over 32 bytes: byte `i` is `0xFF` when bit `i` is set.
///
/// # Safety
/// AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn spread_bits(bits: u32) -> __m256i {
    let shuf = _mm256_setr_epi64x(
        0,
        0x0101_0101_0101_0101,
        0x0202_0202_0202_0202,
        0x0303_0303_0303_0303,
    );
    let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let v = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel)
}

/// `u8 x i8` dot of four bytes per 32-bit lane, added to `acc` (AVX2 has no `vpdpbusd`). Each
/// pair of products must fit an `i16`: true for 4/5-bit weights and for Q8_0 handled with the
/// sign trick.
#[inline(always)]
pub(crate) unsafe fn dp_avx2(acc: __m256i, w: __m256i, x: __m256i, ones: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones))
}

/// AVX2 + FMA: same contract as [`tile_vnni`], two 8-row halves per tile.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; otherwise as [`tile_vnni`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn tile_avx2<const MT: usize, const K: u8>(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    let nb = p.nb;
    let lpb = if K == K_Q8_0 { 8 } else { 4 };
    // Q8_0 runs on signed weights (sign trick), so no offset correction for it here.
    let off = if K == K_Q8_0 { 0 } else { offset_of(K) };
    let nib = _mm256_set1_epi8(0x0F);
    let bit4 = _mm256_set1_epi8(0x10);
    let flip = _mm256_set1_epi8(-128);
    let ones = _mm256_set1_epi16(1);
    let zero = _mm256_setzero_si256();
    let tb0 = tile * nb;
    // SAFETY: as in `tile_vnni`.
    let qs = p.qs.as_ptr().add(tb0 * lpb) as *const u8;
    let aq = a.q.as_ptr();
    for half in 0..2 {
        let mut acc = [_mm256_setzero_ps(); MT];
        for b in 0..nb {
            // Weights of rows 8*half..8*half+8: 32 bytes at offset 32*half of each line.
            let line = |l: usize| {
                _mm256_load_si256(qs.add((b * lpb + l) * 64 + 32 * half) as *const __m256i)
            };
            let mut w = [zero; 8];
            if K == K_Q8_0 {
                for (h, wh) in w.iter_mut().enumerate() {
                    *wh = _mm256_xor_si256(line(h), flip);
                }
            } else {
                for g in 0..4 {
                    let v = line(g);
                    w[2 * g] = _mm256_and_si256(v, nib);
                    w[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
                }
                if has_high_bit(K) {
                    let qh = p.qh.as_ptr().add((tb0 + b) * 8);
                    for (h, wh) in w.iter_mut().enumerate() {
                        let set = spread_bits((*qh.add(h) >> (32 * half)) as u32);
                        *wh = _mm256_or_si256(*wh, _mm256_and_si256(set, bit4));
                    }
                }
            }
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(
                p.d.as_ptr().add((tb0 + b) * TILE + 8 * half) as *const __m128i,
            ));
            let mw = if has_min(K) {
                _mm256_cvtph_ps(_mm_loadu_si128(
                    p.m.as_ptr().add((tb0 + b) * TILE + 8 * half) as *const __m128i,
                ))
            } else {
                _mm256_setzero_ps()
            };
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let ab = (t0 + t) * nb + b;
                let ap = aq.add(ab * 32) as *const i32;
                let mut s0 = zero;
                let mut s1 = zero;
                for h in (0..8).step_by(2) {
                    let x0 = _mm256_set1_epi32(ap.add(h).read_unaligned());
                    let x1 = _mm256_set1_epi32(ap.add(h + 1).read_unaligned());
                    if K == K_Q8_0 {
                        s0 = dp_avx2(s0, _mm256_abs_epi8(w[h]), _mm256_sign_epi8(x0, w[h]), ones);
                        s1 = dp_avx2(
                            s1,
                            _mm256_abs_epi8(w[h + 1]),
                            _mm256_sign_epi8(x1, w[h + 1]),
                            ones,
                        );
                    } else {
                        s0 = dp_avx2(s0, w[h], x0, ones);
                        s1 = dp_avx2(s1, w[h + 1], x1, ones);
                    }
                }
                let mut isum = _mm256_add_epi32(s0, s1);
                if off != 0 {
                    isum =
                        _mm256_sub_epi32(isum, _mm256_set1_epi32(off * *a.isum.get_unchecked(ab)));
                }
                let scale = _mm256_mul_ps(dw, _mm256_set1_ps(*a.d.get_unchecked(ab)));
                *acc_t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, *acc_t);
                if has_min(K) {
                    *acc_t = _mm256_fmadd_ps(mw, _mm256_set1_ps(*a.s.get_unchecked(ab)), *acc_t);
                }
            }
        }
        store_avx2_half(&acc, out, t0, ldo, cols, half);
    }
}
