//! Fused causal attention on the CPU (f32), behind candle's [`CustomOp3`] interface: scores,
//! mask, softmax and the weighted sum of values in one pass over the cached keys and values,
//! with an online (flash-style) softmax over blocks of [`KEY_BLOCK`] keys, instead of the
//! `[heads, n, L]` score tensor, mask tensor and two matmuls of the plain path.
//!
//! The decoder uses it for single-token steps (decode), where it saves the small ops' overhead
//! (~8% of a SmolLM2 token on one thread). For prefill, candle's batched matmuls stay: their
//! microkernels compute many query rows' scores faster than this kernel's row-by-row dots
//! (measured: pp1024 at about half the speed with this kernel).
//!
//! Each query row is computed on its own, in the same operations whatever else is in the call
//! (key blocks sit on absolute positions), so a row's output does not depend on how a prompt
//! was split into chunks. Rows of the same kv head are taken [`ROWS`] at a time so each key and
//! value is loaded once for all of them; blocks of rows run on rayon's pool.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

/// Keys per online-softmax step.
pub(crate) const KEY_BLOCK: usize = 32;
/// Query rows sharing each key and value load.
const ROWS: usize = 4;

/// Causal (optionally sliding-window) attention of `q` `[kv_heads, rep * n, hd]` (the `rep`
/// query heads of each kv head, each with `n` positions) over `k`, `v` `[kv_heads, L, hd]`,
/// where the `n` queries are the last `n` of the `L` positions. Output: the shape of `q`.
#[derive(Debug, Clone, Copy)]
pub struct CausalAttention {
    /// Query heads per kv head.
    pub rep: usize,
    /// Score scale (`1/sqrt(hd)` usually).
    pub scale: f32,
    /// Keys a query sees at most, itself included (`usize::MAX`: no window).
    pub window: usize,
}

/// Where one tensor's values sit in its storage: `[heads, rows, hd]` with a contiguous last
/// dimension.
#[derive(Clone, Copy)]
struct View {
    start: usize,
    head_stride: usize,
    row_stride: usize,
}

fn view(l: &Layout, what: &str) -> candle_core::Result<(View, [usize; 3])> {
    let dims: [usize; 3] = l
        .shape()
        .dims()
        .try_into()
        .map_err(|_| candle_core::Error::Msg(format!("attention: {what} must be 3-d")))?;
    let st = l.stride();
    if dims[2] > 1 && st[2] != 1 {
        candle_core::bail!("attention: {what} needs a contiguous last dimension");
    }
    Ok((
        View {
            start: l.start_offset(),
            head_stride: st[0],
            row_stride: st[1],
        },
        dims,
    ))
}

fn f32s<'a>(s: &'a CpuStorage, what: &str) -> candle_core::Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v),
        _ => candle_core::bail!("attention: {what} must be f32"),
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "callm-causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (qv, [heads, rows, hd]) = view(l1, "q")?;
        let (kv, [kh, len, khd]) = view(l2, "k")?;
        let (vv, vdims) = view(l3, "v")?;
        if kh != heads || khd != hd || vdims != [kh, len, khd] || self.rep == 0 {
            candle_core::bail!(
                "attention: shapes q {:?} k {:?} v {vdims:?} do not match",
                [heads, rows, hd],
                [kh, len, khd]
            );
        }
        if !rows.is_multiple_of(self.rep) || rows / self.rep > len {
            candle_core::bail!(
                "attention: {rows} query rows for {} heads and {len} keys",
                self.rep
            );
        }
        let (q, k, v) = (f32s(s1, "q")?, f32s(s2, "k")?, f32s(s3, "v")?);
        if heads == 0 || rows == 0 || hd == 0 {
            return Ok((CpuStorage::F32(vec![]), l1.shape().clone()));
        }
        let need =
            |w: View, r: usize| w.start + (heads - 1) * w.head_stride + (r - 1) * w.row_stride + hd;
        if q.len() < need(qv, rows) || k.len() < need(kv, len) || v.len() < need(vv, len) {
            candle_core::bail!("attention: storage shorter than its layout");
        }
        let n = rows / self.rep;
        let job = Job {
            op: *self,
            q,
            k,
            v,
            qv,
            kv,
            vv,
            hd,
            rows,
            n,
            len,
        };
        let mut out = vec![0f32; heads * rows * hd];
        // Each block of up to ROWS rows of a head writes its own part of `out`.
        out.par_chunks_mut(rows * hd)
            .enumerate()
            .flat_map(|(h, head)| {
                head.par_chunks_mut(ROWS * hd)
                    .enumerate()
                    .map(move |(b, dst)| (h, b * ROWS, dst))
            })
            .for_each(|(h, r0, dst)| job.rows(h, r0, dst));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// One call's inputs.
