//! The matmul driver: quantizes the activations once, splits the output into (row tiles x token
//! ranges) work items on rayon's pool (the one pool `callm::device::set_threads` sizes), and
//! runs the best tile kernel the CPU executes.

use rayon::prelude::*;

use super::act::QuantActs;
use super::pack::{PackedMatrix, TILE};
use super::Isa;

/// Activation rows computed together against one weight tile.
const MT: usize = 8;
/// Tokens per work item in prefill: the item's activations stay in L2 while its tiles stream.
const TOKENS_PER_ITEM: usize = 64;
/// Below this many multiply-adds a call runs on the calling thread: waking the pool costs more.
const SERIAL_MACS: usize = 1 << 18;

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: work items write disjoint (token range x tile) rectangles of the output.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `out[m, n] = x[m, k] · Wᵀ` for packed `W`, with the kernel for `isa`.
///
/// Returns `false` (leaving `out` untouched) when the sizes do not match.
pub fn matmul_with(isa: Isa, p: &PackedMatrix, x: &[f32], m: usize, out: &mut [f32]) -> bool {
    if m == 0 || x.len() != m * p.k || out.len() != m * p.n {
        return false;
    }
    thread_local! {
        static ACTS: std::cell::RefCell<QuantActs> = std::cell::RefCell::new(QuantActs::default());
    }
    // The buffer is taken out of the thread-local for the call, not borrowed: while this
    // thread waits inside `run` for its parallel items, rayon may have it run another forward
    // pass's matmul (concurrent requests), which then finds an empty buffer of its own.
    let mut acts = ACTS.with(|cell| cell.take());
    if p.kind.is_k() {
        acts.quantize_k_into(x, m, p.k);
    } else {
        acts.quantize_into(x, m, p.k);
    }
    run(isa, p, &acts, out);
    ACTS.with(|cell| cell.replace(acts));
    true
}

fn run(isa: Isa, p: &PackedMatrix, a: &QuantActs, out: &mut [f32]) {
    let m = a.m;
    let ptr = OutPtr(out.as_mut_ptr());
    let threads = rayon::current_num_threads();
    let macs = m * p.n * p.k;
    if threads <= 1 || macs < SERIAL_MACS {
        run_item(isa, p, a, 0..p.tiles, 0..m, ptr);
        return;
    }
    let token_groups = m.div_ceil(TOKENS_PER_ITEM);
    // Enough items per thread to balance, each a contiguous range of tiles.
    let want = (threads * 4).div_ceil(token_groups).max(1);
    let tiles_per_item = p.tiles.div_ceil(want).max(1);
    let tile_groups = p.tiles.div_ceil(tiles_per_item);
    (0..tile_groups * token_groups)
        .into_par_iter()
        .for_each(|item| {
            let (tg, kg) = (item % tile_groups, item / tile_groups);
            let tiles = tg * tiles_per_item..((tg + 1) * tiles_per_item).min(p.tiles);
            let toks = kg * TOKENS_PER_ITEM..((kg + 1) * TOKENS_PER_ITEM).min(m);
            run_item(isa, p, a, tiles, toks, ptr);
        });
}

