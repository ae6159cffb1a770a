//! x86-64: the tile kernels on AVX-512 VNNI (`vpdpbusd`, 16 rows per instruction) and AVX2
//! (`vpmaddubsw` + `vpmaddwd`, two 8-row halves), the vector `exp` and the activation
//! quantization on AVX2, and the helpers they share. Every function here needs the instruction
//! set it is compiled for (`#[target_feature]`); callers check it at run time through
//! [`crate::Isa`].

use core::arch::x86_64::*;

use crate::act::QuantActs;
use crate::matmul::TileCall;
use crate::pack::{PackedMatrix, TILE};

pub(crate) mod attn;
pub(crate) mod dense;
pub(crate) mod exp;
pub(crate) mod quant;
pub(crate) mod tiles;
pub(crate) mod tiles_k;

/// Values `4h..4h + 4` of activation block `ab` as one `i32`: the operand the kernels
/// broadcast against four values of each weight row.
///
/// # Safety
/// `ab` must be a block of `a` (`ab < a.m * a.k / 32`), and `h < 8`.
#[inline(always)]
pub(crate) unsafe fn act4(a: &QuantActs, ab: usize, h: usize) -> i32 {
    // SAFETY: values `32·ab + 4h .. + 4` lie in `a.q` (the caller's contract).
    unsafe { (a.q.as_ptr().add(ab * 32 + 4 * h) as *const i32).read_unaligned() }
}

/// How far ahead of the block being computed the tile kernels ask the cache for weight lines
/// (64-byte lines, 4 KiB). The hardware prefetcher alone falls behind the weight stream, a
/// single decode row included: the kernels then wait on their line loads (measured with
/// `perf`: nearly half of the kernel's samples on the loads with 8 rows). 4 KiB ahead raised
/// decode 12-15% for one row and 15-25% for 4-8 rows on the machine of BENCHMARKS.md; 2 to
/// 8 KiB measured alike.
const PREFETCH_LINES: usize = 64;

/// Asks the cache for the `n` weight lines that lie [`PREFETCH_LINES`] after line `line` of
/// `p`'s quant lines: a hint that reads nothing architecturally and never faults, so the
/// address may lie past the end of the weights (it is formed with wrapping arithmetic and
/// never dereferenced).
#[inline(always)]
pub(crate) fn prefetch_ahead(p: &PackedMatrix, line: usize, n: usize) {
    let ahead = (p.qs.as_ptr() as *const u8).wrapping_add(64 * (line + PREFETCH_LINES));
    for i in 0..n {
        // SAFETY: `_mm_prefetch` (SSE, part of x86-64) does not access memory: it cannot
        // fault or read out of bounds whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * i) as *const i8) };
    }
}

/// Stores the first `c.cols` (≤ 16) lanes of each row's accumulator: row `t` of the call at
/// `c.out + (c.t0 + t) * c.ldo`.
///
/// # Safety
/// The CPU must support AVX-512 F; `acc` has at most the call's `MT` rows, whose outputs the
/// [`TileCall`] contract makes writable.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn store_vnni(acc: &[__m512], c: TileCall<'_>) {
    let (out, t0, ldo, cols) = (c.out, c.t0, c.ldo, c.cols);
    let mask: __mmask16 = if cols >= TILE {
        0xFFFF
    } else {
        ((1u32 << cols) - 1) as u16
    };
    for (t, acc_t) in acc.iter().enumerate() {
        // SAFETY: the masked store writes the row's first `cols` floats, writable by the
        // caller's contract.
        unsafe { _mm512_mask_storeu_ps(out.add((t0 + t) * ldo), mask, *acc_t) };
    }
}

/// Stores columns `8·half ..` (of the first `c.cols`) of each row's accumulator (AVX2 half
/// tiles).
///
/// # Safety
/// As [`store_vnni`], with AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn store_avx2_half(acc: &[__m256], c: TileCall<'_>, half: usize) {
    let (out, t0, ldo, cols) = (c.out, c.t0, c.ldo, c.cols);
    let c0 = 8 * half;
    for (t, acc_t) in acc.iter().enumerate() {
        // SAFETY: columns `c0..min(c0 + 8, cols)` of the row are written, the floats the
        // caller's contract makes writable.
        unsafe {
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
}

/// Spreads 32 mask bits over 32 bytes: byte `i` is `0xFF` when bit `i` is set.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn spread_bits(bits: u32) -> __m256i {
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
/// pair of products must fit an `i16`: true for Q8_0 handled with the sign trick, the one kind
/// that needs this per line (the 4/5/6-bit kernels add several lines' `vpmaddubsw` pair sums in
/// `i16` lanes first and widen once: fewer multiplies per row, the same integers).
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn dp_avx2(acc: __m256i, w: __m256i, x: __m256i, ones: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones))
}

/// `u8 x i8` dot of the weight lines `w` (line `i` against activation operand `x(base + i)`),
/// summed per 32-bit lane: the `vpmaddubsw` pair sums of `group` lines at a time are added in
/// `i16` lanes, then widened once with `vpmaddwd`. `group` lines' pair sums must fit an `i16`
/// (the caller's kind bounds them): 8 lines of 4-bit weights against `|x| <= 128` reach 30,720.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn dp_lines_avx2(
    w: &[__m256i],
    base: usize,
    group: usize,
    x: impl Fn(usize) -> __m256i,
    ones: __m256i,
) -> __m256i {
    let mut total = _mm256_setzero_si256();
    for (g, lines) in w.chunks(group).enumerate() {
        let mut s16 = _mm256_setzero_si256();
        for (h, &wh) in (base + g * group..).zip(lines) {
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(wh, x(h)));
        }
        total = _mm256_add_epi32(total, _mm256_madd_epi16(s16, ones));
    }
    total
}
