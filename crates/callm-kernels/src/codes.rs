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
/// IQ4_NL.
pub(crate) const K_IQ4NL: u8 = 5;

/// Q4_K.
pub(crate) const K_Q4K: u8 = 0;
/// Q5_K.
pub(crate) const K_Q5K: u8 = 1;
/// Q6_K.
pub(crate) const K_Q6K: u8 = 2;
/// Q2_K.
pub(crate) const K_Q2K: u8 = 3;
/// Q3_K.
pub(crate) const K_Q3K: u8 = 4;
/// IQ4_XS.
pub(crate) const K_IQ4XS: u8 = 5;

/// [`crate::blocks::IQ4_TABLE`] made unsigned (`+ 128`): the table the unsigned kernels
/// (`vpdpbusd`) look the IQ kinds' nibbles up in, taking `128 · Σx` out of the sum afterwards
/// (x86 only: NEON looks up the signed table).
#[cfg(target_arch = "x86_64")]
pub(crate) const IQ4_TABLE_U: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = (crate::blocks::IQ4_TABLE[i] as i16 + 128) as u8;
        i += 1;
    }
    t
};

/// Whether the 32-value kind's nibbles index [`crate::blocks::IQ4_TABLE`] (IQ4_NL).
pub(crate) const fn lookup(k: u8) -> bool {
    k == K_IQ4NL
}

/// Whether the K-quant's nibbles index [`crate::blocks::IQ4_TABLE`] (IQ4_XS).
pub(crate) const fn k_lookup(k: u8) -> bool {
    k == K_IQ4XS
}

/// Whether the K-quant has an integer scale per 16 values (Q2_K, Q3_K, Q6_K), not per 32.
pub(crate) const fn k_scale_per_16(k: u8) -> bool {
    k == K_Q6K || k == K_Q2K || k == K_Q3K
}

/// Whether the K-quant has minimums (Q2_K per 16 values, Q4_K/Q5_K per 32).
pub(crate) const fn k_has_min(k: u8) -> bool {
    matches!(k, K_Q2K | K_Q4K | K_Q5K)
}

/// The offset that makes the K-quant's integers unsigned ([`BlockKind::offset`]; IQ4_XS: the
/// offset of `IQ4_TABLE_U`, for the kernels that look it up unsigned).
pub(crate) const fn k_offset(k: u8) -> i32 {
    match k {
        K_Q6K => 32,
        K_Q3K => 4,
        K_IQ4XS => 128,
        _ => 0,
    }
}

/// Whether the K-quant's lines hold two bits per value (Q2_K, Q3_K): two lines per block.
pub(crate) const fn k_two_bit(k: u8) -> bool {
    k == K_Q2K || k == K_Q3K
}

/// Quant lines per 32-value tile block of a K-quant.
pub(crate) const fn k_lines(k: u8) -> usize {
    if k_two_bit(k) {
        2
    } else {
        4
    }
}

/// Pairs of blocks' minimums per superblock in `PackedMatrix::kmin` (Q4_K/Q5_K: 4 pairs of
/// 32-value blocks; Q2_K: 8 pairs of 16-value groups, one per block).
pub(crate) const fn k_min_pairs(k: u8) -> usize {
    if k == K_Q2K {
        8
    } else {
        4
    }
}

/// Whether the 32-value kind has a per-block minimum.
pub(crate) const fn has_min(k: u8) -> bool {
    k == K_Q4_1 || k == K_Q5_1
}

/// Whether the 32-value kind has a fifth bit per value.
pub(crate) const fn has_high_bit(k: u8) -> bool {
    k == K_Q5_0 || k == K_Q5_1
}

/// The offset that makes the 32-value kind's integers unsigned ([`BlockKind::offset`]; IQ4_NL:
/// the offset of `IQ4_TABLE_U`, for the kernels that look it up unsigned).
pub(crate) const fn offset_of(k: u8) -> i32 {
    match k {
        K_Q4_0 => 8,
        K_Q5_0 => 16,
        K_Q8_0 | K_IQ4NL => 128,
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
        BlockKind::IQ4NL => K_IQ4NL,
        // K-quants have their own kernels and codes (`k_code`); never dispatched here.
        BlockKind::Q8_0
        | BlockKind::Q2K
        | BlockKind::Q3K
        | BlockKind::Q4K
        | BlockKind::Q5K
        | BlockKind::Q6K
        | BlockKind::IQ4XS => K_Q8_0,
    }
}

/// The code of a K-quant kind.
pub(crate) fn k_code(kind: BlockKind) -> u8 {
    match kind {
        BlockKind::Q4K => K_Q4K,
        BlockKind::Q5K => K_Q5K,
        BlockKind::Q2K => K_Q2K,
        BlockKind::Q3K => K_Q3K,
        BlockKind::IQ4XS => K_IQ4XS,
        _ => K_Q6K,
    }
}
