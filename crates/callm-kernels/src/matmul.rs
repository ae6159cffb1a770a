//! The matmul driver: quantizes the activations once, splits the output into (row tiles x token
//! ranges) work items on rayon's global pool (the caller sizes it), and runs the tile kernel of
//! the chosen instruction set.

use rayon::prelude::*;

use crate::act::QuantActs;
use crate::pack::{PackedMatrix, TILE};
use crate::{scalar, Isa};

/// Activation rows computed together against one weight tile.
pub(crate) const MT: usize = 8;
/// Tokens per work item in prefill: the item's activations stay in L2 while its tiles stream.
const TOKENS_PER_ITEM: usize = 64;
/// Below this many multiply-adds a call runs on the calling thread: waking the pool costs more.
const SERIAL_MACS: usize = 1 << 18;

#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: work items write disjoint (token range x tile) rectangles of the output.
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`: no two items write the same output.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so that closures capture the `Send`/`Sync` wrapper whole).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// [`matmul_concat_uninit`] of one matrix into initialized floats.
#[cfg(test)]
pub(crate) fn matmul_with(
    isa: Isa,
    p: &PackedMatrix,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) -> bool {
    matmul_concat_uninit(isa, &[p], x, m, crate::linear::as_uninit(out))
}

/// `out[m, n1 + n2 + ...] = [x · W1ᵀ | x · W2ᵀ | ...]` with the kernel for `isa`: one packed
/// matrix (`out = x · Wᵀ`) or several over the same input (`k` columns each) in one call. The activations are quantized once for all of them
/// (once per activation format their kinds take), and the tiles of every part are split over
/// the pool together, so the call pays one fork and one join instead of one per matrix. Each
/// output comes from the same tile kernel, on the same quantized activations, as in a call of
/// its part alone, so the results are bit for bit the separate calls', side by side.
///
/// Returns `false` (leaving `out` untouched) when `parts` is empty, the sizes do not match or
/// this CPU does not execute `isa`: these checks are what the tile kernels' bounds rest on.
/// `out` may be uninitialized: returning `true`, this has written all `m * Σn` of its floats
/// (every output belongs to exactly one work item, whose kernel stores it).
pub(crate) fn matmul_concat_uninit(
    isa: Isa,
    parts: &[&PackedMatrix],
    x: &[f32],
    m: usize,
    out: &mut [std::mem::MaybeUninit<f32>],
) -> bool {
    let Some(k) = parts.first().map(|p| p.k) else {
        return false;
    };
    let n: usize = parts.iter().map(|p| p.n).sum();
    if m == 0
        || parts.iter().any(|p| p.k != k)
        || x.len() != m * k
        || out.len() != m * n
        || !Isa::available().contains(&isa)
    {
        return false;
    }
    thread_local! {
        static ACTS: std::cell::RefCell<[QuantActs; 2]> = std::cell::RefCell::default();
    }
    // The buffers are taken out of the thread-local for the call, not borrowed: while this
    // thread waits inside `split` for its parallel items, rayon may have it run another forward
    // pass's matmul (concurrent requests), which then finds empty buffers of its own.
    let mut acts = ACTS.with(|cell| cell.take());
    let [blocks, kq] = &mut acts;
    // The 32-value kinds take Q8_0/Q8_1 activations, the K-quants Q8_K: each made once.
    if parts.iter().any(|p| !p.kind.is_k()) {
        blocks.quantize_into(x, m, k);
    }
    if parts.iter().any(|p| p.kind.is_k()) {
        kq.quantize_k_into(x, m, k);
    }
    let (blocks, kq) = (&*blocks, &*kq);
    let ptr = OutPtr(out.as_mut_ptr().cast());
    let tiles: usize = parts.iter().map(|p| p.tiles).sum();
    // In prefill an item's tiles are read once per 8 tokens, from L2 while they fit: items as
    // large as the largest part's own, not a share of all the parts' tiles.
    let sizing = if m > MT {
        parts.iter().map(|p| p.tiles).max().unwrap_or(tiles)
    } else {
        tiles
    };
    split_sized(m, tiles, m * n * k, sizing, |range, toks| {
        // The item's tiles, numbered across the parts, cut at the parts' borders.
        let (mut first, mut col) = (0, 0);
        for p in parts {
            let (lo, hi) = (range.start.max(first), range.end.min(first + p.tiles));
            if lo < hi {
                let a = if p.kind.is_k() { kq } else { blocks };
                // The part's first column: `col + p.n <= n`, inside every output row.
                let at = OutPtr(ptr.get().wrapping_add(col));
                run_item(isa, p, a, lo - first..hi - first, toks.clone(), at, n);
            }
            first += p.tiles;
            col += p.n;
        }
    });
    ACTS.with(|cell| cell.replace(acts));
    true
}

/// Splits `m` tokens x `tiles` output tiles into work items (contiguous tile ranges x up to
/// [`TOKENS_PER_ITEM`] tokens) and runs `item` on each, on rayon's pool unless the call is too
/// small (`macs` multiply-adds) to wake it. Every output belongs to exactly one item, and an
/// item's kernel computes each of its outputs on its own, so how the work is split never
/// changes a result.
///
/// The token groups are as even as whole [`MT`]-row steps allow ([`token_group`]): each group
/// streams every weight once, and a remainder of a few rows (65 tokens as 64 + 1) paid a whole
/// decode step's weight stream for almost no work.
pub(crate) fn split(
    m: usize,
    tiles: usize,
    macs: usize,
    item: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync,
) {
    split_sized(m, tiles, macs, tiles, item)
}

/// [`split`] with items of the tile count a split of `sizing` tiles would give.
fn split_sized(
    m: usize,
    tiles: usize,
    macs: usize,
    sizing: usize,
    item: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync,
) {
    let threads = rayon::current_num_threads();
    if threads <= 1 || macs < SERIAL_MACS {
        item(0..tiles, 0..m);
        return;
    }
    let token_groups = m.div_ceil(TOKENS_PER_ITEM);
    // Enough items per thread to balance, each a contiguous range of tiles.
    let want = (threads * 4).div_ceil(token_groups).max(1);
    let tiles_per_item = sizing.min(tiles).div_ceil(want).max(1);
    let tile_groups = tiles.div_ceil(tiles_per_item);
    (0..tile_groups * token_groups)
        .into_par_iter()
        .for_each(|it| {
            let (tg, kg) = (it % tile_groups, it / tile_groups);
            let tr = tg * tiles_per_item..((tg + 1) * tiles_per_item).min(tiles);
            item(tr, token_group(m, token_groups, kg));
        });
}

/// Group `kg` of `groups` (`m.div_ceil(TOKENS_PER_ITEM)`) of `m` tokens: the groups split the
/// tokens' [`MT`]-row steps as evenly as whole steps allow, so each holds at most
/// [`TOKENS_PER_ITEM`] tokens and none more than a step fewer than the largest.
fn token_group(m: usize, groups: usize, kg: usize) -> std::ops::Range<usize> {
    let steps = m.div_ceil(MT);
    let at = |g: usize| (g * steps / groups.max(1) * MT).min(m);
    at(kg)..at(kg + 1)
}

/// One tile kernel call: activation rows `t0..t0 + MT` of `a` (`MT` the kernel's token count)
/// against tile `tile` of `p`, writing the first `cols` (≤ 16) outputs of each row `r` at
/// `out + r * ldo`.
///
/// The tile kernels' contract (what `run_item` establishes, from the sizes `matmul_concat_uninit`
/// checked): `tile < p.tiles`, `t0 + MT <= a.m`, `a.k == p.k`, `a` quantized for `p`'s kind
/// (Q8_K for the K-quants), and those outputs writable, by this call only.
#[derive(Clone, Copy)]
pub(crate) struct TileCall<'a> {
    /// The packed weights.
    pub(crate) p: &'a PackedMatrix,
    /// The quantized activations.
    pub(crate) a: &'a QuantActs,
    /// The tile (16 output rows).
    pub(crate) tile: usize,
    /// The first activation row.
    pub(crate) t0: usize,
    /// The tile's first output column in the output matrix.
    pub(crate) out: *mut f32,
    /// The output matrix's row stride.
    pub(crate) ldo: usize,
    /// Output columns of this tile (16, or fewer in the last tile).
    pub(crate) cols: usize,
}

/// Tiles `tiles` of `p` for tokens `toks`: output row `t`'s column `c` of the part at
/// `out + t * ldo + c`.
fn run_item(
    isa: Isa,
    p: &PackedMatrix,
    a: &QuantActs,
    tiles: std::ops::Range<usize>,
    toks: std::ops::Range<usize>,
    out: OutPtr,
    ldo: usize,
) {
    let mut t0 = toks.start;
    while t0 < toks.end {
        let mt = (toks.end - t0).min(MT);
        for tile in tiles.clone() {
            let cols = (p.n - tile * TILE).min(TILE);
            // SAFETY: this CPU executes `isa` (checked by `matmul_concat_uninit`);
            // `tile < p.tiles`, `t0 + mt <= a.m`, `a.k == p.k` (the sizes it checked, and `a`
            // quantized from `x` for `p`'s kind), and the written columns `tile*16 .. +cols`
            // of rows `t0..t0+mt` (stride `ldo`) lie inside the part's columns of the output,
            // disjoint from other items'.
            unsafe {
                let call = TileCall {
                    p,
                    a,
                    tile,
                    t0,
                    out: out.0.add(tile * TILE),
                    ldo,
                    cols,
                };
                tile_dispatch(isa, mt, call);
            }
        }
        t0 += mt;
    }
}

/// Calls the const-generic kernel `$f::<MT, KIND> $args` for run-time `$mt` (one of the
/// listed values, else the last) and `$kind` (one of the listed codes, else `$last`).
macro_rules! dispatch {
    ($f:ident, $kind:expr, [$($k:ident),*], $last:ident, $mt:expr, [$($m:literal),*], $mlast:literal, $args:tt) => {{
        macro_rules! by_kind {
            ($mm:literal) => {
                match $kind {
                    $($k => $f::<$mm, $k> $args,)*
                    _ => $f::<$mm, $last> $args,
                }
            };
        }
        match $mt {
            $($m => by_kind!($m),)*
            _ => by_kind!($mlast),
        }
    }};
}

/// The kernel of one architecture for `$p`'s kind through [`dispatch!`]: its K-quant pair
/// (`k:`) or its 32-value pair (`blocks:`), the first of a pair when `$use_best` (the better
/// instruction set), else the second (the baseline one).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! pick {
    ($use_best:expr, k: ($kb:ident, $ko:ident), blocks: ($bb:ident, $bo:ident), $p:ident, $args:tt) => {{
        if $p.kind.is_k() {
            use crate::codes::{k_code, K_IQ4XS, K_Q2K, K_Q3K, K_Q4K, K_Q5K, K_Q6K};
            let kind = k_code($p.kind);
            pick!(@run $use_best, $kb, $ko, kind, [K_Q4K, K_Q5K, K_Q2K, K_Q3K, K_IQ4XS], K_Q6K, $args)
        } else {
            use crate::codes::{kind_code, K_IQ4NL, K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0};
            let kind = kind_code($p.kind);
            pick!(@run $use_best, $bb, $bo, kind, [K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_IQ4NL], K_Q8_0, $args)
        }
    }};
    (@run $use_best:expr, $best:ident, $other:ident, $kind:ident, $ks:tt, $last:ident, ($mt:expr, $($arg:expr),*)) => {
        if $use_best {
            dispatch!($best, $kind, $ks, $last, $mt, [1, 2, 3, 4, 5, 6, 7], 8, ($($arg),*))
        } else {
            dispatch!($other, $kind, $ks, $last, $mt, [1, 2, 3, 4, 5, 6, 7], 8, ($($arg),*))
        }
    };
}

/// Runs the tile kernel of `isa` for the weights' kind and `mt` tokens.
///
/// # Safety
/// This CPU must execute `isa`, and `c` must meet the [`TileCall`] contract for `MT = mt`.
unsafe fn tile_dispatch(isa: Isa, mt: usize, c: TileCall<'_>) {
    let p = c.p;
    // SAFETY: the kernel chosen is the one of `isa`, which this CPU executes (the caller's
    // contract); bounds and outputs are as the caller guarantees.
    unsafe {
        match isa {
            _ if isa == Isa::Scalar && p.kind.is_k() => scalar::tile_scalar_k(c, mt),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni | Isa::Avx2 => {
                use crate::arch::x86::tiles::{tile_avx2, tile_vnni};
                use crate::arch::x86::tiles_k::{tile_avx2_k, tile_vnni_k};
                pick!(
                    isa == Isa::Avx512Vnni,
                    k: (tile_vnni_k, tile_avx2_k),
                    blocks: (tile_vnni, tile_avx2),
                    p,
                    (mt, c)
                )
            }
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => {
                use crate::arch::x86::tiles::tile_avxvnni;
                use crate::arch::x86::tiles_k::tile_avxvnni_k;
                pick!(
                    true,
                    k: (tile_avxvnni_k, tile_avxvnni_k),
                    blocks: (tile_avxvnni, tile_avxvnni),
                    p,
                    (mt, c)
                )
            }
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot | Isa::Neon => {
                use crate::arch::arm::tiles::{tile_neon, tile_neon_dot};
                use crate::arch::arm::tiles_k::{tile_neon_dot_k, tile_neon_k};
                pick!(
                    isa == Isa::NeonDot,
                    k: (tile_neon_dot_k, tile_neon_k),
                    blocks: (tile_neon_dot, tile_neon),
                    p,
                    (mt, c)
                )
            }
            _ => scalar::tile_scalar(c, mt),
        }
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    /// The token groups cover the tokens once, in order, each at most `TOKENS_PER_ITEM` and
    /// a whole number of `MT`-row steps (but the last), no more groups than before, and none
    /// more than a step below the largest: 65 tokens are 32 + 33, not 64 + 1.
    #[test]
    fn token_groups_are_even_and_cover_every_token() {
        for m in 1usize..=1100 {
            let groups = m.div_ceil(TOKENS_PER_ITEM);
            let ranges: Vec<_> = (0..groups).map(|g| token_group(m, groups, g)).collect();
            let mut next = 0;
            for r in &ranges {
                assert_eq!(r.start, next, "m={m} {ranges:?}");
                assert!(
                    r.end > r.start && r.len() <= TOKENS_PER_ITEM,
                    "m={m} {ranges:?}"
                );
                assert!(r.end == m || r.len() % MT == 0, "m={m} {ranges:?}");
                next = r.end;
            }
            assert_eq!(next, m);
            let (small, large) = (
                ranges.iter().map(|r| r.len()).min().unwrap_or(0),
                ranges.iter().map(|r| r.len()).max().unwrap_or(0),
            );
            assert!(small + MT >= large, "m={m} {ranges:?}");
        }
        assert_eq!(token_group(65, 2, 0), 0..32);
        assert_eq!(token_group(65, 2, 1), 32..65);
    }
}
