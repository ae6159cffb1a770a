//! Code written in one instruction set's intrinsics, one folder per architecture: [`x86`]
//! (AVX-512 VNNI and AVX2) and `arm` (aarch64 NEON). Each folder holds the tile kernels of the
//! packed matmul (`tiles`: the 32-value kinds, `tiles_k`: the K-quants) and the vector `exp`;
//! x86 also the activation quantization. The portable modules dispatch to them by [`crate::Isa`].

#[cfg(target_arch = "aarch64")]
pub(crate) mod arm;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// Constants of the vector `exp` (x86's `exp8`, NEON's `exp4`): Cephes' `expf`, `2^k · e^r`
/// with `|r| ≤ ln2/2`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) mod exp_c {
    /// Inputs below this give 0 (`e^x` underflows f32).
    pub(crate) const LO: f32 = -87.336_55;
    /// Inputs are clamped here (softmax only passes values ≤ 0).
    pub(crate) const HI: f32 = 88.376_26;
    /// ln 2 in two parts, high and low, for an exact `r = x − k·ln 2`.
    pub(crate) const LN2_HI: f32 = 0.693_359_4;
    /// The low part of ln 2.
    pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
    /// `P(r)` for `e^r ≈ 1 + r + r²·P(r)`, highest degree first (Horner).
    pub(crate) const POLY: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
}
