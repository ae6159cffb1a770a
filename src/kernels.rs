//! callm's CPU kernels, from the `callm-kernels` workspace crate (`crates/callm-kernels`: packed
//! quantized matmul, row-invariant dense matmul, batched attention and rotary encoding), and
//! callm's setting for them,
//! `CALLM_KERNELS`. The crate is its own package so that the dev profile (tests,
//! `scripts/quickstart.sh`) compiles it fully optimised; it knows nothing of callm.
//!
//! The kernels run on rayon's global pool, which `crate::device::set_threads` sizes and on
//! which `crate::device::on_pool` runs each forward pass.

use std::sync::OnceLock;

pub use callm_kernels::{
    attention, dequantize, rope, BlockKind, DenseLinear, Isa, PackedLinear, ResidualAdd, RmsNorm,
    SiluMul,
};

/// Whether `CALLM_KERNELS` is set to `value` now.
fn setting_is(value: &str) -> bool {
    std::env::var("CALLM_KERNELS").is_ok_and(|v| v == value)
}

/// The instruction set the packed kernels use on this CPU: the best available, lowered by
/// `CALLM_KERNELS=avx2|avxvnni|neon|scalar` (for testing; a set this CPU lacks is ignored). Chosen
/// once, before any kernel runs ([`callm_kernels::select_isa`]).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let wanted = match std::env::var("CALLM_KERNELS").as_deref() {
            Ok("avx2") => Some(Isa::Avx2),
            Ok("avxvnni") => Some(Isa::AvxVnni),
            Ok("neon") => Some(Isa::Neon),
            Ok("scalar") => Some(Isa::Scalar),
            _ => None,
        };
        callm_kernels::select_isa(wanted)
    })
}

/// Whether callm's packed kernels should replace candle's quantized matmul on this CPU: a SIMD
/// kernel runs here and `CALLM_KERNELS=off` is not set (read at each call: a model loaded
/// after the setting changed follows it).
pub fn enabled() -> bool {
    isa() > Isa::Scalar && !setting_is("off")
}

/// What runs a CPU forward pass's quantized matmuls, for benchmark reports: the instruction
/// set of callm's kernels, or `candle` (`CALLM_KERNELS=off`, or a CPU without a SIMD kernel).
pub fn describe() -> &'static str {
    if enabled() {
        isa().name()
    } else {
        "candle"
    }
}

/// Whether callm's CPU attention ([`attention`]), dense matmul ([`DenseLinear`]) and RMS norm
/// ([`rms_norm`]) replace candle's ops for f32 activations: unless `CALLM_KERNELS=off` (candle as it ships, for A/B
/// measurements; results are then not batch-invariant). Read once.
pub fn fused_attention() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        // The instruction set is chosen before the first attention kernel runs.
        isa();
        !setting_is("off")
    })
}

/// RMS normalisation over the last dimension of `x` with weight `w`: callm's row kernel for
/// f32 on the CPU (the same numbers for a row whatever the batch, rows in parallel), candle's
/// op elsewhere or with `CALLM_KERNELS=off`.
pub fn rms_norm(
    x: &candle_core::Tensor,
    w: &candle_core::Tensor,
    eps: f32,
) -> candle_core::Result<candle_core::Tensor> {
    use candle_core::DType;
    if x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && fused_attention()
    {
        x.contiguous()?.apply_op2_no_bwd(w, &RmsNorm { eps })
    } else {
        candle_nn::ops::rms_norm(x, w, eps)
    }
}

/// The residual update `x + scale * branch`: callm's op on rayon's pool for f32 on the CPU
/// (candle's add would hand a large one to its own spinning pool, against rayon's; the same
/// numbers), candle's ops elsewhere or with `CALLM_KERNELS=off`.
pub fn residual_add(
    x: &candle_core::Tensor,
    branch: &candle_core::Tensor,
    scale: Option<f64>,
) -> candle_core::Result<candle_core::Tensor> {
    use candle_core::DType;
    if x.device().is_cpu()
        && x.dtype() == DType::F32
        && branch.dtype() == DType::F32
        && x.dims() == branch.dims()
        && fused_attention()
    {
        let op = ResidualAdd {
            scale: scale.map(|s| s as f32),
        };
        x.contiguous()?.apply_op2_no_bwd(&branch.contiguous()?, &op)
    } else {
        match scale {
            Some(s) => x + (branch * s)?,
            None => x + branch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels run with the instruction set callm chose, and the packed kernels are on
    /// wherever a SIMD set is available (the tests run without `CALLM_KERNELS`).
    #[test]
    fn kernels_follow_the_setting() {
        if std::env::var_os("CALLM_KERNELS").is_some() {
            return;
        }
        assert_eq!(callm_kernels::select_isa(None), isa());
        assert_eq!(enabled(), isa() > Isa::Scalar);
        assert!(fused_attention());
        #[cfg(target_arch = "aarch64")]
        assert!(isa() >= Isa::Neon && enabled());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            isa() >= Isa::Avx2,
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        );
    }
}
