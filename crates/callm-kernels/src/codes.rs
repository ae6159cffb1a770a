//! Compile-time codes for the block kinds, shared by the architecture kernels (`arch::x86`,
//! `arch::arm`): each kernel is monomorphised per kind, so the kind's properties below fold
//! into constants.

use crate::blocks::BlockKind;

/// Q4_0.
pub(crate) const K_Q4_0: u8 = 0;
/// Q4_1.
pub(crate) const K_Q4_1: u8 = 1;
/// Q5_0.
pub(crate) const K_Q5_0: u8 = 2;
/// Q8_0.
pub(crate) const K_Q8_0: u8 = 3;
/// Q5_1.
pub(crate) const K_Q5_1: u8 = 4;

/// Q4_K.
pub(crate) const K_Q4K: u8 = 0;
/// Q5_K.
pub(crate) const K_Q5K: u8 = 1;
/// Q6_K.
pub(crate) const K_Q6K: u8 = 2;

/// Whether the 32-value kind has a per-block minimum.
pub(crate) const fn has_min(k: u8) -> bool {
    k == K_Q4_1 || k == K_Q5_1
}

/// Whether the 32-value kind has a fifth bit per value.
pub(crate) const fn has_high_bit(k: u8) -> bool {
    k == K_Q5_0 || k == K_Q5_1
}

/// The offset that makes the 32-value kind's integers unsigned ([`BlockKind::offset`]).
pub(crate) const fn offset_of(k: u8) -> i32 {
    match k {
        K_Q4_0 => 8,
        K_Q5_0 => 16,
        K_Q8_0 => 128,
        _ => 0,
    }
}

/// The code of a 32-value kind.
pub(crate) fn kind_code(kind: BlockKind) -> u8 {
    match kind {
        BlockKind::Q4_0 => K_Q4_0,
        BlockKind::Q4_1 => K_Q4_1,
        BlockKind::Q5_0 => K_Q5_0,
        BlockKind::Q5_1 => K_Q5_1,
        // K-quants have their own kernels and codes (`k_code`); never dispatched here.
        BlockKind::Q8_0 | BlockKind::Q4K | BlockKind::Q5K | BlockKind::Q6K => K_Q8_0,
    }
}

/// The code of a K-quant kind.
pub(crate) fn k_code(kind: BlockKind) -> u8 {
    match kind {
        BlockKind::Q4K => K_Q4K,
        BlockKind::Q5K => K_Q5K,
        _ => K_Q6K,
    }
}
