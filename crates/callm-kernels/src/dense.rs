//! [`DenseLinear`]: `y = x Wᵀ` for dense f32 weights whose every output is one fixed sequence
//! of operations, whatever the number of rows in the call.
//!
//! candle's f32 matmul (the `gemm` crate) picks its blocking of the inner dimension, and a
//! matrix-vector path for one row, from the shape of the call, so the same row of `x` can come
//! out with different last bits when it is computed alone or among others. A batched forward
//! pass needs the opposite: a row's result must not depend on the rows around it. Here each
//! output is `fma(x[k-1], w[k-1], … fma(x[1], w[1], fma(x[0], w[0], 0)))`, one fused
//! multiply-add per input in input order, on every instruction set (so AVX-512, AVX2 and the
//! portable kernel even agree with each other bit for bit). Weights are repacked at load into
//! tiles of 16 output rows, `[tile][k][16]`, so that one vector load serves 16 outputs and one
//! broadcast activation; up to [`MT`] rows share each weight load.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use crate::matmul::{split, OutPtr, MT};
use crate::Isa;

/// Output rows per tile.
pub(crate) const DTILE: usize = 16;

/// A dense `[n, k]` matrix in tiles of 16 rows: value `(r, i)` at `(r / 16 * k + i) * 16 + r % 16`;
/// the rows past `n` in the last tile are zero.
#[derive(Debug)]
pub(crate) struct DenseMatrix {
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) tiles: usize,
    pub(crate) w: Vec<f32>,
}

impl DenseMatrix {
    fn pack(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if w.len() != n.checked_mul(k)? || n == 0 || k == 0 {
            return None;
        }
        let tiles = n.div_ceil(DTILE);
        let mut p = vec![0f32; tiles * k * DTILE];
        for (r, row) in w.chunks_exact(k).enumerate() {
            let base = r / DTILE * k * DTILE + r % DTILE;
            for (i, &v) in row.iter().enumerate() {
                p[base + i * DTILE] = v;
            }
        }
        Some(DenseMatrix { n, k, tiles, w: p })
    }
}

/// One dense tile call: activation rows `t0..t0 + mt` (each `k` values, row stride `k`)
/// against tile `tile`, writing the first `cols` outputs of each row `t` at
/// `out + t * ldo + tile * 16`.
///
/// The kernels' contract (what [`DenseLinear::matmul`] establishes): `tile < p.tiles`,
/// `t0 + mt` rows of `x` exist, and those outputs are writable, by this call only.
#[derive(Clone, Copy)]
pub(crate) struct DenseCall<'a> {
    pub(crate) p: &'a DenseMatrix,
    pub(crate) x: *const f32,
    pub(crate) tile: usize,
    pub(crate) t0: usize,
    pub(crate) out: *mut f32,
    pub(crate) ldo: usize,
    pub(crate) cols: usize,
}

/// A dense linear layer `y = x Wᵀ (+ b)` on repacked f32 weights, applied to a candle tensor as
/// a [`CustomOp1`]; row-invariant (see the module docs).
#[derive(Debug, Clone)]
pub struct DenseLinear {
    w: Arc<DenseMatrix>,
    /// The bias, added to each output row as the packed layer adds it
    /// ([`crate::PackedLinear::with_bias`]).
    bias: Option<Arc<[f32]>>,
}

impl DenseLinear {
    /// Repacks `w`, `n` rows of `k` values; `None` when the sizes do not match or are zero.
    pub fn new(w: &[f32], n: usize, k: usize) -> Option<Self> {
        Some(DenseLinear {
            w: Arc::new(DenseMatrix::pack(w, n, k)?),
            bias: None,
        })
    }

    /// The layer with a bias added to each output row (one f32 addition per value, as candle's
    /// `broadcast_add` would make it, without a second tensor); `None` unless `bias` holds one
    /// value per output.
    pub fn with_bias(self, bias: Vec<f32>) -> Option<Self> {
        (bias.len() == self.w.n).then(|| DenseLinear {
            bias: Some(bias.into()),
            ..self
        })
    }

    /// Repacks a CPU tensor of shape `[n, k]` (converted to f32); `None` when it is not a
    /// 2-d tensor on the CPU.
    pub fn from_tensor(t: &Tensor) -> Option<Self> {
        if !t.device().is_cpu() {
            return None;
        }
        let (n, k) = t.dims2().ok()?;
        let v: Vec<f32> = t
            .to_dtype(candle_core::DType::F32)
            .ok()?
            .flatten_all()
            .ok()?
            .to_vec1()
            .ok()?;
        Self::new(&v, n, k)
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.w.n
    }

