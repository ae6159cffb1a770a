//! Weight repacking at load: ggml blocks of 16 consecutive output rows are interleaved into
//! tiles so that one 512-bit VNNI instruction (`vpdpbusd`) computes four products for each of
//! the 16 rows, and the result of a block is a vector of 16 row sums — no horizontal adds, and
//! one weight load serves several activation rows in prefill.
//!
//! Layout of tile `t` (rows `16t..16t+16`), block `b` (values `32b..32b+32`); `u = q + offset`
//! is the block's integer made unsigned (see [`BlockKind::offset`]):
//! - 4/5-bit kinds (and IQ4_NL/IQ4_XS, whose `u` is the index into their table): 4 lines of
//!   64 bytes; line `g`, byte `4r + j` holds `u[r][8g+j] & 15` in its
//!   low nibble and `u[r][8g+4+j] & 15` in its high nibble. Q5_0/Q5_1 add 8 masks (`u64`); mask `h`,
//!   bit `4r + j` is bit 4 of `u[r][4h+j]`.
//! - Q2_K, Q3_K: 2 lines of 64 bytes; line `g`, byte `4r + j`, bits `2c..2c+2` hold
//!   `u[r][16g+4c+j] & 3`. Q3_K adds 8 masks of its third bit (bit 2), laid out as Q5's.
//! - Q8_0: 8 lines; line `h`, byte `4r + j` is `u[r][4h+j]`.
//! - scales `d` (and Q4_1/Q5_1's minimum `m`) as 16 f16 per tile block.
//! - K-quants: the same lines (4-bit, or 2-bit for Q2_K/Q3_K) and high-bit masks (Q3_K, Q5_K,
//!   Q6_K) per 32 values, bit-5 masks (Q6_K), the superblock's `d` and `dmin` as 16 f16
//!   per tile superblock, one or two integer scales per row and 32 values (`ks`), and the
//!   integer minimums of Q2_K/Q4_K/Q5_K (`kmin`).
//!
//! Rows past `n` in the last tile are padding with scale 0.

use half::f16;

use rayon::prelude::*;

use crate::blocks::{unpack, BlockKind, QK};
use crate::kblocks::{self, QK_K};

/// Output rows per tile.
pub(crate) const TILE: usize = 16;

/// A cache line of weights, aligned so vector loads never straddle lines.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

/// A quantized `[n, k]` weight matrix repacked into row tiles.
#[derive(Debug)]
pub(crate) struct PackedMatrix {
    /// Block kind.
    pub(crate) kind: BlockKind,
    /// Output rows.
    pub(crate) n: usize,
    /// Input columns (a multiple of 32).
    pub(crate) k: usize,
    /// Blocks per row, `k / 32`.
    pub(crate) nb: usize,
    /// Tiles, `ceil(n / 16)`.
    pub(crate) tiles: usize,
    /// Quant lines, tile-major then block: [`PackedMatrix::lines_per_block`] per tile block.
    pub(crate) qs: crate::huge::Lines,
    /// High-bit masks (bit 4 of Q5_0, Q5_1, Q5_K, Q6_K; bit 2 of Q3_K), 8 per tile block;
    /// empty for other kinds.
    pub(crate) qh: Vec<u64>,
    /// Bit-5 masks (Q6_K), 8 per tile block; empty for other kinds.
    pub(crate) qh2: Vec<u64>,
    /// Scales as f16 bits, 16 per tile block (K-quants: the superblock `d`, 16 per tile
    /// superblock).
    pub(crate) d: Vec<u16>,
    /// Minimums as f16 bits laid out as `d` (Q4_1, Q5_1; Q4_K/Q5_K's `dmin`); empty otherwise.
    pub(crate) m: Vec<u16>,
    /// K-quants: the integer scales of each tile block, 16 `i8` (Q4_K/Q5_K: one per row) or 32
    /// (Q2_K, Q3_K, Q6_K: 16 rows for the first 16 values, 16 for the last); empty otherwise.
    pub(crate) ks: Vec<i8>,
    /// Q4_K/Q5_K: the integer minimums (6 bits unsigned), 128 `i8` per tile superblock: for
    /// each pair `jp` of blocks (0..4), row `r`'s minimums of blocks `2jp` and `2jp+1` at
    /// `32jp + 2r` and `32jp + 2r + 1` (widened to 16 bits as they are loaded: one `vpdpwssd`
    /// per pair). Q2_K: 256 per tile superblock, the pairs
    /// being the two 16-value groups of block `jp` (0..8). Empty otherwise.
    pub(crate) kmin: Vec<i8>,
}

