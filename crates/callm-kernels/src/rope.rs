//! Rotary position encoding in place on token-major rows, each row at its own position (a
//! batch of sequences holds rows of many positions), with candle's formulas: rotate-half
//! (`rope`, pairs `(i, i + rd/2)`) or interleaved (`rope_i`, pairs `(2i, 2i + 1)`), on the first
//! `rd` values of each head (partial rotary leaves the rest).

/// How the rows of a call are rotated.
#[derive(Debug, Clone, Copy)]
pub struct Rope<'a> {
    /// Heads per row.
    pub heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Rotated values per head (even, at most `head_dim`).
    pub rotary_dim: usize,
    /// Pairs are `(2i, 2i + 1)` rather than `(i, i + rotary_dim / 2)`.
    pub interleaved: bool,
    /// `cos` and `sin` tables, `rotary_dim / 2` values per position.
    pub cos: &'a [f32],
    /// See `cos`.
    pub sin: &'a [f32],
}

impl Rope<'_> {
    /// Rotates `x` (rows of `heads * head_dim` values, row `t` at `positions[t]`); an error
    /// when the sizes do not match or a position is beyond the tables.
    pub fn apply(&self, x: &mut [f32], positions: &[usize]) -> candle_core::Result<()> {
        let (hd, rd) = (self.head_dim, self.rotary_dim);
        let width = self.heads * hd;
        let half = rd / 2;
        if rd % 2 != 0 || rd > hd || x.len() != positions.len() * width {
            candle_core::bail!(
                "rope: {} values for {} rows of {width}",
                x.len(),
                positions.len()
            );
        }
        if half == 0 {
            return Ok(());
        }
        let rows = self.cos.len().min(self.sin.len()) / half;
        if positions.iter().any(|&p| p >= rows) {
            candle_core::bail!("rope: a position is beyond the table's {rows}");
        }
        let row = |row: &mut [f32], p: usize| {
            let (cos, sin) = (&self.cos[p * half..][..half], &self.sin[p * half..][..half]);
            for head in row.chunks_exact_mut(hd) {
                for i in 0..half {
                    let (i1, i2) = if self.interleaved {
                        (2 * i, 2 * i + 1)
                    } else {
                        (i, i + half)
                    };
                    let (a, b) = (head[i1], head[i2]);
                    head[i1] = a * cos[i] - b * sin[i];
                    head[i2] = a * sin[i] + b * cos[i];
                }
            }
        };
        match crate::par::rows_per_task(positions.len(), width) {
            Some(r) => {
                use rayon::prelude::*;
                x.par_chunks_mut(r * width)
                    .zip(positions.par_chunks(r))
                    .for_each(|(rows, ps)| {
                        for (x, &p) in rows.chunks_exact_mut(width).zip(ps) {
                            row(x, p);
                        }
                    });
            }
            None => {
                for (x, &p) in x.chunks_exact_mut(width).zip(positions) {
                    row(x, p);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn equals_candles_rope_for_both_layouts_and_partial_rotary() {
        let dev = Device::Cpu;
        let (heads, hd, n) = (3, 8, 5);
        for (rd, interleaved) in [(8, false), (8, true), (4, false), (4, true)] {
            let half = rd / 2;
            let cos: Vec<f32> = (0..20 * half).map(|i| (i as f32 * 0.37).cos()).collect();
            let sin: Vec<f32> = (0..20 * half).map(|i| (i as f32 * 0.37).sin()).collect();
            let x: Vec<f32> = (0..n * heads * hd)
                .map(|i| (i as f32 * 0.11).sin())
                .collect();
            let positions = [7usize, 8, 9, 10, 11];
            let mut got = x.clone();
            let r = Rope {
                heads,
                head_dim: hd,
                rotary_dim: rd,
                interleaved,
                cos: &cos,
                sin: &sin,
            };
            r.apply(&mut got, &positions).unwrap();
            // candle: [1, heads, n, hd] with cos/sin rows of these positions.
            let t = Tensor::from_vec(x.clone(), (n, heads, hd), &dev)
                .unwrap()
                .transpose(0, 1)
                .unwrap()
                .unsqueeze(0)
                .unwrap()
                .contiguous()
                .unwrap();
            let c = Tensor::from_vec(cos[7 * half..12 * half].to_vec(), (n, half), &dev).unwrap();
            let s = Tensor::from_vec(sin[7 * half..12 * half].to_vec(), (n, half), &dev).unwrap();
            let part = t.narrow(3, 0, rd).unwrap().contiguous().unwrap();
            let rot = if interleaved {
                candle_nn_like::rope_i(&part, &c, &s)
            } else {
                candle_nn_like::rope(&part, &c, &s)
            };
            let want = Tensor::cat(&[&rot, &t.narrow(3, rd, hd - rd).unwrap()], 3)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .transpose(0, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(got, want, "rd {rd} interleaved {interleaved}");
        }
        let mut x = vec![0f32; 8];
        let r = Rope {
            heads: 1,
            head_dim: 8,
            rotary_dim: 8,
            interleaved: false,
            cos: &[0.0; 8],
            sin: &[0.0; 8],
        };
        assert!(r.apply(&mut x, &[2]).is_err());
        assert!(r.apply(&mut x, &[0, 1]).is_err());
    }

    /// candle-nn's formulas, written out with candle ops (the crate does not depend on
    /// candle-nn): `(x1 cos − x2 sin, x1 sin + x2 cos)`.
    mod candle_nn_like {
        use candle_core::{Tensor, D};

        pub(super) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
            let hd = x.dim(D::Minus1).unwrap();
            let x1 = x.narrow(D::Minus1, 0, hd / 2).unwrap();
            let x2 = x.narrow(D::Minus1, hd / 2, hd / 2).unwrap();
            let a = (x1.broadcast_mul(cos).unwrap() - x2.broadcast_mul(sin).unwrap()).unwrap();
            let b = (x1.broadcast_mul(sin).unwrap() + x2.broadcast_mul(cos).unwrap()).unwrap();
            Tensor::cat(&[a, b], D::Minus1).unwrap()
        }

        pub(super) fn rope_i(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
            let (b, h, t, d) = x.dims4().unwrap();
            let x = x.reshape((b, h, t, d / 2, 2)).unwrap();
            let x0 = x.narrow(D::Minus1, 0, 1).unwrap();
            let x1 = x.narrow(D::Minus1, 1, 1).unwrap();
            let (c, s) = (cos.unsqueeze(2).unwrap(), sin.unsqueeze(2).unwrap());
            let a = (x0.broadcast_mul(&c).unwrap() - x1.broadcast_mul(&s).unwrap()).unwrap();
            let bb = (x0.broadcast_mul(&s).unwrap() + x1.broadcast_mul(&c).unwrap()).unwrap();
            Tensor::cat(&[a, bb], D::Minus1)
                .unwrap()
                .flatten_from(D::Minus2)
                .unwrap()
        }
    }
}
