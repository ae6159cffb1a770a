//! The ggml K-quant formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and IQ4_XS on the same 256-value
//! superblocks) and their plain scalar
//! reference: decoding a superblock, and its dot product with activations quantized as Q8_K, in
//! the integers ggml (and candle) compute it with.
//!
//! Every kind decodes to one shape, [`KUnpacked`]: value `i` is
//! `d · sc[i/16] · (u[i] − offset) − dmin · mn[i/16]` with `u` unsigned (IQ4_XS: `u[i]` is a
//! nibble, its integer `IQ4_TABLE[u[i]]`, [`BlockKind::int_of`]). (Q4_K, Q5_K and IQ4_XS scale
//! 32 values at a time, so their `sc` and `mn` repeat in pairs; Q3_K, Q6_K and IQ4_XS have no
//! minimum.)

use half::f16;

use crate::blocks::BlockKind;

/// Values per superblock.
pub(crate) const QK_K: usize = 256;
/// Values per scale group (the finest: Q6_K's; Q4_K/Q5_K's groups of 32 are two of these).
pub(crate) const GROUP: usize = 16;

/// One decoded superblock (see the module docs for the value formula).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct KUnpacked {
    /// Superblock scale.
    pub(crate) d: f32,
    /// Superblock scale of the minimums (0 for Q3_K and Q6_K).
    pub(crate) dmin: f32,
    /// Integer scale of each group of 16.
    pub(crate) sc: [i32; QK_K / GROUP],
    /// Integer minimum of each group of 16 (0 for Q3_K and Q6_K).
    pub(crate) mn: [i32; QK_K / GROUP],
    /// Unsigned integers (Q2_K: 0..4, Q3_K: 0..8, Q4_K and IQ4_XS: 0..16, Q5_K: 0..32, Q6_K:
    /// 0..64).
    pub(crate) u: [u8; QK_K],
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and minimum of 32-value group `j` (0..8) from the
/// 12 packed bytes of a Q4_K/Q5_K superblock.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Decodes one superblock of a K-quant `kind` from `kind.block_bytes()` bytes; `None` for a
/// 32-value kind or short input.
#[allow(clippy::needless_range_loop)] // index arithmetic mirrors the layout
pub(crate) fn unpack(kind: BlockKind, b: &[u8]) -> Option<KUnpacked> {
    if !kind.is_k() || b.len() < kind.block_bytes() {
        return None;
    }
    let mut k = KUnpacked {
        d: 0.0,
        dmin: 0.0,
        sc: [0; QK_K / GROUP],
        mn: [0; QK_K / GROUP],
        u: [0; QK_K],
    };
    match kind {
        BlockKind::Q4K | BlockKind::Q5K => {
            k.d = f16_at(b, 0);
            k.dmin = f16_at(b, 2);
            let scales = &b[4..16];
            let (qh, qs) = if kind == BlockKind::Q5K {
                (&b[16..48], &b[48..176])
            } else {
                (&[][..], &b[16..144])
            };
            // 64 values per step: the low nibbles of 32 bytes, then their high nibbles.
            for c in 0..4 {
                for half in 0..2 {
                    let j = 2 * c + half;
                    let (sc, m) = scale_min_k4(j, scales);
                    k.sc[2 * j] = sc as i32;
                    k.sc[2 * j + 1] = sc as i32;
                    k.mn[2 * j] = m as i32;
                    k.mn[2 * j + 1] = m as i32;
                    for l in 0..32 {
                        let byte = qs[32 * c + l];
                        let mut u = if half == 0 { byte & 15 } else { byte >> 4 };
                        if !qh.is_empty() && qh[l] & (1 << j) != 0 {
                            u |= 16;
                        }
                        k.u[32 * j + l] = u;
                    }
                }
            }
        }
        BlockKind::IQ4XS => {
            k.d = f16_at(b, 0);
            let scales_h = u16::from_le_bytes([b[2], b[3]]);
            let (scales_l, qs) = (&b[4..8], &b[8..136]);
            // Block j: a 6-bit scale, its low nibble in scales_l, its top two bits in
            // scales_h; values 32·j + l (l < 16) in the low nibbles of qs[16·j..], the next 16
            // in the high ones.
            for j in 0..8 {
                let low = (scales_l[j / 2] >> (4 * (j % 2))) & 15;
                let high = ((scales_h >> (2 * j)) & 3) as u8;
                let sc = (low | (high << 4)) as i32 - 32;
                k.sc[2 * j] = sc;
                k.sc[2 * j + 1] = sc;
                for l in 0..16 {
                    let byte = qs[16 * j + l];
                    k.u[32 * j + l] = byte & 15;
                    k.u[32 * j + 16 + l] = byte >> 4;
                }
            }
        }
        BlockKind::Q2K => {
            // `scales[g]`: scale in the low nibble, minimum in the high one.
            let (scales, qs) = (&b[0..16], &b[16..80]);
            k.d = f16_at(b, 80);
            k.dmin = f16_at(b, 82);
            for (g, &s) in scales.iter().enumerate() {
                k.sc[g] = (s & 15) as i32;
                k.mn[g] = (s >> 4) as i32;
            }
            // Two halves of 128 values; in each, value 32·j + l takes bits 2j..2j+2 of qs[l].
            for h in 0..2 {
                for j in 0..4 {
                    for l in 0..32 {
                        k.u[128 * h + 32 * j + l] = (qs[32 * h + l] >> (2 * j)) & 3;
                    }
                }
            }
        }
        BlockKind::Q3K => {
            let (hmask, qs, sb) = (&b[0..32], &b[32..96], &b[96..108]);
            k.d = f16_at(b, 108);
            // Sixteen 6-bit scales: low nibbles in bytes 0..8 (groups 0..8 low, 8..16 high),
            // the top two bits in bytes 8..12, two per group.
            for g in 0..16 {
                let low = if g < 8 { sb[g] & 15 } else { sb[g - 8] >> 4 };
                let high = (sb[8 + g % 4] >> (2 * (g / 4))) & 3;
                k.sc[g] = (low | (high << 4)) as i32 - 32;
            }
            // As Q2_K for the low two bits; bit 4h + j of hmask[l] is the third.
            for h in 0..2 {
                for j in 0..4 {
                    for l in 0..32 {
                        let low = (qs[32 * h + l] >> (2 * j)) & 3;
                        let high = (hmask[l] >> (4 * h + j)) & 1;
                        k.u[128 * h + 32 * j + l] = low | (high << 2);
                    }
                }
            }
        }
        _ => {
            let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
            k.d = f16_at(b, 208);
            for (g, &s) in scales.iter().enumerate() {
                k.sc[g] = s as i8 as i32;
            }
            // Two halves of 128 values; in each, value 32·c + l takes the low (c = 0, 1) or high
            // (c = 2, 3) nibble of ql[l + 32·(c % 2)] and bits 2c..2c+2 of qh[l].
            for h in 0..2 {
                let (ql, qh) = (&ql[64 * h..64 * h + 64], &qh[32 * h..32 * h + 32]);
                for c in 0..4 {
                    for l in 0..32 {
                        let byte = ql[l + 32 * (c % 2)];
                        let low = if c < 2 { byte & 15 } else { byte >> 4 };
                        k.u[128 * h + 32 * c + l] = low | (((qh[l] >> (2 * c)) & 3) << 4);
                    }
                }
            }
        }
    }
    Some(k)
}