impl PackedMatrix {
    /// Lines of quants per tile block.
    pub(crate) fn lines_per_block(kind: BlockKind) -> usize {
        if kind == BlockKind::Q8_0 {
            8
        } else if kind.two_bit_lines() {
            2
        } else {
            4
        }
    }

    /// Integer scales per row and tile block in `ks` (0 for 32-value kinds).
    pub(crate) fn scales_per_row(kind: BlockKind) -> usize {
        match kind {
            BlockKind::Q2K | BlockKind::Q3K | BlockKind::Q6K => 2,
            BlockKind::Q4K | BlockKind::Q5K | BlockKind::IQ4XS => 1,
            _ => 0,
        }
    }

    /// Integer minimums per tile superblock in `kmin` (0 for kinds without minimums).
    pub(crate) fn kmin_per_superblock(kind: BlockKind) -> usize {
        match kind {
            BlockKind::Q2K => 256,
            BlockKind::Q4K | BlockKind::Q5K => 128,
            _ => 0,
        }
    }

    /// Repacks `n` rows of `k` values stored as ggml blocks of `kind` (`data` is the tensor's
    /// raw bytes, row-major). `None` when `k` is not a multiple of the kind's block size or
    /// `data` is too short.
    pub(crate) fn pack(kind: BlockKind, data: &[u8], n: usize, k: usize) -> Option<Self> {
        if k == 0 || !k.is_multiple_of(kind.block_values()) || n == 0 {
            return None;
        }
        let nb = k / QK;
        let row_bytes = (k / kind.block_values()).checked_mul(kind.block_bytes())?;
        if data.len() < n.checked_mul(row_bytes)? {
            return None;
        }
        let tiles = n.div_ceil(TILE);
        let lpb = Self::lines_per_block(kind);
        // Scales per tile block (32-value kinds) or per tile superblock (K-quants).
        let scale_slots = if kind.is_k() {
            tiles * (k / QK_K) * TILE
        } else {
            tiles * nb * TILE
        };
        let mut p = PackedMatrix {
            kind,
            n,
            k,
            nb,
            tiles,
            qs: crate::huge::Lines::zeroed(tiles * nb * lpb),
            qh: if kind.has_high_bit() {
                vec![0; tiles * nb * 8]
            } else {
                vec![]
            },
            qh2: if kind.has_bit5() {
                vec![0; tiles * nb * 8]
            } else {
                vec![]
            },
            d: vec![0; scale_slots],
            m: if kind.has_min() {
                vec![0; scale_slots]
            } else {
                vec![]
            },
            ks: vec![0; tiles * nb * TILE * Self::scales_per_row(kind)],
            kmin: if kind.is_k() && kind.has_min() {
                vec![0; tiles * (k / QK_K) * Self::kmin_per_superblock(kind)]
            } else {
                vec![]
            },
        };
        // Each tile's rows and arrays are its own: the tiles pack in parallel (loading a large
        // model spends most of its time here and in the first touch of the lines' pages).
        let nsb = k / QK_K;
        let tiles_out = TileOut::split(&mut p, lpb);
        tiles_out
            .into_par_iter()
            .enumerate()
            .try_for_each(|(t, mut out)| {
                let rows = t * TILE..(t * TILE + TILE).min(n);
                if kind.is_k() {
                    out.pack_k(kind, data, rows, row_bytes, nsb)
                } else {
                    out.pack_blocks(kind, data, rows, row_bytes, nb);
                    Some(())
                }
            })?;
        Some(p)
    }

