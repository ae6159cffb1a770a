//! x86-64 tile kernels for the 32-value kinds: AVX-512 VNNI (`vpdpbusd`, 16 rows per
//! instruction), AVX2 (`vpmaddubsw` + `vpmaddwd`, two 8-row halves) and AVX-VNNI (`vpdpbusd`
//! on 256 bits, two 8-row halves). Each computes `MT`
//! activation rows against one 16-row tile over all blocks, keeping the `MT x 16` accumulators
//! in registers, so each weight block is loaded and unpacked once for `MT` tokens.
//!
//! Bounds, for every unsafe read below: the [`TileCall`] contract (`tile < p.tiles`,
//! `t0 + MT <= a.m`, `a.k == p.k`) keeps tile block indices below `p.tiles * p.nb`, for which
//! `PackedMatrix::pack` allocated the lines (64-byte aligned), masks and scales, and activation
//! block indices below `a.m * a.k / 32`, for which `QuantActs` holds values, scales and sums.

use core::arch::x86_64::*;

use super::{
    act4, dp_avx2, dp_lines_avx2, prefetch_ahead, spread_bits, store_avx2_half, store_vnni,
};
use crate::act::QuantActs;
use crate::blocks::IQ4_TABLE;
use crate::codes::{has_high_bit, has_min, lookup, offset_of, IQ4_TABLE_U, K_Q8_0};
use crate::matmul::TileCall;
use crate::pack::TILE;

/// AVX-512 VNNI: one [`TileCall`] of `MT` tokens.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, and `c` must meet the [`TileCall`] contract.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
pub(crate) unsafe fn tile_vnni<const MT: usize, const K: u8>(c: TileCall<'_>) {
    let (p, a, tile, t0) = (c.p, c.a, c.tile, c.t0);
    let nb = p.nb;
    let lpb = if K == K_Q8_0 { 8 } else { 4 };
    let off = offset_of(K);
    let nib = _mm512_set1_epi8(0x0F);
    let bit4 = _mm512_set1_epi8(0x10);
    // SAFETY: the table is 16 bytes.
    let table = _mm512_broadcast_i32x4(unsafe { load_table(&IQ4_TABLE_U) });
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); MT];
    let tb0 = tile * nb;
    for b in 0..nb {
        let tb = tb0 + b;
        prefetch_ahead(p, tb * lpb, lpb);
        let mut w = [zero; 8];
        // SAFETY: tile block `tb` is in bounds (module docs): its `lpb` aligned lines, 8 masks
        // (kinds with a fifth bit) and 16 scales and minimums (kinds with one) exist.
        let (dw, mw) = unsafe {
            let lines = p.qs.as_ptr().add(tb * lpb) as *const __m512i;
            if K == K_Q8_0 {
                for (h, wh) in w.iter_mut().enumerate() {
                    *wh = _mm512_load_si512(lines.add(h));
                }
            } else {
                for g in 0..4 {
                    let v = _mm512_load_si512(lines.add(g));
                    w[2 * g] = _mm512_and_si512(v, nib);
                    w[2 * g + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
                }
                if has_high_bit(K) {
                    let qh = p.qh.as_ptr().add(tb * 8);
                    for (h, wh) in w.iter_mut().enumerate() {
                        *wh = _mm512_or_si512(*wh, _mm512_maskz_mov_epi8(*qh.add(h), bit4));
                    }
                }
                if lookup(K) {
                    // The nibble's integer, made unsigned (`off` takes 128·Σx out below).
                    for wh in w.iter_mut() {
                        *wh = _mm512_shuffle_epi8(table, *wh);
                    }
                }
            }
            let scales = |v: &[u16]| {
                _mm512_cvtph_ps(_mm256_loadu_si256(
                    v.as_ptr().add(tb * TILE) as *const __m256i
                ))
            };
            let mw = if has_min(K) {
                scales(&p.m)
            } else {
                _mm512_setzero_ps()
            };
            (scales(&p.d), mw)
        };
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let ab = (t0 + t) * nb + b;
            // SAFETY: activation block `ab` is in bounds (module docs); `h < 8`.
            let x = |h: usize| _mm512_set1_epi32(unsafe { act4(a, ab, h) });
            let mut s0 = _mm512_dpbusd_epi32(zero, w[0], x(0));
            let mut s1 = _mm512_dpbusd_epi32(zero, w[1], x(1));
            s0 = _mm512_dpbusd_epi32(s0, w[2], x(2));
            s1 = _mm512_dpbusd_epi32(s1, w[3], x(3));
            s0 = _mm512_dpbusd_epi32(s0, w[4], x(4));
            s1 = _mm512_dpbusd_epi32(s1, w[5], x(5));
            s0 = _mm512_dpbusd_epi32(s0, w[6], x(6));
            s1 = _mm512_dpbusd_epi32(s1, w[7], x(7));
            let mut isum = _mm512_add_epi32(s0, s1);
            // SAFETY: activation block `ab` is in bounds (module docs).
            let (isum_a, d_a, s_a) = unsafe { act_sums(a, ab) };
            if off != 0 {
                isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(off * isum_a));
            }
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(d_a));
            *acc_t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, *acc_t);
            if has_min(K) {
                *acc_t = _mm512_fmadd_ps(mw, _mm512_set1_ps(s_a), *acc_t);
            }
        }
    }
    // SAFETY: AVX-512 F is enabled here; the rows' outputs are writable by the contract.
    unsafe { store_vnni(&acc, c) };
}

