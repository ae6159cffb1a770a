//! The ggml block formats the packed kernels take, and the plain scalar reference of the
//! 32-value family (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): decoding one block and the vector dot product
//! of a weight row with a row of 8-bit activations, the way ggml defines them. The K-quants'
//! reference (256-value superblocks) is [`crate::kblocks`].

use candle_core::quantized::GgmlDType;
use half::f16;

/// Values per block for every kind this module handles.
pub(crate) const QK: usize = 32;

/// A ggml block type the packed kernels take: the 32-value family (with IQ4_NL), and the
/// K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and IQ4_XS on the same superblocks), whose 256-value
/// superblocks the kernels handle as eight 32-value blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// `d: f16, qs: [u8; 16]`; value = `d * (q - 8)`, `q` a nibble.
    Q4_0,
    /// `d: f16, m: f16, qs: [u8; 16]`; value = `d * q + m`, `q` a nibble.
    Q4_1,
    /// `d: f16, qh: [u8; 4], qs: [u8; 16]`; value = `d * (q - 16)`, `q` five bits (high bit in `qh`).
    Q5_0,
    /// `d: f16, m: f16, qh: [u8; 4], qs: [u8; 16]`; value = `d * q + m`, `q` five bits.
    Q5_1,
    /// `d: f16, qs: [i8; 32]`; value = `d * q`.
    Q8_0,
    /// 256 values: `d, dmin: f16`, 6-bit scale and minimum per 32 values, 4-bit `q`;
    /// value = `d * sc * q - dmin * m`.
    Q4K,
    /// As Q4_K with a fifth bit of `q` stored apart.
    Q5K,
    /// 256 values: 6-bit `q` (offset 32), an `i8` scale per 16 values, `d: f16`;
    /// value = `d * sc * (q - 32)`.
    Q6K,
    /// 256 values: 2-bit `q`, a 4-bit scale and a 4-bit minimum per 16 values, `d, dmin: f16`;
    /// value = `d * sc * q - dmin * m`.
    Q2K,
    /// 256 values: 3-bit `q` (offset 4; the third bit stored apart), a 6-bit scale (offset 32)
    /// per 16 values, `d: f16`; value = `d * (sc - 32) * (q - 4)`.
    Q3K,
    /// `d: f16, qs: [u8; 16]`; value = `d * IQ4_TABLE[q]`, `q` a nibble (Q4_0's layout with a
    /// non-linear table of 16 integers instead of `q - 8`).
    IQ4NL,
    /// 256 values: `d: f16`, a 6-bit scale (offset 32) per 32 values, nibbles as IQ4_NL's;
    /// value = `d * (sc - 32) * IQ4_TABLE[q]`.
    IQ4XS,
}

/// The 16 integers IQ4_NL and IQ4_XS map their nibbles to (ggml's `kvalues_iq4nl`), rising.
pub(crate) const IQ4_TABLE: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