    /// Bytes the packed matrix takes in memory.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.qs.len() * 64
            + (self.qh.len() + self.qh2.len()) * 8
            + (self.d.len() + self.m.len()) * 2
            + self.ks.len()
            + self.kmin.len()
    }

    /// The unsigned integer `u` of row `r` (within the tile), value `i` of tile block `tb`.
    pub(crate) fn packed_u(&self, tb: usize, r: usize, i: usize) -> i32 {
        let lpb = Self::lines_per_block(self.kind);
        let lines = &self.qs[tb * lpb..(tb + 1) * lpb];
        if self.kind == BlockKind::Q8_0 {
            return lines[i / 4].0[4 * r + i % 4] as i32;
        }
        let mut u = if self.kind.two_bit_lines() {
            let byte = lines[i / 16].0[4 * r + i % 4];
            ((byte >> (2 * ((i % 16) / 4))) & 3) as i32
        } else {
            let (g, rem) = (i / 8, i % 8);
            let byte = lines[g].0[4 * r + rem % 4];
            (if rem < 4 { byte & 15 } else { byte >> 4 }) as i32
        };
        let bit = |plane: &[u64]| ((plane[tb * 8 + i / 4] >> (4 * r + i % 4)) & 1) as i32;
        if self.kind.has_high_bit() {
            u |= bit(&self.qh) << self.kind.high_bit();
        }
        if self.kind.has_bit5() {
            u |= bit(&self.qh2) << 5;
        }
        u
    }
}

/// One tile's share of a [`PackedMatrix`]'s arrays, indexed from the tile's start (tile block
/// `b` of the tile is block `b`, superblock `sb` is superblock `sb`).
struct TileOut<'a> {
    kind: BlockKind,
    lpb: usize,
    qs: &'a mut [Line],
    qh: &'a mut [u64],
    qh2: &'a mut [u64],
    d: &'a mut [u16],
    m: &'a mut [u16],
    ks: &'a mut [i8],
    kmin: &'a mut [i8],
}

/// `v` cut into `tiles` equal slices (empty ones when `v` is).
fn per_tile<T>(v: &mut [T], tiles: usize) -> Vec<&mut [T]> {
    if v.is_empty() {
        return (0..tiles).map(|_| &mut [][..]).collect();
    }
    v.chunks_mut(v.len() / tiles).collect()
}