/// The 256-bit kernels of the 32-value kinds, one function per instruction set: two 8-row
/// halves per tile. `$signed_q8`: Q8_0's lines are turned back into signed bytes and IQ4_NL's
/// nibbles looked up as signed integers (and the offset is then not taken out); `$dot`: each row's integer dot of the block, over the
/// unpacked lines `w` and the activation operands `x(h)`. All else is the same code.
macro_rules! tile_256 {
    ($(#[$doc:meta])* $name:ident, $features:literal, $signed_q8:expr, |$w:ident, $x:ident| $dot:expr) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn $name<const MT: usize, const K: u8>(c: TileCall<'_>) {
            let (p, a, tile, t0) = (c.p, c.a, c.tile, c.t0);
            let nb = p.nb;
            let lpb = if K == K_Q8_0 { 8 } else { 4 };
            let signed = $signed_q8 && (K == K_Q8_0 || lookup(K));
            let off = if signed { 0 } else { offset_of(K) };
            // SAFETY: both tables are 16 bytes.
            let table = _mm256_broadcastsi128_si256(unsafe {
                if signed {
                    load_table(&IQ4_TABLE.map(|v| v as u8))
                } else {
                    load_table(&IQ4_TABLE_U)
                }
            });
            let nib = _mm256_set1_epi8(0x0F);
            let bit4 = _mm256_set1_epi8(0x10);
            let flip = _mm256_set1_epi8(-128);
            let zero = _mm256_setzero_si256();
            let tb0 = tile * nb;
            for half in 0..2 {
                let mut acc = [_mm256_setzero_ps(); MT];
                for b in 0..nb {
                    let tb = tb0 + b;
                    if half == 0 {
                        // The second half reads the lines the first brought in.
                        prefetch_ahead(p, tb * lpb, lpb);
                    }
                    let mut w = [zero; 8];
                    // SAFETY: tile block `tb` is in bounds (module docs): its `lpb` aligned
                    // lines, 8 masks (kinds with a fifth bit) and 16 scales and minimums (kinds
                    // with one) exist; each line's rows `8·half..8·half + 8` are its 32 bytes
                    // at `32·half`.
                    let (dw, mw) = unsafe {
                        let lines = p.qs.as_ptr().add(tb * lpb) as *const u8;
                        let line = |l: usize| {
                            _mm256_load_si256(lines.add(l * 64 + 32 * half) as *const __m256i)
                        };
                        if K == K_Q8_0 {
                            for (h, wh) in w.iter_mut().enumerate() {
                                *wh = if signed {
                                    _mm256_xor_si256(line(h), flip)
                                } else {
                                    line(h)
                                };
                            }
                        } else {
                            for g in 0..4 {
                                let v = line(g);
                                w[2 * g] = _mm256_and_si256(v, nib);
                                w[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
                            }
                            if has_high_bit(K) {
                                let qh = p.qh.as_ptr().add(tb * 8);
                                for (h, wh) in w.iter_mut().enumerate() {
                                    let set = spread_bits((*qh.add(h) >> (32 * half)) as u32);
                                    *wh = _mm256_or_si256(*wh, _mm256_and_si256(set, bit4));
                                }
                            }
                            if lookup(K) {
                                for wh in w.iter_mut() {
                                    *wh = _mm256_shuffle_epi8(table, *wh);
                                }
                            }
                        }
                        let scales = |v: &[u16]| {
                            let at = v.as_ptr().add(tb * TILE + 8 * half);
                            _mm256_cvtph_ps(_mm_loadu_si128(at as *const __m128i))
                        };
                        let mw = if has_min(K) {
                            scales(&p.m)
                        } else {
                            _mm256_setzero_ps()
                        };
                        (scales(&p.d), mw)
                    };
                    for (t, acc_t) in acc.iter_mut().enumerate() {
                        let ab = (t0 + t) * nb + b;
                        // SAFETY: activation block `ab` is in bounds (module docs); `h < 8`.
                        let x = |h: usize| _mm256_set1_epi32(unsafe { act4(a, ab, h) });
                        let mut isum = {
                            let $w = &w;
                            let $x = &x;
                            $dot
                        };
                        // SAFETY: activation block `ab` is in bounds (module docs).
                        let (isum_a, d_a, s_a) = unsafe { act_sums(a, ab) };
                        if off != 0 {
                            isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(off * isum_a));
                        }
                        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(d_a));
                        *acc_t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, *acc_t);
                        if has_min(K) {
                            *acc_t = _mm256_fmadd_ps(mw, _mm256_set1_ps(s_a), *acc_t);
                        }
                    }
                }
                // SAFETY: AVX2 is enabled here; the rows' outputs are writable by the contract.
                unsafe { store_avx2_half(&acc, c, half) };
            }
        }
    };
}

