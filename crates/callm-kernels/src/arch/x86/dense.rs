//! x86-64 kernels of [`crate::dense`]: `MT` activation rows against one tile of 16 dense f32
//! weight rows, one fused multiply-add per input in input order (AVX-512: one 16-lane
//! accumulator per row; AVX2: two passes of 8 lanes).
//!
//! Bounds, for every unsafe read below: the [`DenseCall`] contract (`tile < p.tiles`, rows
//! `t0..t0 + MT` of `x` exist, `k` values each) keeps weight reads inside tile `tile`
//! (`k * 16` values) and activation reads inside those rows.

use core::arch::x86_64::*;

use crate::dense::{DenseCall, DTILE};

/// AVX-512: one [`DenseCall`] of `MT` rows.
///
/// # Safety
/// The CPU must support AVX-512 F and FMA, and `c` must meet the [`DenseCall`] contract.
#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn tile_avx512<const MT: usize>(c: DenseCall<'_>) {
    let k = c.p.k;
    // SAFETY: tile `c.tile` exists (the contract): `k * 16` values from here.
    let w = unsafe { c.p.w.as_ptr().add(c.tile * k * DTILE) };
    // SAFETY: rows `t0..t0 + MT` exist (the contract).
    let x = unsafe { c.x.add(c.t0 * k) };
    let mut acc = [_mm512_setzero_ps(); MT];
    for i in 0..k {
        // SAFETY: `i < k`: inside the tile and inside each row (module docs).
        unsafe {
            let wv = _mm512_loadu_ps(w.add(i * DTILE));
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(t * k + i)), wv, *a);
            }
        }
    }
    let mask: __mmask16 = if c.cols >= DTILE {
        0xFFFF
    } else {
        ((1u32 << c.cols) - 1) as u16
    };
    for (t, a) in acc.iter().enumerate() {
        // SAFETY: the row's first `cols` outputs are writable (the contract).
        unsafe { _mm512_mask_storeu_ps(c.out.add((c.t0 + t) * c.ldo), mask, *a) };
    }
}

/// AVX2 + FMA: the same call in two 8-lane passes.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `c` must meet the [`DenseCall`] contract.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile_avx2<const MT: usize>(c: DenseCall<'_>) {
    let k = c.p.k;
    // SAFETY: as in `tile_avx512`.
    let (w, x) = unsafe { (c.p.w.as_ptr().add(c.tile * k * DTILE), c.x.add(c.t0 * k)) };
    for half in 0..2 {
        let c0 = 8 * half;
        if c.cols <= c0 {
            break;
        }
        let mut acc = [_mm256_setzero_ps(); MT];
        for i in 0..k {
            // SAFETY: `i < k` and `c0 + 8 <= 16`: inside the tile and each row.
            unsafe {
                let wv = _mm256_loadu_ps(w.add(i * DTILE + c0));
                for (t, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(_mm256_set1_ps(*x.add(t * k + i)), wv, *a);
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            let mut lanes = [0f32; 8];
            // SAFETY: `lanes` holds 8 floats; the row's outputs `c0..cols` are writable.
            unsafe {
                _mm256_storeu_ps(lanes.as_mut_ptr(), *a);
                let n = (c.cols - c0).min(8);
                std::ptr::copy_nonoverlapping(
                    lanes.as_ptr(),
                    c.out.add((c.t0 + t) * c.ldo + c0),
                    n,
                );
            }
        }
    }
}