impl<'a> TileOut<'a> {
    /// `p`'s arrays cut by tile (each array holds the same share for every tile).
    fn split(p: &'a mut PackedMatrix, lpb: usize) -> Vec<TileOut<'a>> {
        let (kind, tiles) = (p.kind, p.tiles);
        let mut qs = per_tile(&mut p.qs, tiles).into_iter();
        let mut qh = per_tile(&mut p.qh, tiles).into_iter();
        let mut qh2 = per_tile(&mut p.qh2, tiles).into_iter();
        let mut d = per_tile(&mut p.d, tiles).into_iter();
        let mut m = per_tile(&mut p.m, tiles).into_iter();
        let mut ks = per_tile(&mut p.ks, tiles).into_iter();
        let mut kmin = per_tile(&mut p.kmin, tiles).into_iter();
        let mut out = Vec::with_capacity(tiles);
        for _ in 0..tiles {
            // Every array has exactly `tiles` slices (`per_tile`).
            let (Some(qs), Some(qh), Some(qh2), Some(d), Some(m), Some(ks), Some(kmin)) = (
                qs.next(),
                qh.next(),
                qh2.next(),
                d.next(),
                m.next(),
                ks.next(),
                kmin.next(),
            ) else {
                break;
            };
            out.push(TileOut {
                kind,
                lpb,
                qs,
                qh,
                qh2,
                d,
                m,
                ks,
                kmin,
            });
        }
        out
    }

    /// Packs the tile's `rows` of a 32-value kind.
    fn pack_blocks(
        &mut self,
        kind: BlockKind,
        data: &[u8],
        rows: std::ops::Range<usize>,
        row_bytes: usize,
        nb: usize,
    ) {
        let off = kind.offset() as u8;
        for b in 0..nb {
            // Unsigned integers of the 16 rows of this tile block; padding rows stay at the
            // offset (integer 0) with scale 0.
            let mut u = [[off; QK]; TILE];
            for (r, row) in rows.clone().enumerate() {
                let at = row * row_bytes + b * kind.block_bytes();
                let blk = unpack(kind, &data[at..at + kind.block_bytes()]);
                for (o, &q) in u[r].iter_mut().zip(blk.q.iter()) {
                    *o = kind.packed_of(q);
                }
                // Scales are copied bit for bit from the file.
                self.d[b * TILE + r] = u16::from_le_bytes([data[at], data[at + 1]]);
                if kind.has_min() {
                    self.m[b * TILE + r] = u16::from_le_bytes([data[at + 2], data[at + 3]]);
                }
            }
            self.fill_block(b, &u);
        }
    }

    /// Packs the tile's `rows` of a K-quant; `None` if a superblock cannot be decoded.
    fn pack_k(
        &mut self,
        kind: BlockKind,
        data: &[u8],
        rows: std::ops::Range<usize>,
        row_bytes: usize,
        nsb: usize,
    ) -> Option<()> {
        let off = kind.offset() as u8;
        let spr = PackedMatrix::scales_per_row(kind);
        let mps = PackedMatrix::kmin_per_superblock(kind);
        for sb in 0..nsb {
            let mut sup = vec![None; TILE];
            for (r, row) in rows.clone().enumerate() {
                let at = row * row_bytes + sb * kind.block_bytes();
                let blk = kblocks::unpack(kind, &data[at..at + kind.block_bytes()])?;
                self.d[sb * TILE + r] = f16::from_f32(blk.d).to_bits();
                if kind.has_min() {
                    self.m[sb * TILE + r] = f16::from_f32(blk.dmin).to_bits();
                }
                sup[r] = Some(blk);
            }
            for j in 0..QK_K / QK {
                let b = sb * (QK_K / QK) + j;
                let mut u = [[off; QK]; TILE];
                for (r, s) in sup.iter().enumerate() {
                    let Some(s) = s else { continue };
                    u[r].copy_from_slice(&s.u[QK * j..QK * (j + 1)]);
                    // Scales fit an i8 (Q2_K: 4 bits, Q4_K/Q5_K: 6 bits unsigned; Q3_K and
                    // IQ4_XS: 6 bits signed; Q6_K: i8).
                    let at = b * TILE * spr;
                    self.ks[at + r] = s.sc[2 * j] as i8;
                    if kind.scale_per_16() {
                        self.ks[at + TILE + r] = s.sc[2 * j + 1] as i8;
                    }
                    let mins = sb * mps;
                    if kind == BlockKind::Q2K {
                        self.kmin[mins + 32 * j + 2 * r] = s.mn[2 * j] as i8;
                        self.kmin[mins + 32 * j + 2 * r + 1] = s.mn[2 * j + 1] as i8;
                    } else if kind.has_min() {
                        self.kmin[mins + 32 * (j / 2) + 2 * r + j % 2] = s.mn[2 * j] as i8;
                    }
                }
                self.fill_block(b, &u);
            }
        }
        Some(())
    }

    /// Writes the unsigned integers `u[row][value]` of the tile's block `tb` into its lines and bit
    /// planes.
    #[allow(clippy::needless_range_loop)] // index arithmetic mirrors the layout
    fn fill_block(&mut self, tb: usize, u: &[[u8; QK]; TILE]) {
        let lpb = self.lpb;
        let lines = &mut self.qs[tb * lpb..(tb + 1) * lpb];
        if self.kind == BlockKind::Q8_0 {
            for (h, line) in lines.iter_mut().enumerate() {
                for r in 0..TILE {
                    for j in 0..4 {
                        line.0[4 * r + j] = u[r][4 * h + j];
                    }
                }
            }
            return;
        }
        if self.kind.two_bit_lines() {
            for (g, line) in lines.iter_mut().enumerate() {
                for r in 0..TILE {
                    for j in 0..4 {
                        line.0[4 * r + j] = (0..4)
                            .map(|c| (u[r][16 * g + 4 * c + j] & 3) << (2 * c))
                            .fold(0, |a, b| a | b);
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
        }
        let plane = |bit: u8, h: usize| {
            let mut mask = 0u64;
            for r in 0..TILE {
                for j in 0..4 {
                    mask |= (((u[r][4 * h + j] >> bit) & 1) as u64) << (4 * r + j);
                }
            }
            mask
        };
        for h in 0..8 {
            if self.kind.has_high_bit() {
                self.qh[tb * 8 + h] = plane(self.kind.high_bit(), h);
            }
            if self.kind.has_bit5() {
                self.qh2[tb * 8 + h] = plane(5, h);
            }
        }
    }
}