tile_256!(
    /// AVX2 + FMA: same contract as [`tile_vnni`], two 8-row halves per tile. Q8_0 and IQ4_NL
    /// run on signed weights (the sign trick: `|w| <= 127` and Q8_0 activations `|x| <= 127`); the 4- and 5-bit kinds add several lines' pair sums in
    /// 16-bit lanes before widening.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; otherwise as [`tile_vnni`].
    tile_avx2,
    "avx2,fma,f16c",
    true,
    |w, x| {
        let ones = _mm256_set1_epi16(1);
        if K == K_Q8_0 || lookup(K) {
            let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for h in (0..8).step_by(2) {
                let (x0, x1) = (x(h), x(h + 1));
                s0 = dp_avx2(s0, _mm256_abs_epi8(w[h]), _mm256_sign_epi8(x0, w[h]), ones);
                s1 = dp_avx2(
                    s1,
                    _mm256_abs_epi8(w[h + 1]),
                    _mm256_sign_epi8(x1, w[h + 1]),
                    ones,
                );
            }
            _mm256_add_epi32(s0, s1)
        } else {
            // 4-bit weights: all 8 lines' pair sums fit one i16 lane (16 products of at most
            // 15 · 127); 5-bit ones: 4 lines (8 products of at most 31 · 127).
            let group = if has_high_bit(K) { 4 } else { 8 };
            dp_lines_avx2(w, 0, group, x, ones)
        }
    }
);

tile_256!(
    /// AVX-VNNI: [`tile_avx2`]'s two 8-row halves with [`tile_vnni`]'s one `vpdpbusd` per
    /// line (256-bit, on CPUs without AVX-512): the weights as packed, unsigned, with the kind's
    /// offset taken out of the integer sum afterwards, so Q8_0 needs no sign trick and 4-bit
    /// lines no 16-bit grouping. The integers, and so every output, are the other kernels'.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA, F16C and AVX-VNNI; otherwise as [`tile_vnni`].
    tile_avxvnni,
    "avx2,fma,f16c,avxvnni",
    false,
    |w, x| {
        let zero = _mm256_setzero_si256();
        let mut s0 = _mm256_dpbusd_avx_epi32(zero, w[0], x(0));
        let mut s1 = _mm256_dpbusd_avx_epi32(zero, w[1], x(1));
        s0 = _mm256_dpbusd_avx_epi32(s0, w[2], x(2));
        s1 = _mm256_dpbusd_avx_epi32(s1, w[3], x(3));
        s0 = _mm256_dpbusd_avx_epi32(s0, w[4], x(4));
        s1 = _mm256_dpbusd_avx_epi32(s1, w[5], x(5));
        s0 = _mm256_dpbusd_avx_epi32(s0, w[6], x(6));
        s1 = _mm256_dpbusd_avx_epi32(s1, w[7], x(7));
        _mm256_add_epi32(s0, s1)
    }
);

/// A 16-byte table as one 128-bit register.
///
/// # Safety
/// None beyond SSE2, part of x86-64 (the reference is 16 readable bytes).
#[inline(always)]
pub(crate) unsafe fn load_table(t: &[u8; 16]) -> __m128i {
    // SAFETY: `t` is 16 bytes; an unaligned load reads exactly those.
    unsafe { _mm_loadu_si128(t.as_ptr().cast()) }
}

/// The integer sum, scale and scaled sum of activation block `ab`.
///
/// # Safety
/// `ab` must be a block of `a` (`ab < a.m * a.k / 32`).
#[inline(always)]
unsafe fn act_sums(a: &QuantActs, ab: usize) -> (i32, f32, f32) {
    // SAFETY: `a` holds one sum, scale and scaled sum per block (the caller's contract).
    unsafe {
        (
            *a.isum.get_unchecked(ab),
            *a.d.get_unchecked(ab),
            *a.s.get_unchecked(ab),
        )
    }
}