struct Job<'a> {
    op: CausalAttention,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    qv: View,
    kv: View,
    vv: View,
    hd: usize,
    rows: usize,
    n: usize,
    len: usize,
}

impl Job<'_> {
    /// Rows `r0..r0 + dst.len() / hd` of kv head `h`, written to `dst`.
    fn rows(&self, h: usize, r0: usize, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::isa().has_avx2() {
                // SAFETY: the selected instruction set includes AVX2 and FMA (detected at run
                // time).
                unsafe { self.rows_avx2(h, r0, dst) };
                return;
            }
        }
        self.rows_generic(h, r0, dst)
    }

    /// [`Job::rows_generic`] compiled for AVX2 (its loops vectorize there).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn rows_avx2(&self, h: usize, r0: usize, dst: &mut [f32]) {
        self.rows_generic(h, r0, dst)
    }

    #[inline(always)]
    fn rows_generic(&self, h: usize, r0: usize, dst: &mut [f32]) {
        let hd = self.hd;
        let nr = dst.len() / hd;
        debug_assert!(nr <= ROWS && r0 + nr <= self.rows);
        let first = self.len - self.n;
        // Per row: its query, absolute position, first visible key, running max and sum.
        let mut qpos = [0usize; ROWS];
        let mut lo = [0usize; ROWS];
        let mut max = [f32::NEG_INFINITY; ROWS];
        let mut sum = [0f32; ROWS];
        let mut scores = [[0f32; KEY_BLOCK]; ROWS];
        let q_of = |r: usize| {
            let at = self.qv.start + h * self.qv.head_stride + r * self.qv.row_stride;
            &self.q[at..at + hd]
        };
        for i in 0..nr {
            qpos[i] = first + (r0 + i) % self.n;
            lo[i] = (qpos[i] + 1).saturating_sub(self.op.window);
        }
        // `dst` starts zeroed (a fresh output buffer).
        let key = |j: usize| {
            let at = self.kv.start + h * self.kv.head_stride + j * self.kv.row_stride;
            &self.k[at..at + hd]
        };
        let val = |j: usize| {
            let at = self.vv.start + h * self.vv.head_stride + j * self.vv.row_stride;
            &self.v[at..at + hd]
        };
        let (min_lo, max_pos) = (
            lo[..nr].iter().copied().min().unwrap_or(0),
            qpos[..nr].iter().copied().max().unwrap_or(0),
        );
        let mut j0 = min_lo / KEY_BLOCK * KEY_BLOCK;
        while j0 <= max_pos {
            let j1 = (j0 + KEY_BLOCK).min(max_pos + 1);
            // Scores of the block; keys a row may not see stay at -inf.
            for (i, s) in scores[..nr].iter_mut().enumerate() {
                s.fill(f32::NEG_INFINITY);
                let q = q_of(r0 + i);
                for j in j0.max(lo[i])..j1.min(qpos[i] + 1) {
                    s[j - j0] = dot(q, key(j)) * self.op.scale;
                }
            }
            for i in 0..nr {
                let s = &mut scores[i][..j1 - j0];
                let bmax = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if bmax == f32::NEG_INFINITY {
                    // Nothing visible in this block: probabilities 0, state unchanged.
                    s.fill(0.0);
                    continue;
                }
                let m = max[i].max(bmax);
                let correction = (max[i] - m).exp();
                max[i] = m;
                let mut bsum = 0f32;
                for p in s.iter_mut() {
                    *p = (*p - m).exp();
                    bsum += *p;
                }
                sum[i] = sum[i] * correction + bsum;
                if correction != 1.0 {
                    for o in &mut dst[i * hd..(i + 1) * hd] {
                        *o *= correction;
                    }
                }
            }
            // out[i] += Σ_j p[i][j] · v[j], 8 dimensions at a time held in a register across
            // the block's keys.
            for i in 0..nr {
                let ps = &scores[i][..j1 - j0];
                let row = &mut dst[i * hd..(i + 1) * hd];
                let mut c = 0;
                while c + 8 <= hd {
                    let mut acc = [0f32; 8];
                    acc.copy_from_slice(&row[c..c + 8]);
                    for (jj, &p) in ps.iter().enumerate() {
                        let vj = &val(j0 + jj)[c..c + 8];
                        for l in 0..8 {
                            acc[l] += p * vj[l];
                        }
                    }
                    row[c..c + 8].copy_from_slice(&acc);
                    c += 8;
                }
                for (d, o) in row.iter_mut().enumerate().skip(c) {
                    for (jj, &p) in ps.iter().enumerate() {
                        *o += p * val(j0 + jj)[d];
                    }
                }
            }
            j0 += KEY_BLOCK;
        }
        for i in 0..nr {
            let inv = if sum[i] > 0.0 { 1.0 / sum[i] } else { 0.0 };
            for o in &mut dst[i * hd..(i + 1) * hd] {
                *o *= inv;
            }
        }
    }
}

