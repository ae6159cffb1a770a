//! x86-64 tile kernels for the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) against Q8_K
//! activations, on the same packed layout as [`super::tiles`]: per 32-value block (or each
//! half of it, for the kinds with a scale per 16 values), the integer dot of each of the 16
//! rows (one `vpdpbusd` chain, or `vpmaddubsw` + `vpmaddwd` on AVX2) is multiplied by the row's
//! integer scale and summed over the superblock in integers, exactly as ggml does; the float
//! scales apply once per superblock.
//!
//! Bounds, for every unsafe read below: the [`TileCall`] contract (`p` a K-quant matching `K`,
//! `tile < p.tiles`, `t0 + MT <= a.m`, `a.k == p.k`, `a` quantized as Q8_K) keeps tile block
//! and superblock indices below what `PackedMatrix::pack` allocated for `p.tiles` tiles (lines,
//! bit planes, integer scales and minimums, superblock scales), and activation indices below
//! what `QuantActs::quantize_k_into` filled for `a.m` rows (values, per-16 sums, pairs of
//! per-32 sums, superblock scales).

use core::arch::x86_64::*;

use super::tiles::load_table;
use super::{
    act4, dp_avx2, dp_lines_avx2, prefetch_ahead, spread_bits, store_avx2_half, store_vnni,
};
use crate::blocks::IQ4_TABLE;
use crate::codes::{
    k_has_min, k_lines, k_lookup, k_min_pairs, k_offset, k_scale_per_16, k_two_bit, IQ4_TABLE_U,
    K_Q2K, K_Q3K, K_Q5K, K_Q6K,
};
use crate::kblocks::QK_K;
use crate::matmul::TileCall;
use crate::pack::TILE;

/// Blocks of 32 per superblock.
const BPS: usize = QK_K / 32;