    /// `out[m, n] = x[m, k] · Wᵀ`; `false` (and `out` untouched) when the sizes do not match.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) -> bool {
        self.matmul_uninit(crate::isa(), x, m, crate::linear::as_uninit(out))
    }

    /// [`DenseLinear::matmul`] with the kernel of `isa`.
    #[cfg(test)]
    pub(crate) fn matmul_with(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) -> bool {
        self.matmul_uninit(isa, x, m, crate::linear::as_uninit(out))
    }

    /// [`DenseLinear::matmul`] with the kernel of `isa` (`false` also when this CPU does not
    /// execute it), into an output that may be uninitialized: returning `true`, it has written
    /// all `m * n` floats of `out` (every output belongs to exactly one work item, whose kernel
    /// stores it).
    pub(crate) fn matmul_uninit(
        &self,
        isa: Isa,
        x: &[f32],
        m: usize,
        out: &mut [std::mem::MaybeUninit<f32>],
    ) -> bool {
        let p = &*self.w;
        if m == 0 || x.len() != m * p.k || out.len() != m * p.n || !Isa::available().contains(&isa)
        {
            return false;
        }
        let ptr = OutPtr(out.as_mut_ptr().cast());
        let xp = XPtr(x.as_ptr());
        split(m, p.tiles, m * p.n * p.k, |tiles, toks| {
            let mut t0 = toks.start;
            while t0 < toks.end {
                let mt = (toks.end - t0).min(MT);
                for tile in tiles.clone() {
                    let call = DenseCall {
                        p,
                        x: xp.get(),
                        tile,
                        t0,
                        // SAFETY: `tile * 16 < n + 16`: inside `out` or one tile past a row
                        // start, never dereferenced beyond the row's `cols` outputs.
                        out: unsafe { ptr.get().add(tile * DTILE) },
                        ldo: p.n,
                        cols: (p.n - tile * DTILE).min(DTILE),
                    };
                    // SAFETY: `tile < p.tiles`, rows `t0..t0 + mt` of `x` exist (`x.len()`
                    // checked), and the written outputs are this item's alone (`split`).
                    unsafe { dense_dispatch(isa, mt, call) };
                }
                t0 += mt;
            }
        });
        true
    }

    /// Applies the layer to `x` of shape `[..., k]` (f32 on the CPU; other float types are
    /// converted and the result converted back).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        if dtype == candle_core::DType::F32 {
            x.contiguous()?.apply_op1_no_bwd(self)
        } else {
            x.to_dtype(candle_core::DType::F32)?
                .contiguous()?
                .apply_op1_no_bwd(self)?
                .to_dtype(dtype)
        }
    }
}

#[derive(Clone, Copy)]
struct XPtr(*const f32);
// SAFETY: the activations are only read while the call runs.
unsafe impl Send for XPtr {}
// SAFETY: as for `Send`.
unsafe impl Sync for XPtr {}

impl XPtr {
    fn get(self) -> *const f32 {
        self.0
    }
}

/// Runs the dense kernel of `isa` for `mt` rows.
///
/// # Safety
/// `c` must meet the [`DenseCall`] contract.
unsafe fn dense_dispatch(isa: Isa, mt: usize, c: DenseCall<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::arch::x86::dense::{tile_avx2, tile_avx512};
        macro_rules! by_mt {
            ($f:ident) => {
                // SAFETY: the instruction set was checked when it was selected; the call's
                // bounds are the caller's contract.
                unsafe {
                    match mt {
                        1 => $f::<1>(c),
                        2 => $f::<2>(c),
                        3 => $f::<3>(c),
                        4 => $f::<4>(c),
                        5 => $f::<5>(c),
                        6 => $f::<6>(c),
                        7 => $f::<7>(c),
                        _ => $f::<8>(c),
                    }
                }
            };
        }
        match isa {
            Isa::Avx512Vnni => return by_mt!(tile_avx512),
            Isa::Avx2 | Isa::AvxVnni => return by_mt!(tile_avx2),
            _ => {}
        }
    }
    // Only x86-64 has dense kernels of its own so far.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    // SAFETY: the caller's contract.
    unsafe { tile_portable(c, mt) }
}

