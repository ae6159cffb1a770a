//! Activations quantized to 8 bits in blocks of 32, done once per matmul call and shared by
//! every weight row. The numbers are exactly ggml's (and candle's) Q8_0/Q8_1: scale rounded to
//! f16, values rounded half away from zero, Q8_1's scaled sum rounded to f16, so the integer
//! sums of a dot product match theirs bit for bit. For K-quant weights, activations are
//! quantized as candle's Q8_K instead (256 values per f32 scale, with integer sums per 16).

use half::f16;

use crate::blocks::QK;
use crate::kblocks::QK_K;

/// `m` rows of `k` activations, quantized per block of 32: `x ≈ d * q`.
#[derive(Debug, Default)]
pub(crate) struct QuantActs {
    /// Rows.
    pub(crate) m: usize,
    /// Values per row (a multiple of 32).
    pub(crate) k: usize,
    /// `m * k` quantized values, row-major.
    pub(crate) q: Vec<i8>,
    /// `m * k / 32` block scales (values of an f16).
    pub(crate) d: Vec<f32>,
    /// `m * k / 32` block sums of `q` (integers).
    pub(crate) isum: Vec<i32>,
    /// `m * k / 32` scaled block sums, `d * isum` rounded to f16 (ggml's Q8_1 `s`).
    pub(crate) s: Vec<f32>,
    /// Q8_K only: `m * k / 256` superblock scales.
    pub(crate) dk: Vec<f32>,
    /// Q8_K only: `m * k / 16` integer sums of each group of 16 values.
    pub(crate) bs16: Vec<i32>,
    /// Q8_K only: `m * k / 64` pairs of 32-value sums packed as two `i16` (low: first), the
    /// operand of the K-quant kernels' minimum term.
    pub(crate) bsp: Vec<i32>,
}

impl QuantActs {
    /// Quantizes `x` (`m * k` values, `k` a multiple of 32), reusing this buffer's memory.
    pub(crate) fn quantize_into(&mut self, x: &[f32], m: usize, k: usize) {
        debug_assert!(k.is_multiple_of(QK) && x.len() >= m * k);
        let nb = m * k / QK;
        self.m = m;
        self.k = k;
        self.q.resize(m * k, 0);
        self.d.resize(nb, 0.0);
        self.isum.resize(nb, 0);
        self.s.resize(nb, 0.0);
        let x = &x[..m * k];
        let Some(r) = crate::par::rows_per_task(m, k) else {
            quantize_blocks(x, &mut self.q, &mut self.d, &mut self.isum, &mut self.s);
            return;
        };
        // Rows in parallel, `r` rows per task.
        use rayon::prelude::*;
        let (rows, blocks) = (r * k, r * k / QK);
        x.par_chunks(rows)
            .zip(self.q.par_chunks_mut(rows))
            .zip(self.d.par_chunks_mut(blocks))
            .zip(self.isum.par_chunks_mut(blocks))
            .zip(self.s.par_chunks_mut(blocks))
            .for_each(|((((x, q), d), i), s)| quantize_blocks(x, q, d, i, s));
    }

    /// Quantizes `x` (`m * k` values, `k` a multiple of 256) as Q8_K, exactly as candle's
    /// `BlockQ8K::from_float`, reusing this buffer's memory; fills `q`, `dk` and `bs16`.
    pub(crate) fn quantize_k_into(&mut self, x: &[f32], m: usize, k: usize) {
        debug_assert!(k.is_multiple_of(QK_K) && x.len() >= m * k);
        self.m = m;
        self.k = k;
        self.q.resize(m * k, 0);
        self.dk.resize(m * k / QK_K, 0.0);
        self.bs16.resize(m * k / 16, 0);
        self.bsp.resize(m * k / 64, 0);
        let x = &x[..m * k];
        if let Some(r) = crate::par::rows_per_task(m, k) {
            use rayon::prelude::*;
            let rows = r * k;
            x.par_chunks(rows)
                .zip(self.q.par_chunks_mut(rows))
                .zip(self.dk.par_chunks_mut(rows / QK_K))
                .zip(self.bs16.par_chunks_mut(rows / 16))
                .for_each(|(((x, q), d), bs)| quantize_k(x, q, d, bs));
        } else {
            quantize_k(x, &mut self.q, &mut self.dk, &mut self.bs16);
        }
        for (p, s) in self.bsp.iter_mut().zip(self.bs16.chunks_exact(4)) {
            // |sum of 32 i8| <= 4096 fits an i16.
            let lo = (s[0] + s[1]) as i16 as u16 as u32;
            let hi = (s[2] + s[3]) as i16 as u16 as u32;
            *p = (lo | (hi << 16)) as i32;
        }
    }

    /// Quantizes `x` into a new buffer.
    #[cfg(test)]
    pub(crate) fn quantize(x: &[f32], m: usize, k: usize) -> Self {
        let mut a = QuantActs::default();
        a.quantize_into(x, m, k);
        a
    }

    /// The quantized values of row `r`.
    #[cfg(test)]
    pub(crate) fn row(&self, r: usize) -> &[i8] {
        &self.q[r * self.k..(r + 1) * self.k]
    }
}

fn quantize_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], isum: &mut [i32], s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::isa() == crate::Isa::Avx512Vnni {
            // SAFETY: that instruction set includes AVX-512 F/BW/VL and F16C (detected).
            unsafe { crate::arch::x86::quant::quantize_blocks_avx512(x, q, d, isum, s) };
            return;
        }
        if crate::isa().has_avx2() {
            // SAFETY: the selected instruction set includes AVX2 and FMA (detected at run time).
            unsafe { crate::arch::x86::quant::quantize_blocks_avx2(x, q, d, isum, s) };
            return;
        }
    }
    quantize_blocks_generic(x, q, d, isum, s)
}

