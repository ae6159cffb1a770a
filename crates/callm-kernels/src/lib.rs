//! callm's CPU kernels for quantized matmuls and attention, behind candle's custom-op interfaces.
//!
//! candle 0.11 runs the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with one vector
//! dot per (weight row, token) on its own busy-waiting thread pool, and has only scalar dots
//! for Q4_1, Q5_0 and Q5_1. Here, weights are repacked at load into 16-row tiles (`pack`),
//! activations are quantized once per call (`act`), and one SIMD tile kernel (AVX-512 VNNI or
//! AVX2 on x86-64, NEON with or without `sdot` on aarch64, chosen at run time by what the CPU
//! executes) produces 16 outputs per weight load for up to 8 tokens (`matmul`), on rayon's
//! global pool (the caller sizes it). `blocks` holds the ggml formats and the scalar reference
//! every kernel is tested against.
//!
//! The K-quants Q4_K, Q5_K and Q6_K run natively (`kblocks`): activations are quantized as Q8_K
//! and the integer sums are ggml's, so results equal candle's own K-quant matmul up to float
//! summation order. Other block types stay on candle's kernels.
//!
//! Attention: [`attention::attend`], causal attention of a batch of sequences over their own
//! key/value caches, one algorithm for every query row (prefill and decode) whose result for a
//! row does not depend on the other rows; [`rope`] rotates rows at their own positions.
//! [`DenseLinear`] is the f32 matmul with the same property (candle's `gemm` changes its
//! reduction order with the shape of the call). Batch invariance is what lets callm batch many
//! sequences, chunk prompts any way and reuse any cached prefix without changing a result.
//!
//! Layout: portable code at the top (formats, packing, the work split, the scalar kernels); the
//! code written in one instruction set's intrinsics under `arch/` (`x86`, `arm`), one folder per
//! architecture as in ggml's `ggml-cpu/arch/`. A function compiled for AVX2 from portable code
//! (`#[target_feature]` on a generic body) stays next to that body.
//!
//! Unsafe code: every unsafe operation is in an `unsafe` block (`unsafe_op_in_unsafe_fn` is
//! denied) with a `SAFETY:` comment saying what makes it sound: the instruction set checked at
//! dispatch ([`Isa`]), and bounds that the safe entry points check before any kernel runs.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

mod act;
mod arch;
pub mod attention;
mod blocks;
mod codes;
mod dense;
mod glu;
mod huge;
mod kblocks;
mod linear;
mod matmul;
mod norm;
mod pack;
mod par;
mod residual;
pub mod rope;
mod scalar;

use std::sync::OnceLock;

pub use blocks::BlockKind;
pub use dense::DenseLinear;
pub use glu::{silu_mul, SiluMul};
pub use linear::PackedLinear;
pub use norm::RmsNorm;
pub use residual::ResidualAdd;

/// Dequantizes `data`, ggml blocks of `kind` as a GGUF file stores them, into `out` in ggml's
/// float operations (for the layers that do not run on the packed kernels: another device,
/// the kernels off, a table lookup). `false`, with nothing written, unless `out.len()` is whole
/// blocks and `data` holds exactly those blocks.
pub fn dequantize(kind: BlockKind, data: &[u8], out: &mut [f32]) -> bool {
    let per = kind.block_values();
    if !out.len().is_multiple_of(per) || data.len() != out.len() / per * kind.block_bytes() {
        return false;
    }
    blocks::dequantize_row(kind, data, out);
    true
}

/// The instruction set a kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust (slow; a fallback and a test reference).
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 with AVX-VNNI: `vpdpbusd` on 256-bit registers, without AVX-512 (Intel's client
    /// CPUs from Alder Lake on, whose cores lack AVX-512). The 32-value kinds' tile kernels use
    /// it; everything else runs the AVX2 code.
    AvxVnni,
    /// AVX-512 F/BW/VL + VNNI.
    Avx512Vnni,
    /// aarch64 NEON (Armv8.0): widening multiplies and pairwise adds.
    Neon,
    /// aarch64 NEON with the dot-product extension (`sdot`, Armv8.2+).
    NeonDot,
}

impl Isa {
    /// Every instruction set this CPU executes, best last (detected once). Never AMX: Linux
    /// grants its tile registers only on request (`arch_prctl`), and a tile-multiply kernel
    /// measured slower than VNNI for the 32-value kinds (BENCHMARKS.md, "AMX").
    pub(crate) fn available() -> &'static [Isa] {
        static AVAILABLE: OnceLock<Vec<Isa>> = OnceLock::new();
        AVAILABLE.get_or_init(|| {
            let mut v = vec![Isa::Scalar];
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
                {
                    v.push(Isa::Avx2);
                    if is_x86_feature_detected!("avxvnni") {
                        v.push(Isa::AvxVnni);
                    }
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
        })
    }

    /// The set's name, as `CALLM_KERNELS` spells those it accepts (for reports).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon+dotprod",
        }
    }

    /// Whether this is an x86-64 instruction set with AVX2 (the vectorized activation
    /// quantization, exp and attention paths).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn has_avx2(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::AvxVnni | Isa::Avx512Vnni)
    }
}

static SELECTED: OnceLock<Isa> = OnceLock::new();

/// Chooses the instruction set the kernels use, once per process: `wanted` where this CPU
/// executes it (a lower one than the best, for testing), else the best it executes. Returns the
/// one in effect, which is the first choice made: a later call, or one after a kernel ran
/// (which chooses the best), changes nothing.
pub fn select_isa(wanted: Option<Isa>) -> Isa {
    *SELECTED.get_or_init(|| {
        let available = Isa::available();
        let best = *available.last().unwrap_or(&Isa::Scalar);
        wanted.filter(|w| available.contains(w)).unwrap_or(best)
    })
}

/// The instruction set the kernels use (see [`select_isa`]).
pub(crate) fn isa() -> Isa {
    select_isa(None)
}

#[cfg(test)]
mod tests;