impl BlockKind {
    /// The kind for a candle/ggml dtype, if this module handles it.
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_0 => Some(BlockKind::Q4_0),
            GgmlDType::Q4_1 => Some(BlockKind::Q4_1),
            GgmlDType::Q5_0 => Some(BlockKind::Q5_0),
            GgmlDType::Q5_1 => Some(BlockKind::Q5_1),
            GgmlDType::Q8_0 => Some(BlockKind::Q8_0),
            GgmlDType::Q4K => Some(BlockKind::Q4K),
            GgmlDType::Q5K => Some(BlockKind::Q5K),
            GgmlDType::Q6K => Some(BlockKind::Q6K),
            GgmlDType::Q2K => Some(BlockKind::Q2K),
            GgmlDType::Q3K => Some(BlockKind::Q3K),
            _ => None,
        }
    }

    /// The kind of a GGUF tensor type id (ggml's `ggml_type`), if the packed kernels take it:
    /// the kinds of [`BlockKind::from_ggml`], and IQ4_NL (20) and IQ4_XS (23), which candle
    /// does not know.
    pub fn from_gguf_type(id: u32) -> Option<Self> {
        match id {
            2 => Some(BlockKind::Q4_0),
            3 => Some(BlockKind::Q4_1),
            6 => Some(BlockKind::Q5_0),
            7 => Some(BlockKind::Q5_1),
            8 => Some(BlockKind::Q8_0),
            10 => Some(BlockKind::Q2K),
            11 => Some(BlockKind::Q3K),
            12 => Some(BlockKind::Q4K),
            13 => Some(BlockKind::Q5K),
            14 => Some(BlockKind::Q6K),
            20 => Some(BlockKind::IQ4NL),
            23 => Some(BlockKind::IQ4XS),
            _ => None,
        }
    }

    /// The kind's name as ggml and llama.cpp write it (`Q4_K`, `IQ4_XS`).
    pub fn name(self) -> &'static str {
        match self {
            BlockKind::Q4_0 => "Q4_0",
            BlockKind::Q4_1 => "Q4_1",
            BlockKind::Q5_0 => "Q5_0",
            BlockKind::Q5_1 => "Q5_1",
            BlockKind::Q8_0 => "Q8_0",
            BlockKind::Q2K => "Q2_K",
            BlockKind::Q3K => "Q3_K",
            BlockKind::Q4K => "Q4_K",
            BlockKind::Q5K => "Q5_K",
            BlockKind::Q6K => "Q6_K",
            BlockKind::IQ4NL => "IQ4_NL",
            BlockKind::IQ4XS => "IQ4_XS",
        }
    }

    /// The matching candle dtype (the IQ kinds have none: tests never ask for theirs).
    #[cfg(test)]
    pub(crate) fn ggml(self) -> GgmlDType {
        match self {
            BlockKind::Q4_0 => GgmlDType::Q4_0,
            BlockKind::Q4_1 => GgmlDType::Q4_1,
            BlockKind::Q5_0 => GgmlDType::Q5_0,
            BlockKind::Q5_1 => GgmlDType::Q5_1,
            BlockKind::Q8_0 => GgmlDType::Q8_0,
            BlockKind::Q4K => GgmlDType::Q4K,
            BlockKind::Q5K => GgmlDType::Q5K,
            BlockKind::Q6K => GgmlDType::Q6K,
            BlockKind::Q2K => GgmlDType::Q2K,
            BlockKind::Q3K => GgmlDType::Q3K,
            BlockKind::IQ4NL | BlockKind::IQ4XS => panic!("candle has no dtype for {self:?}"),
        }
    }

    /// Whether this is a K-quant (256-value superblocks, activations quantized as Q8_K).
    pub(crate) fn is_k(self) -> bool {
        matches!(
            self,
            BlockKind::Q2K
                | BlockKind::Q3K
                | BlockKind::Q4K
                | BlockKind::Q5K
                | BlockKind::Q6K
                | BlockKind::IQ4XS
        )
    }

    /// Whether the integers are indices into [`IQ4_TABLE`] (IQ4_NL, IQ4_XS): the packed lines
    /// hold the nibble, and the kernels look its integer up.
    pub(crate) fn lookup(self) -> bool {
        matches!(self, BlockKind::IQ4NL | BlockKind::IQ4XS)
    }

    /// The signed integer of packed (unsigned) value `u`: `u - offset`, or the table's entry.
    pub(crate) fn int_of(self, u: i32) -> i32 {
        if self.lookup() {
            IQ4_TABLE[(u & 15) as usize] as i32
        } else {
            u - self.offset()
        }
    }

    /// The packed (unsigned) value of signed integer `q`, the inverse of [`BlockKind::int_of`]
    /// (an integer not in the table packs as its nearest entry below).
    pub(crate) fn packed_of(self, q: i32) -> u8 {
        if self.lookup() {
            IQ4_TABLE.iter().rposition(|&t| t as i32 <= q).unwrap_or(0) as u8
        } else {
            (q + self.offset()) as u8
        }
    }

    /// Whether a K-quant has an integer scale per 16 values (Q2_K, Q3_K, Q6_K) rather than
    /// per 32 (Q4_K, Q5_K).
    pub(crate) fn scale_per_16(self) -> bool {
        matches!(self, BlockKind::Q2K | BlockKind::Q3K | BlockKind::Q6K)
    }

    /// Values per block in the file: 32, or 256 for the K-quants.
    pub fn block_values(self) -> usize {
        if self.is_k() {
            crate::kblocks::QK_K
        } else {
            QK
        }
    }

    /// Bytes of one block (of [`BlockKind::block_values`] values) in the file.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockKind::Q4_0 => 18,
            BlockKind::Q4_1 => 20,
            BlockKind::Q5_0 => 22,
            BlockKind::Q5_1 => 24,
            BlockKind::Q8_0 => 34,
            BlockKind::Q4K => 144,
            BlockKind::Q5K => 176,
            BlockKind::Q6K => 210,
            BlockKind::Q2K => 84,
            BlockKind::Q3K => 110,
            BlockKind::IQ4NL => 18,
            BlockKind::IQ4XS => 136,
        }
    }

    /// The offset that makes the block's integers unsigned for the packed kernels: the packed
    /// value is `q + offset` with `q` the signed integer of [`Unpacked`] (0 for the IQ kinds,
    /// whose packed value is the table index: [`BlockKind::int_of`]).
    pub(crate) fn offset(self) -> i32 {
        match self {
            BlockKind::Q4_0 => 8,
            BlockKind::Q4_1 => 0,
            BlockKind::Q5_0 => 16,
            BlockKind::Q5_1 => 0,
            BlockKind::Q8_0 => 128,
            BlockKind::Q2K | BlockKind::Q4K | BlockKind::Q5K => 0,
            BlockKind::IQ4NL | BlockKind::IQ4XS => 0,
            BlockKind::Q3K => 4,
            BlockKind::Q6K => 32,
        }
    }

    /// Whether blocks carry an additive minimum (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K).
    pub(crate) fn has_min(self) -> bool {
        matches!(
            self,
            BlockKind::Q4_1 | BlockKind::Q5_1 | BlockKind::Q2K | BlockKind::Q4K | BlockKind::Q5K
        )
    }

    /// Whether values have a bit stored apart from their lines: the fifth (Q5_0, Q5_1, Q5_K,
    /// Q6_K) or Q3_K's third ([`BlockKind::high_bit`]).
    pub(crate) fn has_high_bit(self) -> bool {
        matches!(
            self,
            BlockKind::Q5_0 | BlockKind::Q5_1 | BlockKind::Q3K | BlockKind::Q5K | BlockKind::Q6K
        )
    }

    /// The position of the bit stored apart: 2 for Q3_K (its lines hold two bits), else 4.
    pub(crate) fn high_bit(self) -> u8 {
        if self == BlockKind::Q3K {
            2
        } else {
            4
        }
    }

    /// Whether the packed lines hold two bits per value (Q2_K, Q3_K), not four.
    pub(crate) fn two_bit_lines(self) -> bool {
        matches!(self, BlockKind::Q2K | BlockKind::Q3K)
    }

    /// Whether values have a sixth bit (Q6_K).
    pub(crate) fn has_bit5(self) -> bool {
        self == BlockKind::Q6K
    }
}