/// AVX-512 VNNI: one [`TileCall`] of `MT` tokens on a K-quant (`K`).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, `c` must meet the [`TileCall`] contract, and its
/// weights must be of kind `K`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
pub(crate) unsafe fn tile_vnni_k<const MT: usize, const K: u8>(c: TileCall<'_>) {
    let (p, a, tile, t0) = (c.p, c.a, c.tile, c.t0);
    let nb = p.nb;
    let nsb = nb / BPS;
    let nib = _mm512_set1_epi8(0x0F);
    let crumb = _mm512_set1_epi8(0x03);
    let bit2 = _mm512_set1_epi8(0x04);
    let bit4 = _mm512_set1_epi8(0x10);
    let bit5 = _mm512_set1_epi8(0x20);
    // SAFETY: the table is 16 bytes.
    let table = _mm512_broadcast_i32x4(unsafe { load_table(&IQ4_TABLE_U) });
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); MT];
    let tb0 = tile * nb;
    let per16 = k_scale_per_16(K);
    let spr = if per16 { 2 } else { 1 };
    let off = k_offset(K);
    let lpb = k_lines(K);
    for sb in 0..nsb {
        let mut isum = [zero; MT];
        for j in 0..BPS {
            let tb = tb0 + sb * BPS + j;
            prefetch_ahead(p, tb * lpb, lpb);
            let mut w = [zero; 8];
            // SAFETY: tile block `tb` is in bounds (module docs): its `lpb` aligned lines, 8
            // masks per bit plane the kind has, and `spr * 16` integer scales exist.
            let (s0, s1) = unsafe {
                let lines = p.qs.as_ptr().add(tb * lpb) as *const __m512i;
                if k_two_bit(K) {
                    for g in 0..2 {
                        let v = _mm512_load_si512(lines.add(g));
                        w[4 * g] = _mm512_and_si512(v, crumb);
                        w[4 * g + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 2), crumb);
                        w[4 * g + 2] = _mm512_and_si512(_mm512_srli_epi16(v, 4), crumb);
                        w[4 * g + 3] = _mm512_and_si512(_mm512_srli_epi16(v, 6), crumb);
                    }
                } else {
                    for g in 0..4 {
                        let v = _mm512_load_si512(lines.add(g));
                        w[2 * g] = _mm512_and_si512(v, nib);
                        w[2 * g + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
                    }
                }
                if K == K_Q3K {
                    let qh = p.qh.as_ptr().add(tb * 8);
                    for (h, wh) in w.iter_mut().enumerate() {
                        *wh = _mm512_or_si512(*wh, _mm512_maskz_mov_epi8(*qh.add(h), bit2));
                    }
                }
                if K == K_Q5K || K == K_Q6K {
                    let qh = p.qh.as_ptr().add(tb * 8);
                    for (h, wh) in w.iter_mut().enumerate() {
                        *wh = _mm512_or_si512(*wh, _mm512_maskz_mov_epi8(*qh.add(h), bit4));
                    }
                }
                if K == K_Q6K {
                    let qh2 = p.qh2.as_ptr().add(tb * 8);
                    for (h, wh) in w.iter_mut().enumerate() {
                        *wh = _mm512_or_si512(*wh, _mm512_maskz_mov_epi8(*qh2.add(h), bit5));
                    }
                }
                if k_lookup(K) {
                    // The nibble's integer, made unsigned (`off` takes 128·Σx out below).
                    for wh in w.iter_mut() {
                        *wh = _mm512_shuffle_epi8(table, *wh);
                    }
                }
                let ks = p.ks.as_ptr().add(tb * spr * TILE);
                let s0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(ks as *const __m128i));
                let s1 = if per16 {
                    _mm512_cvtepi8_epi32(_mm_loadu_si128(ks.add(TILE) as *const __m128i))
                } else {
                    zero
                };
                (s0, s1)
            };
            for (t, isum_t) in isum.iter_mut().enumerate() {
                let ab = (t0 + t) * nb + sb * BPS + j;
                // SAFETY: activation block `ab` is in bounds (module docs); `h < 8`.
                let x = |h: usize| _mm512_set1_epi32(unsafe { act4(a, ab, h) });
                // SAFETY: activation block `ab` is in bounds (module docs): its two sums of 16.
                let (bs_lo, bs_hi) = unsafe {
                    (
                        *a.bs16.get_unchecked(2 * ab),
                        *a.bs16.get_unchecked(2 * ab + 1),
                    )
                };
                let mut lo = _mm512_dpbusd_epi32(zero, w[0], x(0));
                let mut hi = _mm512_dpbusd_epi32(zero, w[4], x(4));
                lo = _mm512_dpbusd_epi32(lo, w[1], x(1));
                hi = _mm512_dpbusd_epi32(hi, w[5], x(5));
                lo = _mm512_dpbusd_epi32(lo, w[2], x(2));
                hi = _mm512_dpbusd_epi32(hi, w[6], x(6));
                lo = _mm512_dpbusd_epi32(lo, w[3], x(3));
                hi = _mm512_dpbusd_epi32(hi, w[7], x(7));
                if per16 {
                    // The offset per 16-value group, each group with its own scale.
                    if off != 0 {
                        lo = _mm512_sub_epi32(lo, _mm512_set1_epi32(off * bs_lo));
                        hi = _mm512_sub_epi32(hi, _mm512_set1_epi32(off * bs_hi));
                    }
                    let v =
                        _mm512_add_epi32(_mm512_mullo_epi32(lo, s0), _mm512_mullo_epi32(hi, s1));
                    *isum_t = _mm512_add_epi32(*isum_t, v);
                } else {
                    let mut dot = _mm512_add_epi32(lo, hi);
                    if off != 0 {
                        dot = _mm512_sub_epi32(dot, _mm512_set1_epi32(off * (bs_lo + bs_hi)));
                    }
                    *isum_t = _mm512_add_epi32(*isum_t, _mm512_mullo_epi32(dot, s0));
                }
            }
        }
        let tsb = tile * nsb + sb;
        // The minimums' integer term, two blocks (Q4_K/Q5_K: Σ_j mn_j · bsum32_j) or two
        // 16-value groups (Q2_K: Σ_g mn_g · bsum16_g) per vpdpwssd.
        let pairs = k_min_pairs(K);
        let mut mins = [zero; 8];
        // SAFETY: tile superblock `tsb` is in bounds (module docs): its 16 scales, and for the
        // kinds with minimums its 16 minimum scales and `32 * pairs` integer minimums, exist.
        let (dw, mw) = unsafe {
            let scales =
                |v: &[u16]| _mm512_cvtph_ps(_mm256_loadu_si256(v.as_ptr().add(tsb * TILE).cast()));
            if k_has_min(K) {
                let km = p.kmin.as_ptr().add(tsb * 32 * pairs);
                for (jp, v) in mins[..pairs].iter_mut().enumerate() {
                    *v = _mm512_cvtepi8_epi16(_mm256_loadu_si256(km.add(32 * jp).cast()));
                }
                (scales(&p.d), scales(&p.m))
            } else {
                (scales(&p.d), _mm512_setzero_ps())
            }
        };
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let asb = (t0 + t) * nsb + sb;
            // SAFETY: activation superblock `asb` is in bounds (module docs).
            let ad = _mm512_set1_ps(unsafe { *a.dk.get_unchecked(asb) });
            *acc_t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, ad), *acc_t);
            if k_has_min(K) {
                let mut msum = zero;
                for (jp, v) in mins[..pairs].iter().enumerate() {
                    // SAFETY: activation superblock `asb` is in bounds: its 4 pairs of sums
                    // of 32 and 16 sums of 16.
                    let pair = unsafe { min_pair::<K>(a, asb, jp) };
                    msum = _mm512_dpwssd_epi32(msum, *v, _mm512_set1_epi32(pair));
                }
                *acc_t = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(mw, ad), *acc_t);
            }
        }
    }
    // SAFETY: AVX-512 F is enabled here; the rows' outputs are writable by the contract.
    unsafe { store_vnni(&acc, c) };
}