fn run_item(
    isa: Isa,
    p: &PackedMatrix,
    a: &QuantActs,
    tiles: std::ops::Range<usize>,
    toks: std::ops::Range<usize>,
    out: OutPtr,
) {
    let mut t0 = toks.start;
    while t0 < toks.end {
        let mt = (toks.end - t0).min(MT);
        for tile in tiles.clone() {
            let cols = (p.n - tile * TILE).min(TILE);
            // SAFETY: `tile < p.tiles`, `t0 + mt <= a.m`, `a.k == p.k` (checked by
            // `matmul_with`), and the written columns `tile*16 .. +cols` of rows `t0..t0+mt`
            // lie inside `out` (`m * n` values), disjoint from other items' rectangles.
            unsafe {
                let dst = out.0.add(tile * TILE);
                tile_dispatch(isa, mt, p, tile, a, t0, dst, p.n, cols);
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
            use super::codes::{k_code, K_Q4K, K_Q5K, K_Q6K};
            let kind = k_code($p.kind);
            pick!(@run $use_best, $kb, $ko, kind, [K_Q4K, K_Q5K], K_Q6K, $args)
        } else {
            use super::codes::{kind_code, K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0};
            let kind = kind_code($p.kind);
            pick!(@run $use_best, $bb, $bo, kind, [K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1], K_Q8_0, $args)
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

/// # Safety
/// As `x86::tile_vnni` (or `neon::tile_neon_dot`), with `isa` supported by this CPU.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_dispatch(
    isa: Isa,
    mt: usize,
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    dst: *mut f32,
    ldo: usize,
    cols: usize,
) {
    match isa {
        _ if isa == Isa::Scalar && p.kind.is_k() => {
            tile_scalar_k(p, tile, a, t0, mt, dst, ldo, cols)
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni | Isa::Avx2 => {
            use super::x86::{tile_avx2, tile_vnni};
            use super::x86_k::{tile_avx2_k, tile_vnni_k};
            pick!(
                isa == Isa::Avx512Vnni,
                k: (tile_vnni_k, tile_avx2_k),
                blocks: (tile_vnni, tile_avx2),
                p,
                (mt, p, tile, a, t0, dst, ldo, cols)
            )
        }
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot | Isa::Neon => {
            use super::neon::{tile_neon, tile_neon_dot};
            use super::neon_k::{tile_neon_dot_k, tile_neon_k};
            pick!(
                isa == Isa::NeonDot,
                k: (tile_neon_dot_k, tile_neon_k),
                blocks: (tile_neon_dot, tile_neon),
                p,
                (mt, p, tile, a, t0, dst, ldo, cols)
            )
        }
        _ => tile_scalar(p, tile, a, t0, mt, dst, ldo, cols),
    }
}

/// Portable tile kernel on the packed layout (the fallback, and a check of the layout itself).
///
/// # Safety
/// `out + (t0 + t) * ldo .. + cols` must be writable for `t < mt`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_scalar(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    mt: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    let off = p.kind.offset();
    for t in 0..mt {
        let row = t0 + t;
        for r in 0..cols {
            let mut acc = 0f32;
            for b in 0..p.nb {
                let tb = tile * p.nb + b;
                let ab = row * p.nb + b;
                let xs = &a.q[ab * 32..(ab + 1) * 32];
                let mut isum = 0i32;
                for (i, &x) in xs.iter().enumerate() {
                    isum += (p.packed_u(tb, r, i) - off) * x as i32;
                }
                let d = half::f16::from_bits(p.d[tb * TILE + r]).to_f32();
                acc += d * a.d[ab] * isum as f32;
                if !p.m.is_empty() {
                    acc += half::f16::from_bits(p.m[tb * TILE + r]).to_f32() * a.s[ab];
                }
            }
            *out.add(row * ldo + r) = acc;
        }
    }
}

/// Portable K-quant tile kernel on the packed layout (integers as in [`super::kblocks`]).
///
/// # Safety
/// `out + (t0 + t) * ldo .. + cols` must be writable for `t < mt`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_scalar_k(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    mt: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    use super::kblocks::QK_K;
    let off = p.kind.offset();
    let six = p.kind == super::BlockKind::Q6K;
    let (nb, nsb) = (p.nb, p.k / QK_K);
    for t in 0..mt {
        let row = t0 + t;
        for r in 0..cols {
            let mut acc = 0f32;
            for sb in 0..nsb {
                let (mut isum, mut msum) = (0i32, 0i32);
                for j in 0..QK_K / 32 {
                    let (tb, ab) = (tile * nb + sb * 8 + j, row * nb + sb * 8 + j);
                    let xs = &a.q[ab * 32..(ab + 1) * 32];
                    let spr = PackedMatrix::scales_per_row(p.kind);
                    let s0 = p.ks[tb * spr * TILE + r] as i32;
                    let s1 = if six {
                        p.ks[tb * spr * TILE + TILE + r] as i32
                    } else {
                        p.kmin[(tile * nsb + sb) * 128 + 32 * (j / 2) + 2 * r + j % 2] as i32
                    };
                    let (b0, b1) = (a.bs16[2 * ab], a.bs16[2 * ab + 1]);
                    let dot = |range: std::ops::Range<usize>| -> i32 {
                        range.map(|i| p.packed_u(tb, r, i) * xs[i] as i32).sum()
                    };
                    if six {
                        isum += s0 * (dot(0..16) - off * b0) + s1 * (dot(16..32) - off * b1);
                    } else {
                        isum += s0 * dot(0..32);
                        msum += s1 * (b0 + b1);
                    }
                }
                let at = (tile * nsb + sb) * TILE + r;
                let ad = a.dk[row * nsb + sb];
                let d = half::f16::from_bits(p.d[at]).to_f32();
                acc += d * ad * isum as f32;
                if !six {
                    acc -= half::f16::from_bits(p.m[at]).to_f32() * ad * msum as f32;
                }
            }
            *out.add(row * ldo + r) = acc;
        }
    }
}