/// Q8_K superblocks (candle's numbers), vectorized by the compiler where AVX2 runs.
fn quantize_k(x: &[f32], q: &mut [i8], d: &mut [f32], bs: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::isa().has_avx2() {
            // SAFETY: the selected instruction set includes AVX2 and FMA (detected at run time).
            unsafe { quantize_k_avx2(x, q, d, bs) };
            return;
        }
    }
    quantize_k_generic(x, q, d, bs)
}

/// [`quantize_k_generic`] compiled for AVX2 (`f32::round` vectorizes exactly there).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn quantize_k_avx2(x: &[f32], q: &mut [i8], d: &mut [f32], bs: &mut [i32]) {
    quantize_k_generic(x, q, d, bs)
}

/// The definition: the value of largest magnitude (the first, on ties) maps to -127, every value
/// is scaled by the same factor and rounded half away from zero, the scale is its inverse.
#[inline(always)]
fn quantize_k_generic(x: &[f32], q: &mut [i8], d: &mut [f32], bs: &mut [i32]) {
    for (((xb, qb), db), bsb) in x
        .chunks_exact(QK_K)
        .zip(q.chunks_exact_mut(QK_K))
        .zip(d.iter_mut())
        .zip(bs.chunks_exact_mut(QK_K / 16))
    {
        let amax = xb.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
        if amax == 0.0 || max == 0.0 {
            *db = 0.0;
            qb.fill(0);
            bsb.fill(0);
            continue;
        }
        let iscale = -127f32 / max;
        for (o, &v) in qb.iter_mut().zip(xb) {
            *o = (iscale * v).round().clamp(-128.0, 127.0) as i8;
        }
        for (s, g) in bsb.iter_mut().zip(qb.chunks_exact(16)) {
            *s = g.iter().map(|&v| v as i32).sum();
        }
        *db = 1.0 / iscale;
    }
}

/// The scalar definition (ggml's `quantize_row_q8_1` numbers).
fn quantize_blocks_generic(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    isum: &mut [i32],
    s: &mut [f32],
) {
    for ((((xb, qb), db), ib), sb) in x
        .chunks_exact(QK)
        .zip(q.chunks_exact_mut(QK))
        .zip(d.iter_mut())
        .zip(isum.iter_mut())
        .zip(s.iter_mut())
    {
        let amax = xb.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (o, &v) in qb.iter_mut().zip(xb) {
            let r = (v * inv).round().clamp(-127.0, 127.0) as i32;
            *o = r as i8;
            sum += r;
        }
        let d = f16::from_f32(scale).to_f32();
        *db = d;
        *ib = sum;
        *sb = f16::from_f32(f16::from_f32(sum as f32).to_f32() * d).to_f32();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantizes_within_half_a_step() {
        let x: Vec<f32> = (0..128)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let a = QuantActs::quantize(&x, 2, 64);
        for (i, &v) in x.iter().enumerate() {
            let d = a.d[i / QK];
            assert!((d * a.q[i] as f32 - v).abs() <= d * 0.51 + 1e-6);
        }
        // Many rows (quantized in parallel) give what each row gives alone.
        let x: Vec<f32> = (0..40 * 64)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 33.0)
            .collect();
        let all = QuantActs::quantize(&x, 40, 64);
        for r in 0..40 {
            let one = QuantActs::quantize(&x[r * 64..(r + 1) * 64], 1, 64);
            assert_eq!(all.row(r), one.row(0));
            assert_eq!(&all.s[r * 2..r * 2 + 2], &one.s[..]);
        }
        let zeros = QuantActs::quantize(&[0.0; 32], 1, 32);
        assert_eq!(zeros.d[0], 0.0);
        // SIMD and scalar agree bit for bit, exact ties (x.5, rounded away from zero) included.
        let mut x: Vec<f32> = (0..64 * 32)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 33.0)
            .collect();
        for (i, v) in x[..32].iter_mut().enumerate() {
            *v = if i == 0 { 127.0 } else { i as f32 - 15.5 };
        }
        let nb = x.len() / QK;
        let mut a = (
            vec![0i8; x.len()],
            vec![0f32; nb],
            vec![0i32; nb],
            vec![0f32; nb],
        );
        let mut b = a.clone();
        quantize_blocks_generic(&x, &mut a.0, &mut a.1, &mut a.2, &mut a.3);
        assert_eq!(a.0[1], -15);
        assert_eq!(a.0[2], -14);
        assert_eq!(a.0[17], 2);
        quantize_blocks(&x, &mut b.0, &mut b.1, &mut b.2, &mut b.3);
        assert_eq!(a, b);
        // Each vector path this CPU runs, not only the one selected.
        #[cfg(target_arch = "x86_64")]
        {
            use crate::arch::x86::quant;
            use crate::Isa;
            let available = Isa::available();
            if available.contains(&Isa::Avx2) {
                let mut c = b.clone();
                // SAFETY: AVX2, FMA and F16C were detected.
                unsafe { quant::quantize_blocks_avx2(&x, &mut c.0, &mut c.1, &mut c.2, &mut c.3) };
                assert_eq!(a, c);
            }
            if available.contains(&Isa::Avx512Vnni) {
                let mut c = b.clone();
                c.0.fill(0);
                // SAFETY: AVX-512 F/BW/VL and F16C were detected.
                unsafe {
                    quant::quantize_blocks_avx512(&x, &mut c.0, &mut c.1, &mut c.2, &mut c.3)
                };
                assert_eq!(a, c);
            }
        }
        assert_eq!(zeros.d[0], 0.0);
        assert!(zeros.q.iter().all(|&q| q == 0));
    }
}