/// The activations' pair of 16-bit sums that multiplies minimum pair `jp` of superblock `asb`:
/// the sums of 32-value blocks `2jp` and `2jp + 1` (Q4_K/Q5_K), or of the two 16-value groups
/// of block `jp` (Q2_K; sums of 16 values of at most 127 in size fit 16 bits).
///
/// # Safety
/// Activation superblock `asb` must be in bounds (4 pairs of sums of 32, 16 sums of 16).
#[inline(always)]
unsafe fn min_pair<const K: u8>(a: &crate::act::QuantActs, asb: usize, jp: usize) -> i32 {
    // SAFETY: in bounds by the caller's contract (`jp < k_min_pairs(K)`).
    unsafe {
        if K == K_Q2K {
            let ab = asb * BPS + jp;
            let lo = *a.bs16.get_unchecked(2 * ab) as u16 as u32;
            let hi = *a.bs16.get_unchecked(2 * ab + 1) as u16 as u32;
            (lo | (hi << 16)) as i32
        } else {
            *a.bsp.get_unchecked(asb * 4 + jp)
        }
    }
}

/// The 256-bit K-quant kernels, one function per instruction set: two 8-row halves per tile,
/// the integer dot of lines `h0..h1` of each row given by `$dot` (over the unpacked unsigned
/// lines `w` and the activation operands `x(h)`); all else is the same code. `$signed`:
/// IQ4_XS's nibbles are looked up as signed integers (and no offset is taken out).
macro_rules! tile_k_256 {
    ($(#[$doc:meta])* $name:ident, $features:literal, $signed:expr, |$w:ident, $h0:ident, $h1:ident, $x:ident| $dot:expr) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn $name<const MT: usize, const K: u8>(c: TileCall<'_>) {
            let (p, a, tile, t0) = (c.p, c.a, c.tile, c.t0);
            let nb = p.nb;
            let nsb = nb / BPS;
            let nib = _mm256_set1_epi8(0x0F);
            let crumb = _mm256_set1_epi8(0x03);
            let zero = _mm256_setzero_si256();
            let lpb = k_lines(K);
            let tb0 = tile * nb;
            let per16 = k_scale_per_16(K);
            let spr = if per16 { 2 } else { 1 };
            let signed = $signed && k_lookup(K);
            let off = if signed { 0 } else { k_offset(K) };
            // SAFETY: both tables are 16 bytes.
            let table = _mm256_broadcastsi128_si256(unsafe {
                if signed {
                    load_table(&IQ4_TABLE.map(|v| v as u8))
                } else {
                    load_table(&IQ4_TABLE_U)
                }
            });
            let pairs = k_min_pairs(K);
            for half in 0..2 {
                let mut acc = [_mm256_setzero_ps(); MT];
                for sb in 0..nsb {
                    let mut isum = [zero; MT];
                    for j in 0..BPS {
                        let tb = tb0 + sb * BPS + j;
                        if half == 0 {
                            // The second half reads the lines the first brought in.
                            prefetch_ahead(p, tb * lpb, lpb);
                        }
                        let mut w = [zero; 8];
                        // SAFETY: tile block `tb` is in bounds (module docs): its `lpb` aligned lines
                        // (rows `8·half..` are each line's 32 bytes at `32·half`), 8 masks per bit
                        // plane the kind has, and `spr * 16` integer scales exist.
                        let (s0, s1) = unsafe {
                            let lines = p.qs.as_ptr().add(tb * lpb) as *const u8;
                            let line = |l: usize| {
                                _mm256_load_si256(lines.add(l * 64 + 32 * half) as *const __m256i)
                            };
                            if k_two_bit(K) {
                                for g in 0..2 {
                                    let v = line(g);
                                    w[4 * g] = _mm256_and_si256(v, crumb);
                                    w[4 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 2), crumb);
                                    w[4 * g + 2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), crumb);
                                    w[4 * g + 3] = _mm256_and_si256(_mm256_srli_epi16(v, 6), crumb);
                                }
                            } else {
                                for g in 0..4 {
                                    let v = line(g);
                                    w[2 * g] = _mm256_and_si256(v, nib);
                                    w[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
                                }
                            }
                            let mut or_plane = |plane: &[u64], bit: i8| {
                                let masks = plane.as_ptr().add(tb * 8);
                                for (h, wh) in w.iter_mut().enumerate() {
                                    let set = spread_bits((*masks.add(h) >> (32 * half)) as u32);
                                    *wh =
                                        _mm256_or_si256(*wh, _mm256_and_si256(set, _mm256_set1_epi8(bit)));
                                }
                            };
                            if K == K_Q3K {
                                or_plane(&p.qh, 0x04);
                            }
                            if K == K_Q5K || K == K_Q6K {
                                or_plane(&p.qh, 0x10);
                            }
                            if K == K_Q6K {
                                or_plane(&p.qh2, 0x20);
                            }
                            if k_lookup(K) {
                                for wh in w.iter_mut() {
                                    *wh = _mm256_shuffle_epi8(table, *wh);
                                }
                            }
                            let ks = p.ks.as_ptr().add(tb * spr * TILE + 8 * half);
                            let s0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(ks as *const __m128i));
                            let s1 = if per16 {
                                _mm256_cvtepi8_epi32(_mm_loadl_epi64(ks.add(TILE) as *const __m128i))
                            } else {
                                zero
                            };
                            (s0, s1)
                        };
                        for (t, isum_t) in isum.iter_mut().enumerate() {
                            let ab = (t0 + t) * nb + sb * BPS + j;
                            // SAFETY: activation block `ab` is in bounds (module docs); `h < 8`.
                            let x = |h: usize| _mm256_set1_epi32(unsafe { act4(a, ab, h) });
                            // SAFETY: activation block `ab` is in bounds (module docs): its two sums of 16.
                            let (bs_lo, bs_hi) = unsafe {
                                (
                                    *a.bs16.get_unchecked(2 * ab),
                                    *a.bs16.get_unchecked(2 * ab + 1),
                                )
                            };
                            let run = |$h0: usize, $h1: usize| -> __m256i {
                                let $w = &w;
                                let $x = &x;
                                $dot
                            };
                            if per16 {
                                let (mut lo, mut hi) = (run(0, 4), run(4, 8));
                                if off != 0 {
                                    lo = _mm256_sub_epi32(lo, _mm256_set1_epi32(off * bs_lo));
                                    hi = _mm256_sub_epi32(hi, _mm256_set1_epi32(off * bs_hi));
                                }
                                let v = _mm256_add_epi32(
                                    _mm256_mullo_epi32(lo, s0),
                                    _mm256_mullo_epi32(hi, s1),
                                );
                                *isum_t = _mm256_add_epi32(*isum_t, v);
                            } else {
                                let mut dot = run(0, 8);
                                if off != 0 {
                                    let o = _mm256_set1_epi32(off * (bs_lo + bs_hi));
                                    dot = _mm256_sub_epi32(dot, o);
                                }
                                *isum_t = _mm256_add_epi32(*isum_t, _mm256_mullo_epi32(dot, s0));
                            }
                        }
                    }
                    let tsb = tile * nsb + sb;
                    // The minimum term, two blocks or groups per vpmaddwd (rows 8·half.. of each pair).
                    let mut mins = [zero; 8];
                    // SAFETY: tile superblock `tsb` is in bounds (module docs): its 16 scales, and for
                    // the kinds with minimums its 16 minimum scales and `32 * pairs` integer minimums,
                    // exist.
                    let (dw, mw) = unsafe {
                        let scales = |v: &[u16]| {
                            _mm256_cvtph_ps(_mm_loadu_si128(
                                v.as_ptr().add(tsb * TILE + 8 * half).cast(),
                            ))
                        };
                        if k_has_min(K) {
                            let km = p.kmin.as_ptr().add(tsb * 32 * pairs + 16 * half);
                            for (jp, v) in mins[..pairs].iter_mut().enumerate() {
                                *v = _mm256_cvtepi8_epi16(_mm_loadu_si128(km.add(32 * jp).cast()));
                            }
                            (scales(&p.d), scales(&p.m))
                        } else {
                            (scales(&p.d), _mm256_setzero_ps())
                        }
                    };
                    for (t, acc_t) in acc.iter_mut().enumerate() {
                        let asb = (t0 + t) * nsb + sb;
                        // SAFETY: activation superblock `asb` is in bounds (module docs).
                        let ad = _mm256_set1_ps(unsafe { *a.dk.get_unchecked(asb) });
                        *acc_t =
                            _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, ad), *acc_t);
                        if k_has_min(K) {
                            let mut msum = zero;
                            for (jp, v) in mins[..pairs].iter().enumerate() {
                                // SAFETY: activation superblock `asb` is in bounds: its 4 pairs of
                                // sums of 32 and 16 sums of 16.
                                let pair = unsafe { min_pair::<K>(a, asb, jp) };
                                let pr = _mm256_madd_epi16(*v, _mm256_set1_epi32(pair));
                                msum = _mm256_add_epi32(msum, pr);
                            }
                            *acc_t =
                                _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(mw, ad), *acc_t);
                        }
                    }
                }
                // SAFETY: AVX2 is enabled here; the rows' outputs are writable by the contract.
                unsafe { store_avx2_half(&acc, c, half) };
            }

        }
    };
}