/// Dot product in 8 interleaved partial sums (vectorizes to one 8-lane register).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    let s4 = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (s4[0] + s4[2]) + (s4[1] + s4[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    /// Plain attention in f64: every score, the mask, a two-pass softmax.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        heads: usize,
        rep: usize,
        n: usize,
        len: usize,
        hd: usize,
        window: usize,
        scale: f32,
    ) -> Vec<f32> {
        let rows = rep * n;
        let mut out = vec![0f32; heads * rows * hd];
        for h in 0..heads {
            for r in 0..rows {
                let qp = len - n + r % n;
                let qr = &q[(h * rows + r) * hd..][..hd];
                let vis: Vec<usize> = (0..len).filter(|&j| j <= qp && qp - j < window).collect();
                let s: Vec<f64> = vis
                    .iter()
                    .map(|&j| {
                        let kr = &k[(h * len + j) * hd..][..hd];
                        qr.iter()
                            .zip(kr)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..hd {
                    let acc: f64 = vis
                        .iter()
                        .zip(&e)
                        .map(|(&j, p)| p * v[(h * len + j) * hd + d] as f64)
                        .sum();
                    out[(h * rows + r) * hd + d] = (acc / z) as f32;
                }
            }
        }
        out
    }

    fn rand_vec(len: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    #[test]
    fn matches_plain_attention() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let dev = Device::Cpu;
        // (heads, rep, n, len, hd, window)
        for &(heads, rep, n, len, hd, window) in &[
            (1, 1, 1, 1, 8, usize::MAX),
            (2, 3, 1, 70, 64, usize::MAX),
            (3, 2, 5, 5, 16, usize::MAX),
            (2, 4, 37, 100, 20, usize::MAX),
            (1, 2, 64, 200, 64, 50),
            (2, 1, 3, 40, 12, 1),
        ] {
            let rows = rep * n;
            let q = rand_vec(heads * rows * hd, &mut rng);
            let k = rand_vec(heads * len * hd, &mut rng);
            let v = rand_vec(heads * len * hd, &mut rng);
            let scale = 1.0 / (hd as f32).sqrt();
            let want = reference(&q, &k, &v, heads, rep, n, len, hd, window, scale);
            // Keys and values as a cache view: a narrowed, larger buffer.
            let cap = len + 7;
            let mut kb = vec![0f32; heads * cap * hd];
            let mut vb = vec![0f32; heads * cap * hd];
            for h in 0..heads {
                kb[h * cap * hd..][..len * hd].copy_from_slice(&k[h * len * hd..][..len * hd]);
                vb[h * cap * hd..][..len * hd].copy_from_slice(&v[h * len * hd..][..len * hd]);
            }
            let kt = Tensor::from_vec(kb, (heads, cap, hd), &dev)
                .unwrap()
                .narrow(1, 0, len)
                .unwrap();
            let vt = Tensor::from_vec(vb, (heads, cap, hd), &dev)
                .unwrap()
                .narrow(1, 0, len)
                .unwrap();
            let qt = Tensor::from_vec(q, (heads, rows, hd), &dev).unwrap();
            let op = CausalAttention { rep, scale, window };
            let got: Vec<f32> = qt
                .apply_op3_no_bwd(&kt, &vt, &op)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{heads},{rep},{n},{len},{hd},{window} at {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn rows_do_not_depend_on_the_chunking() {
        // The last 8 positions computed in one call equal the same positions computed as
        // 8 one-token calls over growing prefixes.
        let mut rng = rand::rngs::StdRng::seed_from_u64(22);
        let dev = Device::Cpu;
        let (heads, rep, len, hd) = (2, 2, 90, 32);
        let n = 8;
        let q = rand_vec(heads * rep * n * hd, &mut rng);
        let k =
            Tensor::from_vec(rand_vec(heads * len * hd, &mut rng), (heads, len, hd), &dev).unwrap();
        let v =
            Tensor::from_vec(rand_vec(heads * len * hd, &mut rng), (heads, len, hd), &dev).unwrap();
        let op = CausalAttention {
            rep,
            scale: 0.17,
            window: usize::MAX,
        };
        let qt = Tensor::from_vec(q.clone(), (heads, rep * n, hd), &dev).unwrap();
        let all = qt.apply_op3_no_bwd(&k, &v, &op).unwrap();
        for i in 0..n {
            let one: Vec<f32> = (0..heads * rep)
                .flat_map(|hr| q[(hr * n + i) * hd..][..hd].to_vec())
                .collect();
            let l = len - n + i + 1;
            let qt = Tensor::from_vec(one, (heads, rep, hd), &dev).unwrap();
            let got = qt
                .apply_op3_no_bwd(
                    &k.narrow(1, 0, l).unwrap(),
                    &v.narrow(1, 0, l).unwrap(),
                    &op,
                )
                .unwrap();
            for h in 0..heads {
                for r in 0..rep {
                    let a: Vec<f32> = all
                        .get(h)
                        .unwrap()
                        .get(r * n + i)
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    let b: Vec<f32> = got.get(h).unwrap().get(r).unwrap().to_vec1().unwrap();
                    assert_eq!(a, b, "head {h} rep {r} position {i}");
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let z = |d: (usize, usize, usize)| Tensor::zeros(d, candle_core::DType::F32, &dev).unwrap();
        let op = CausalAttention {
            rep: 2,
            scale: 1.0,
            window: usize::MAX,
        };
        assert!(z((1, 3, 8))
            .apply_op3_no_bwd(&z((1, 4, 8)), &z((1, 4, 8)), &op)
            .is_err());
        assert!(z((1, 2, 8))
            .apply_op3_no_bwd(&z((2, 4, 8)), &z((2, 4, 8)), &op)
            .is_err());
        assert!(z((1, 10, 8))
            .apply_op3_no_bwd(&z((1, 4, 8)), &z((1, 4, 8)), &op)
            .is_err());
        let f16 = Tensor::zeros((1, 2, 8), candle_core::DType::F16, &dev).unwrap();
        assert!(f16
            .apply_op3_no_bwd(&z((1, 4, 8)), &z((1, 4, 8)), &op)
            .is_err());
    }
}
