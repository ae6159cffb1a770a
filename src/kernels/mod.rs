//! callm's own CPU kernels for quantized matmuls, behind candle's custom-op interface.
//!
//! candle 0.11 runs the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with one vector
//! dot per (weight row, token) on its own busy-waiting thread pool, and has only scalar dots
//! for Q4_1, Q5_0 and Q5_1. Here, weights are repacked at load into 16-row tiles ([`pack`]), activations are
//! quantized once per call ([`act`]), and one SIMD kernel ([`x86`]: AVX-512 VNNI or AVX2,
//! chosen at run time by what the CPU executes) produces 16 outputs per instruction for up to
//! 8 tokens per weight load, on rayon's pool (sized by `callm::device::set_threads`).
//! [`blocks`] holds the ggml formats and the scalar reference every kernel is tested against.
//!
//! On aarch64 the same layout runs on NEON kernels (`neon`, `neon_k`): `sdot` where the CPU has
//! the dot-product extension, widening multiplies on Armv8.0.
//!
//! The K-quants Q4_K, Q5_K and Q6_K run natively ([`kblocks`], [`x86_k`]): activations are
//! quantized as Q8_K and the integer sums are ggml's, so results equal candle's own K-quant
//! matmul up to float summation order. Other block types stay on candle's kernels.

pub mod act;
pub mod attention;
pub mod blocks;
mod codes;
pub mod kblocks;
pub mod matmul;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_k;
pub mod pack;
pub mod softmax;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_k;

use std::sync::{Arc, OnceLock};

use candle_core::quantized::QTensor;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

pub use blocks::BlockKind;
pub use pack::PackedMatrix;

/// The instruction set a kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust (slow; a fallback and a test reference).
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 F/BW/VL + VNNI.
    Avx512Vnni,
    /// aarch64 NEON (Armv8.0): widening multiplies and pairwise adds.
    Neon,
    /// aarch64 NEON with the dot-product extension (`sdot`, Armv8.2+).
    NeonDot,
}

impl Isa {
    /// Every instruction set this CPU executes, best last.
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                v.push(Isa::Avx2);
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
                {
                    v.push(Isa::Avx512Vnni);
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                v.push(Isa::Neon);
                if std::arch::is_aarch64_feature_detected!("dotprod") {
                    v.push(Isa::NeonDot);
                }
            }
        }
        v
    }

    /// Whether this is an x86-64 instruction set with AVX2 (the vectorized activation
    /// quantization, exp and attention paths).
    pub fn has_avx2(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::Avx512Vnni)
    }
}

/// The instruction set the packed kernels use on this CPU: the best available, lowered by
/// `CALLM_KERNELS=avx2|neon|scalar` (for testing; a set this CPU lacks is ignored). Never AMX,
/// which some VMs advertise but fault on.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let available = Isa::available();
        let best = *available.last().unwrap_or(&Isa::Scalar);
        let lowered = match std::env::var("CALLM_KERNELS").as_deref() {
            Ok("avx2") => Isa::Avx2,
            Ok("neon") => Isa::Neon,
            Ok("scalar") => Isa::Scalar,
            _ => best,
        };
        if available.contains(&lowered) {
            lowered
        } else {
            best
        }
    })
}

/// Whether callm's packed kernels should replace candle's quantized matmul on this CPU: a SIMD
/// kernel runs here and `CALLM_KERNELS=off` is not set.
pub fn enabled() -> bool {
    isa() > Isa::Scalar && std::env::var("CALLM_KERNELS").as_deref() != Ok("off")
}

/// Whether the fused CPU attention ([`attention`]) replaces candle's score/mask/softmax/matmul
/// sequence for f32 activations: unless `CALLM_KERNELS=off` (candle as it ships, for A/B
/// measurements).
pub fn fused_attention() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("CALLM_KERNELS").as_deref() != Ok("off"))
}

/// A quantized linear layer `y = x Wᵀ` on packed weights, applied to a candle tensor as a
/// [`CustomOp1`].
#[derive(Debug, Clone)]
pub struct PackedLinear {
    w: Arc<PackedMatrix>,
}

impl PackedLinear {
    /// Packs a CPU `QTensor` of shape `[n, k]` (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
    /// Q6_K); `None` when its block type is not handled here, `k` is not a multiple of the
    /// block size, or it does not live on the CPU.
    pub fn from_qtensor(q: &QTensor) -> Option<Self> {
        let (n, k) = q.shape().dims2().ok()?;
        if !q.device().is_cpu() {
            return None;
        }
        let w = PackedMatrix::pack(BlockKind::from_ggml(q.dtype())?, &q.data().ok()?, n, k)?;
        Some(PackedLinear { w: Arc::new(w) })
    }

    /// The packed weights.
    pub fn matrix(&self) -> &PackedMatrix {
        &self.w
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

impl CustomOp1 for PackedLinear {
    fn name(&self) -> &'static str {
        "callm-packed-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &self.w;
        let dims = layout.shape().dims();
        let Some((&k, lead)) = dims.split_last() else {
            candle_core::bail!("packed linear: scalar input");
        };
        if k != w.k {
            candle_core::bail!("packed linear: input has {k} columns, weights {}", w.k);
        }
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("packed linear: expected f32 input");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("packed linear: input is not contiguous");
        };
        let x = &data[start..end];
        let m = x.len() / k;
        let mut out = vec![0f32; m * w.n];
        if m > 0 && !matmul::matmul_with(isa(), w, x, m, &mut out) {
            candle_core::bail!("packed linear: size mismatch ({m}x{k} by {}x{})", w.n, w.k);
        }
        let mut shape = lead.to_vec();
        shape.push(w.n);
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_k;
