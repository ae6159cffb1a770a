//! Weight repacking at load: ggml blocks of 16 consecutive output rows are interleaved into
//! tiles so that one 512-bit VNNI instruction (`vpdpbusd`) computes four products for each of
//! the 16 rows, and the result of a block is a vector of 16 row sums — no horizontal adds, and
//! one weight load serves several activation rows in prefill.
//!
//! Layout of tile `t` (rows `16t..16t+16`), block `b` (values `32b..32b+32`); `u = q + offset`
//! is the block's integer made unsigned (see [`BlockKind::offset`]):
//! - 4/5-bit kinds: 4 lines of 64 bytes; line `g`, byte `4r + j` holds `u[r][8g+j] & 15` in its
//!   low nibble and `u[r][8g+4+j] & 15` in its high nibble. Q5_0/Q5_1 add 8 masks (`u64`); mask `h`,
//!   bit `4r + j` is bit 4 of `u[r][4h+j]`.
//! - Q8_0: 8 lines; line `h`, byte `4r + j` is `u[r][4h+j]`.
//! - scales `d` (and Q4_1/Q5_1's minimum `m`) as 16 f16 per tile block.
//!
//! Rows past `n` in the last tile are padding with scale 0.

use super::blocks::{unpack, BlockKind, QK};

/// Output rows per tile.
pub const TILE: usize = 16;

/// A cache line of weights, aligned so vector loads never straddle lines.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct Line(pub [u8; 64]);

/// A quantized `[n, k]` weight matrix repacked into row tiles.
#[derive(Debug)]
pub struct PackedMatrix {
    /// Block kind.
    pub kind: BlockKind,
    /// Output rows.
    pub n: usize,
    /// Input columns (a multiple of 32).
    pub k: usize,
    /// Blocks per row, `k / 32`.
    pub nb: usize,
    /// Tiles, `ceil(n / 16)`.
    pub tiles: usize,
    /// Quant lines, tile-major then block: [`PackedMatrix::lines_per_block`] per tile block.
    pub qs: Vec<Line>,
    /// Q5_0/Q5_1 high-bit masks, 8 per tile block (empty for other kinds).
    pub qh: Vec<u64>,
    /// Scales as f16 bits, 16 per tile block.
    pub d: Vec<u16>,
    /// Q4_1/Q5_1 minimums as f16 bits, 16 per tile block (empty for other kinds).
    pub m: Vec<u16>,
}

impl PackedMatrix {
    /// Lines of quants per tile block.
    pub fn lines_per_block(kind: BlockKind) -> usize {
        if kind == BlockKind::Q8_0 {
            8
        } else {
            4
        }
    }

    /// Repacks `n` rows of `k` values stored as ggml blocks of `kind` (`data` is the tensor's
    /// raw bytes, row-major). `None` when `k` is not a multiple of 32 or `data` is too short.
    #[allow(clippy::needless_range_loop)] // index arithmetic mirrors the layout
    pub fn pack(kind: BlockKind, data: &[u8], n: usize, k: usize) -> Option<Self> {
        if k == 0 || !k.is_multiple_of(QK) || n == 0 {
            return None;
        }
        let nb = k / QK;
        let bb = kind.block_bytes();
        let row_bytes = nb.checked_mul(bb)?;
        if data.len() < n.checked_mul(row_bytes)? {
            return None;
        }
        let tiles = n.div_ceil(TILE);
        let lpb = Self::lines_per_block(kind);
        let mut p = PackedMatrix {
            kind,
            n,
            k,
            nb,
            tiles,
            qs: vec![Line([0; 64]); tiles * nb * lpb],
            qh: if kind.has_high_bit() {
                vec![0; tiles * nb * 8]
            } else {
                vec![]
            },
            d: vec![0; tiles * nb * TILE],
            m: if kind.has_min() {
                vec![0; tiles * nb * TILE]
            } else {
                vec![]
            },
        };
        let off = kind.offset();
        for t in 0..tiles {
            for b in 0..nb {
                let tb = t * nb + b;
                // Unsigned integers of the 16 rows of this tile block; padding rows stay at the
                // offset (integer 0) with scale 0.
                let mut u = [[off as u8; QK]; TILE];
                for (r, ur) in u.iter_mut().enumerate() {
                    let row = t * TILE + r;
                    if row >= n {
                        continue;
                    }
                    let at = row * row_bytes + b * bb;
                    let blk = unpack(kind, &data[at..at + bb]);
                    for (o, &q) in ur.iter_mut().zip(blk.q.iter()) {
                        *o = (q + off) as u8;
                    }
                    // Scales are copied bit for bit from the file.
                    p.d[tb * TILE + r] = u16::from_le_bytes([data[at], data[at + 1]]);
                    if kind.has_min() {
                        p.m[tb * TILE + r] = u16::from_le_bytes([data[at + 2], data[at + 3]]);
                    }
                }
                let lines = &mut p.qs[tb * lpb..(tb + 1) * lpb];
                if kind == BlockKind::Q8_0 {
                    for (h, line) in lines.iter_mut().enumerate() {
                        for r in 0..TILE {
                            for j in 0..4 {
                                line.0[4 * r + j] = u[r][4 * h + j];
                            }
                        }
                    }
                } else {
                    for (g, line) in lines.iter_mut().enumerate() {
                        for r in 0..TILE {
                            for j in 0..4 {
                                line.0[4 * r + j] =
                                    (u[r][8 * g + j] & 15) | ((u[r][8 * g + 4 + j] & 15) << 4);
                            }
                        }
                    }
                    if kind.has_high_bit() {
                        for h in 0..8 {
                            let mut mask = 0u64;
                            for r in 0..TILE {
                                for j in 0..4 {
                                    mask |= (((u[r][4 * h + j] >> 4) & 1) as u64) << (4 * r + j);
                                }
                            }
                            p.qh[tb * 8 + h] = mask;
                        }
                    }
                }
            }
        }
        Some(p)
    }

    /// Bytes the packed weights occupy.
    pub fn size_in_bytes(&self) -> usize {
        self.qs.len() * 64 + self.qh.len() * 8 + (self.d.len() + self.m.len()) * 2
    }

    /// The unsigned integer `u` of row `r` (within the tile), value `i` of tile block `tb`.
    pub(crate) fn packed_u(&self, tb: usize, r: usize, i: usize) -> i32 {
        let lpb = Self::lines_per_block(self.kind);
        let lines = &self.qs[tb * lpb..(tb + 1) * lpb];
        if self.kind == BlockKind::Q8_0 {
            return lines[i / 4].0[4 * r + i % 4] as i32;
        }
        let (g, rem) = (i / 8, i % 8);
        let byte = lines[g].0[4 * r + rem % 4];
        let mut u = if rem < 4 { byte & 15 } else { byte >> 4 } as i32;
        if self.kind.has_high_bit() {
            let h = i / 4;
            u |= (((self.qh[tb * 8 + h] >> (4 * r + i % 4)) & 1) as i32) << 4;
        }
        u
    }
}