tile_k_256!(
    /// AVX2 + FMA: same contract as [`tile_vnni_k`], two 8-row halves per tile. Lines' pair
    /// sums are added in i16 lanes before widening: Q4_K's 4-bit weights allow 8 lines per
    /// lane (16 products of at most 15 · 128), Q5_K's 4, Q6_K's 2 (4 products of at most
    /// 63 · 128).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; otherwise as [`tile_vnni_k`].
    tile_avx2_k,
    "avx2,fma,f16c",
    true,
    |w, h0, h1, x| {
        let ones = _mm256_set1_epi16(1);
        if k_lookup(K) {
            // IQ4_XS's signed integers (|w| <= 127) against Q8_K's (down to -128): the sign
            // trick on the activations' side, whose magnitude (128 at most) fits a `u8`; a
            // pair of products fits an `i16`, two pairs would not.
            let mut s = _mm256_setzero_si256();
            for (h, &wh) in (h0..h1).zip(&w[h0..h1]) {
                let xh = x(h);
                s = dp_avx2(s, _mm256_abs_epi8(xh), _mm256_sign_epi8(wh, xh), ones);
            }
            s
        } else {
            // Q2_K's and Q3_K's runs are 4 lines (one 16-value group), well within the limit.
            let group = match K {
                K_Q6K => 2,
                K_Q5K => 4,
                _ => 8,
            };
            dp_lines_avx2(&w[h0..h1], h0, group, x, ones)
        }
    }
);

tile_k_256!(
    /// AVX-VNNI: [`tile_avx2_k`] with one 256-bit `vpdpbusd` per line (the same integers).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA, F16C and AVX-VNNI; otherwise as [`tile_vnni_k`].
    tile_avxvnni_k,
    "avx2,fma,f16c,avxvnni",
    false,
    |w, h0, h1, x| {
        let mut s = _mm256_setzero_si256();
        // `h` indexes both the lines and the activation operands (an iterator over `w` here
        // measured 8x slower).
        #[allow(clippy::needless_range_loop)]
        for h in h0..h1 {
            s = _mm256_dpbusd_avx_epi32(s, w[h], x(h));
        }
        s
    }
);
