//! Activations quantized to 8 bits in blocks of 32, done once per matmul call and shared by
//! every weight row. The numbers are exactly ggml's (and candle's) Q8_0/Q8_1: scale rounded to
//! f16, values rounded half away from zero, Q8_1's scaled sum rounded to f16, so the integer
//! sums of a dot product match theirs bit for bit.

use half::f16;

use super::blocks::QK;

/// `m` rows of `k` activations, quantized per block of 32: `x ≈ d * q`.
#[derive(Debug, Default)]
pub struct QuantActs {
    /// Rows.
    pub m: usize,
    /// Values per row (a multiple of 32).
    pub k: usize,
    /// `m * k` quantized values, row-major.
    pub q: Vec<i8>,
    /// `m * k / 32` block scales (values of an f16).
    pub d: Vec<f32>,
    /// `m * k / 32` block sums of `q` (integers).
    pub isum: Vec<i32>,
    /// `m * k / 32` scaled block sums, `d * isum` rounded to f16 (ggml's Q8_1 `s`).
    pub s: Vec<f32>,
}

impl QuantActs {
    /// Quantizes `x` (`m * k` values, `k` a multiple of 32), reusing this buffer's memory.
    pub fn quantize_into(&mut self, x: &[f32], m: usize, k: usize) {
        debug_assert!(k.is_multiple_of(QK) && x.len() >= m * k);
        let nb = m * k / QK;
        self.m = m;
        self.k = k;
        self.q.resize(m * k, 0);
        self.d.resize(nb, 0.0);
        self.isum.resize(nb, 0);
        self.s.resize(nb, 0.0);
        let x = &x[..m * k];
        if m < 16 {
            quantize_blocks(x, &mut self.q, &mut self.d, &mut self.isum, &mut self.s);
            return;
        }
        // Prefill: rows in parallel, 8 rows per task.
        use rayon::prelude::*;
        let (rows, blocks) = (8 * k, 8 * k / QK);
        x.par_chunks(rows)
            .zip(self.q.par_chunks_mut(rows))
            .zip(self.d.par_chunks_mut(blocks))
            .zip(self.isum.par_chunks_mut(blocks))
            .zip(self.s.par_chunks_mut(blocks))
            .for_each(|((((x, q), d), i), s)| quantize_blocks(x, q, d, i, s));
    }

    /// Quantizes `x` into a new buffer.
    pub fn quantize(x: &[f32], m: usize, k: usize) -> Self {
        let mut a = QuantActs::default();
        a.quantize_into(x, m, k);
        a
    }

    /// The quantized values of row `r`.
    pub fn row(&self, r: usize) -> &[i8] {
        &self.q[r * self.k..(r + 1) * self.k]
    }

    /// Blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.k / QK
    }
}

fn quantize_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], isum: &mut [i32], s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::isa() >= super::Isa::Avx2 {
            // SAFETY: AVX2 and FMA were detected at run time.
            unsafe { quantize_blocks_avx2(x, q, d, isum, s) };
            return;
        }
    }
    quantize_blocks_generic(x, q, d, isum, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_blocks_avx2(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    isum: &mut [i32],
    s: &mut [f32],
) {
    quantize_blocks_generic(x, q, d, isum, s)
}

/// Plain code the compiler vectorizes for the enabled target features.
#[inline(always)]
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
        assert!(zeros.q.iter().all(|&q| q == 0));
    }
}