/// The portable kernel: the same fused multiply-adds, one output at a time.
///
/// # Safety
/// `c` must meet the [`DenseCall`] contract for `mt` rows.
unsafe fn tile_portable(c: DenseCall<'_>, mt: usize) {
    let (p, k) = (c.p, c.p.k);
    let w = &p.w[c.tile * k * DTILE..(c.tile + 1) * k * DTILE];
    for t in 0..mt {
        // SAFETY: row `t0 + t` of `x` exists (the contract): `k` values.
        let x = unsafe { std::slice::from_raw_parts(c.x.add((c.t0 + t) * k), k) };
        for r in 0..c.cols {
            let mut acc = 0f32;
            for (i, &xv) in x.iter().enumerate() {
                acc = xv.mul_add(w[i * DTILE + r], acc);
            }
            // SAFETY: output `r < cols` of row `t0 + t`, writable by the contract.
            unsafe { *c.out.add((c.t0 + t) * c.ldo + r) = acc };
        }
    }
}

impl CustomOp1 for DenseLinear {
    fn name(&self) -> &'static str {
        "callm-dense-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &self.w;
        let (mut y, shape) =
            crate::linear::linear_fwd("dense", (w.k, w.n), storage, layout, |x, m, out| {
                self.matmul_uninit(crate::isa(), x, m, out)
            })?;
        if let (Some(b), CpuStorage::F32(v)) = (&self.bias, &mut y) {
            crate::linear::add_rows(v, b);
        }
        Ok((y, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::random_f32;
    use rand::SeedableRng;

    /// The bias inside the op adds what candle's `broadcast_add` adds, bit for bit, for decode
    /// rows and for enough rows to be added in parallel; a bias of the wrong length is refused.
    #[test]
    fn bias_is_added_as_candle_adds_it() {
        use candle_core::{Device, Tensor};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let (n, k) = (48, 64);
        let lin = DenseLinear::new(&random_f32(n * k, &mut rng), n, k).unwrap();
        let b = random_f32(n, &mut rng);
        let biased = lin.clone().with_bias(b.clone()).expect("one per output");
        let bt = Tensor::from_vec(b, n, &Device::Cpu).unwrap();
        for m in [1, 3, 80] {
            let x = Tensor::from_vec(random_f32(m * k, &mut rng), (m, k), &Device::Cpu).unwrap();
            let want = lin.forward(&x).unwrap().broadcast_add(&bt).unwrap();
            let got = biased.forward(&x).unwrap();
            assert_eq!(
                got.to_vec2::<f32>().unwrap(),
                want.to_vec2::<f32>().unwrap()
            );
        }
        assert!(lin.with_bias(vec![0.0; n + 1]).is_none());
    }

    #[test]
    fn matches_f64_and_every_row_is_the_same_alone() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(41);
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 17, 5),
            (13, 40, 64),
            (70, 33, 96),
            (9, 300, 130),
        ] {
            let w = random_f32(n * k, &mut rng);
            let x = random_f32(m * k, &mut rng);
            let lin = DenseLinear::new(&w, n, k).unwrap();
            let mut all = vec![0f32; m * n];
            assert!(lin.matmul(&x, m, &mut all));
            // Every instruction set computes the same numbers.
            for &isa in Isa::available() {
                let mut other = vec![0f32; m * n];
                assert!(lin.matmul_with(isa, &x, m, &mut other));
                assert_eq!(other, all, "{isa:?}");
            }
            for t in 0..m {
                for r in 0..n {
                    let want: f64 = (0..k)
                        .map(|i| x[t * k + i] as f64 * w[r * k + i] as f64)
                        .sum();
                    let got = all[t * n + r] as f64;
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{got} {want}"
                    );
                }
                // The same row alone, and in a call of two rows at another offset.
                let mut one = vec![0f32; n];
                assert!(lin.matmul(&x[t * k..(t + 1) * k], 1, &mut one));
                assert_eq!(one, all[t * n..(t + 1) * n], "row {t} of {m}");
                if t > 0 {
                    let mut two = vec![0f32; 2 * n];
                    assert!(lin.matmul(&x[(t - 1) * k..(t + 1) * k], 2, &mut two));
                    assert_eq!(&two[n..], &all[t * n..(t + 1) * n]);
                }
            }
            // The definition: one fused multiply-add per input, in order.
            let (t, r) = (m - 1, n - 1);
            let mut acc = 0f32;
            for i in 0..k {
                acc = x[t * k + i].mul_add(w[r * k + i], acc);
            }
            assert_eq!(acc, all[t * n + r]);
        }
        assert!(DenseLinear::new(&[1.0; 6], 4, 2).is_none());
        let lin = DenseLinear::new(&[1.0; 6], 3, 2).unwrap();
        assert!(!lin.matmul(&[1.0; 3], 1, &mut [0.0; 3]));
    }
}