/// One decoded block: value `i` is `d * q[i] + m`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Unpacked {
    /// Scale.
    pub(crate) d: f32,
    /// Additive minimum (Q4_1 and Q5_1; 0 otherwise).
    pub(crate) m: f32,
    /// Signed integers (offset already removed).
    pub(crate) q: [i32; QK],
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Decodes one block of a 32-value `kind` from exactly `kind.block_bytes()` bytes (shorter
/// input, or a K-quant kind, decodes as zeros rather than panicking).
#[allow(clippy::needless_range_loop)] // index arithmetic mirrors the layout
pub(crate) fn unpack(kind: BlockKind, b: &[u8]) -> Unpacked {
    let mut u = Unpacked {
        d: 0.0,
        m: 0.0,
        q: [0; QK],
    };
    if b.len() < kind.block_bytes() || kind.is_k() {
        return u;
    }
    u.d = f16_at(b, 0);
    match kind {
        BlockKind::Q4_0 | BlockKind::Q4_1 => {
            let qs = if kind == BlockKind::Q4_1 {
                u.m = f16_at(b, 2);
                &b[4..20]
            } else {
                &b[2..18]
            };
            let off = kind.offset();
            for j in 0..16 {
                u.q[j] = (qs[j] & 0x0F) as i32 - off;
                u.q[j + 16] = (qs[j] >> 4) as i32 - off;
            }
        }
        BlockKind::Q5_0 | BlockKind::Q5_1 => {
            let at = if kind == BlockKind::Q5_1 {
                u.m = f16_at(b, 2);
                4
            } else {
                2
            };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let qs = &b[at + 4..at + 20];
            let off = kind.offset();
            for j in 0..16 {
                let h0 = ((qh >> j) & 1) << 4;
                let h1 = ((qh >> (j + 16)) & 1) << 4;
                u.q[j] = ((qs[j] & 0x0F) as u32 | h0) as i32 - off;
                u.q[j + 16] = ((qs[j] >> 4) as u32 | h1) as i32 - off;
            }
        }
        BlockKind::Q8_0 => {
            for j in 0..QK {
                u.q[j] = b[2 + j] as i8 as i32;
            }
        }
        BlockKind::IQ4NL => {
            for j in 0..16 {
                u.q[j] = IQ4_TABLE[(b[2 + j] & 0x0F) as usize] as i32;
                u.q[j + 16] = IQ4_TABLE[(b[2 + j] >> 4) as usize] as i32;
            }
        }
        BlockKind::Q2K
        | BlockKind::Q3K
        | BlockKind::Q4K
        | BlockKind::Q5K
        | BlockKind::Q6K
        | BlockKind::IQ4XS => {}
    }
    u
}

/// Dequantizes a row of blocks to f32 (`out.len()` values), in ggml's float operations.
pub(crate) fn dequantize_row(kind: BlockKind, row: &[u8], out: &mut [f32]) {
    if kind.is_k() {
        crate::kblocks::dequantize_row(kind, row, out);
        return;
    }
    for (blk, o) in row.chunks(kind.block_bytes()).zip(out.chunks_mut(QK)) {
        let u = unpack(kind, blk);
        for (v, &q) in o.iter_mut().zip(u.q.iter()) {
            *v = u.d * q as f32 + u.m;
        }
    }
}

/// Reference dot product of one weight row (`k / 32` blocks of `kind`) with one quantized
/// activation row, block by block as ggml computes it: the integer dot of each block scaled by
/// both scales, plus the weight's minimum times the activation block's scaled sum (Q4_1, Q5_1).
#[cfg(test)]
pub(crate) fn vec_dot_ref(
    kind: BlockKind,
    row: &[u8],
    act_q: &[i8],
    act_d: &[f32],
    act_s: &[f32],
) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in row.chunks(kind.block_bytes()).enumerate() {
        let u = unpack(kind, blk);
        let Some(a) = act_q.get(b * QK..(b + 1) * QK) else {
            break;
        };
        let isum: i32 = u.q.iter().zip(a).map(|(&w, &x)| w * x as i32).sum();
        sum += u.d * act_d[b] * isum as f32 + u.m * act_s[b];
    }
    sum
}