/// Dequantizes a row of superblocks to f32 (`out.len()` values), in the same float operations
/// as ggml's reference: `(d·sc)·q − dmin·m`.
pub(crate) fn dequantize_row(kind: BlockKind, row: &[u8], out: &mut [f32]) {
    for (blk, o) in row.chunks(kind.block_bytes()).zip(out.chunks_mut(QK_K)) {
        let Some(k) = unpack(kind, blk) else {
            o.fill(0.0);
            continue;
        };
        for (i, v) in o.iter_mut().enumerate() {
            let g = i / GROUP;
            let q = kind.int_of(k.u[i] as i32);
            *v = (k.d * k.sc[g] as f32) * q as f32 - k.dmin * k.mn[g] as f32;
        }
    }
}

/// Reference dot product of one weight row (`k / 256` superblocks of `kind`) with one row of
/// Q8_K activations (`act_q`, a scale `act_d` per 256 values, integer sums `act_bs` per 16), as
/// ggml computes it: per superblock, the integer `Σ sc·Σ int(u)·q` times `d·act_d`, minus the
/// integer `Σ mn·bsum` times `dmin·act_d`.
#[cfg(test)]
pub(crate) fn vec_dot_ref(
    kind: BlockKind,
    row: &[u8],
    act_q: &[i8],
    act_d: &[f32],
    act_bs: &[i32],
) -> f32 {
    let mut sum = 0f32;
    for (s, blk) in row.chunks(kind.block_bytes()).enumerate() {
        let (Some(k), Some(q), Some(bs), Some(&ad)) = (
            unpack(kind, blk),
            act_q.get(s * QK_K..(s + 1) * QK_K),
            act_bs.get(s * 16..(s + 1) * 16),
            act_d.get(s),
        ) else {
            break;
        };
        let (mut isum, mut msum) = (0i32, 0i32);
        for g in 0..QK_K / GROUP {
            let dot: i32 = (0..GROUP)
                .map(|i| kind.int_of(k.u[g * GROUP + i] as i32) * q[g * GROUP + i] as i32)
                .sum();
            isum += k.sc[g] * dot;
            msum += k.mn[g] * bs[g];
        }
        sum += k.d * ad * isum as f32 - k.dmin * ad * msum as f32;
    }
    sum
}
