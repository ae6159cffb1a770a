use half::f16;

use super::*;
use crate::tests::random_f32;
use rand::{Rng, SeedableRng};

/// One sequence's whole cache (positions `0..len`), in the kernel's layouts.
struct Cache<E: CacheElem> {
    k: Vec<E>,
    v: Vec<E>,
    /// Keys and values as written: `[position][kv_head * hd]`.
    k_rows: Vec<f32>,
    v_rows: Vec<f32>,
}

/// Keys and values are random values of `E` (so that the f64 reference sees what the cache
/// holds).
fn cache<E: CacheElem>(len: usize, kvh: usize, hd: usize, rng: &mut impl Rng) -> Cache<E> {
    let w = kvh * hd;
    let round =
        |x: Vec<f32>| -> Vec<f32> { x.into_iter().map(|x| E::from_f32(x).to_f32()).collect() };
    let k_rows = round(random_f32(len * w, rng));
    let v_rows = round(random_f32(len * w, rng));
    let mut k = vec![E::default(); len.div_ceil(KEY_BLOCK) * key_block_floats(kvh, hd)];
    let mut v = vec![E::default(); len.div_ceil(KEY_BLOCK) * key_block_floats(kvh, hd)];
    // Written in two calls, as a prefill chunk and what follows would be.
    let cut = len / 3;
    assert!(store_keys(&mut k, kvh, hd, 0, &k_rows, cut, w));
    assert!(store_keys(
        &mut k,
        kvh,
        hd,
        cut,
        &k_rows[cut * w..],
        len - cut,
        w
    ));
    assert!(store_values(&mut v, kvh, hd, 0, &v_rows, cut, w));
    assert!(store_values(
        &mut v,
        kvh,
        hd,
        cut,
        &v_rows[cut * w..],
        len - cut,
        w
    ));
    Cache {
        k,
        v,
        k_rows,
        v_rows,
    }
}

/// Plain attention in f64 of one query row at `qpos` of head `h`: every visible score, a
/// two-pass softmax.
#[allow(clippy::too_many_arguments)]
fn reference<E: CacheElem>(
    p: &AttnParams<'_>,
    c: &Cache<E>,
    q: &[f32],
    h: usize,
    qpos: usize,
) -> Vec<f64> {
    let (hd, kvh) = (p.head_dim, p.kv_heads);
    let g = h / (p.heads / kvh);
    let vis: Vec<usize> = (0..=qpos).filter(|&j| qpos - j < p.window).collect();
    let s: Vec<f64> = vis
        .iter()
        .map(|&j| {
            let k = &c.k_rows[(j * kvh + g) * hd..][..hd];
            let mut x = q
                .iter()
                .zip(k)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>()
                * p.scale as f64;
            if let Some(cap) = p.softcap {
                x = cap as f64 * (x / cap as f64).tanh();
            }
            if let Some(a) = p.alibi {
                x += a[h] as f64 * (j as f64 - qpos as f64);
            }
            x
        })
        .collect();
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
    let z: f64 = e.iter().sum();
    (0..hd)
        .map(|d| {
            vis.iter()
                .zip(&e)
                .map(|(&j, w)| w * c.v_rows[(j * kvh + g) * hd + d] as f64)
                .sum::<f64>()
                / z
        })
        .collect()
}

#[test]
fn matches_plain_attention_for_batches_of_sequences() {
    matches_plain_attention::<f32>();
    matches_plain_attention::<f16>();
}

fn matches_plain_attention<E: CacheElem>() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let slopes: Vec<f32> = (0..8).map(|h| 0.5f32.powi(h + 1)).collect();
    // (heads, kv_heads, hd, window, softcap, alibi)
    for &(heads, kvh, hd, window, softcap, alibi) in &[
        (2, 2, 8, usize::MAX, None, false),
        (6, 2, 64, usize::MAX, None, false),
        (4, 1, 20, 7, None, false),
        (8, 2, 96, 50, Some(20.0f32), false),
        (4, 4, 16, usize::MAX, None, true),
        (3, 3, 13, usize::MAX, None, false),
        (4, 1, 256, 100, None, false),
    ] {
        let p = AttnParams {
            heads,
            kv_heads: kvh,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window,
            softcap,
            alibi: alibi.then_some(&slopes[..heads]),
        };
        // Three sequences: a decode step late in a long cache, a prefill chunk from a cached
        // prefix, and a prompt from position 0.
        let shapes = [(1usize, 140usize), (37, 33), (70, 0)];
        let caches: Vec<Cache<E>> = shapes
            .iter()
            .map(|&(n, pos)| cache(pos + n, kvh, hd, &mut rng))
            .collect();
        let total: usize = shapes.iter().map(|s| s.0).sum();
        let width = heads * hd;
        let q = random_f32(total * width, &mut rng);
        let mut row0 = 0;
        let seqs: Vec<SeqKv<'_, E>> = shapes
            .iter()
            .zip(&caches)
            .map(|(&(n, pos), c)| {
                let s = SeqKv {
                    row0,
                    n,
                    pos,
                    k: &c.k,
                    v: &c.v,
                };
                row0 += n;
                s
            })
            .collect();
        let mut out = vec![f32::NAN; total * width];
        attend(&p, &q, &seqs, &mut out).unwrap();
        for s in &seqs {
            let c = &caches[seqs.iter().position(|x| x.row0 == s.row0).unwrap()];
            for i in 0..s.n {
                for h in 0..heads {
                    let at = (s.row0 + i) * width + h * hd;
                    let want = reference(&p, c, &q[at..at + hd], h, s.pos + i);
                    for (d, w) in want.iter().enumerate() {
                        let g = out[at + d] as f64;
                        assert!(
                            (g - w).abs() <= 2e-5 * (1.0 + w.abs()),
                            "{heads}/{kvh}/{hd} w{window} row {i} head {h} dim {d}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_row_is_the_same_alone_batched_or_chunked_any_way() {
    same_alone_batched_or_chunked::<f32>();
    same_alone_batched_or_chunked::<f16>();
}

fn same_alone_batched_or_chunked<E: CacheElem>() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    for &(heads, kvh, hd, window) in &[
        (14, 2, 64, usize::MAX),
        (9, 3, 64, 40),
        (4, 1, 24, usize::MAX),
    ] {
        let p = AttnParams {
            heads,
            kv_heads: kvh,
            head_dim: hd,
            scale: 0.17,
            window,
            softcap: None,
            alibi: None,
        };
        let width = heads * hd;
        let len = 150;
        let c = cache::<E>(len, kvh, hd, &mut rng);
        let q = random_f32(len * width, &mut rng);
        for &isa in Isa::available() {
            // The whole prompt in one call.
            let mut whole = vec![0f32; len * width];
            let one = |row0: usize, n: usize, pos: usize| SeqKv {
                row0,
                n,
                pos,
                k: &c.k,
                v: &c.v,
            };
            attend_with(isa, &p, &q, &[one(0, len, 0)], &mut whole).unwrap();
            // Chunked at odd places, two chunks in the same call as if they were two sequences.
            let mut chunked = vec![0f32; len * width];
            attend_with(
                isa,
                &p,
                &q,
                &[one(0, 45, 0), one(100, 50, 100)],
                &mut chunked,
            )
            .unwrap();
            attend_with(
                isa,
                &p,
                &q,
                &[one(45, 1, 45), one(46, 54, 46)],
                &mut chunked,
            )
            .unwrap();
            assert_eq!(whole, chunked, "{isa:?} {heads}/{kvh} chunked");
            // Every row alone, as a decode step with the cache up to it.
            for i in (0..len).step_by(7) {
                let mut alone = vec![0f32; width];
                let s = SeqKv {
                    row0: 0,
                    n: 1,
                    pos: i,
                    k: &c.k,
                    v: &c.v,
                };
                attend_with(isa, &p, &q[i * width..(i + 1) * width], &[s], &mut alone).unwrap();
                assert_eq!(
                    alone,
                    whole[i * width..(i + 1) * width],
                    "{isa:?} {heads}/{kvh} row {i}"
                );
            }
        }
    }
}

#[test]
fn simd_pieces_equal_the_portable_definitions_in_any_group() {
    simd_pieces_equal_portable::<f32>();
    simd_pieces_equal_portable::<f16>();
}

#[test]
fn scale_mask_max_equals_the_portable_definition() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    for (a, e) in [
        (0, 32),
        (3, 17),
        (5, 6),
        (31, 32),
        (0, 1),
        (8, 16),
        (9, 9),
        (0, 0),
    ] {
        let mut s0 = [0f32; KEY_BLOCK];
        for x in s0.iter_mut() {
            *x = rng.random_range(-40.0f32..40.0);
        }
        let mut want = s0;
        let wm = scale_mask_max_portable(&mut want, a, e, 0.125);
        for &isa in Isa::available() {
            let mut got = s0;
            let gm = scale_mask_max(isa, &mut got, a, e, 0.125);
            assert_eq!(got, want, "{isa:?} lanes {a}..{e}");
            assert_eq!(gm.to_bits(), wm.to_bits(), "{isa:?} maximum of {a}..{e}");
        }
    }
}

fn simd_pieces_equal_portable<E: CacheElem>() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let elems = |x: Vec<f32>| -> Vec<E> { x.into_iter().map(E::from_f32).collect() };
    for hd in [1usize, 5, 16, 24, 64, 80, 96, 128, 256] {
        let q = random_f32(4 * hd, &mut rng);
        let kb = elems(random_f32(hd * KEY_BLOCK, &mut rng));
        let mut want = [[0f32; KEY_BLOCK]; 4];
        for (r, w) in want.iter_mut().enumerate() {
            scores_portable(&q[r * hd..(r + 1) * hd], &kb, w);
        }
        let mut p = [[0f32; KEY_BLOCK]; 4];
        for x in p.iter_mut().flatten() {
            *x = rng.random_range(0.0f32..1.0);
        }
        let v = elems(random_f32(KEY_BLOCK * hd, &mut rng));
        let o0 = random_f32(4 * hd, &mut rng);
        let corr = [0.75f32, 1.0, 0.5, 0.0];
        for &isa in Isa::available() {
            for g in [1usize, 2, 3, 4] {
                let ats: Vec<usize> = (0..g).map(|r| r * hd).collect();
                let mut got = [[0f32; KEY_BLOCK]; 4];
                scores_group(isa, &q, &ats, hd, &kb, &mut got[..g], 0);
                assert_eq!(&got[..g], &want[..g], "{isa:?} scores hd {hd} group {g}");
                for (lo, hi) in [(0, 32), (3, 17), (5, 6), (31, 32)] {
                    let mut y = o0.clone();
                    for r in 0..g {
                        pv_portable(&mut y[r * hd..(r + 1) * hd], corr[r], &p[r], lo, hi, &v);
                    }
                    let mut x = o0.clone();
                    let outs: Vec<*mut f32> = (0..g).map(|r| x[r * hd..].as_mut_ptr()).collect();
                    // SAFETY: each output points to `hd` floats of `x`; `v` holds 32 rows of
                    // `hd` values (the prefetch hint of the next block reads nothing).
                    unsafe { pv_group(isa, &outs, &corr[..g], &p[..g], lo, hi, &v, hd, 4096) };
                    assert_eq!(x, y, "{isa:?} pv hd {hd} group {g} keys {lo}..{hi}");
                }
            }
        }
    }
}

#[test]
fn block_exp_is_within_two_ulps_of_f64() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let mut xs: Vec<f32> = (0..100_000 - 12)
        .map(|_| rng.random_range(-87.0f32..0.0))
        .collect();
    xs.extend([
        0.0,
        -0.0,
        -1e-30,
        -0.5,
        -std::f32::consts::LN_2,
        -87.3,
        -87.4,
        -100.0,
        f32::NEG_INFINITY,
        -3.0,
        -2.0,
        -1.0,
    ]);
    for (i, chunk) in xs.chunks_exact(KEY_BLOCK).enumerate() {
        let avail = Isa::available();
        let isa = avail[i % avail.len()];
        let mut s = [0f32; KEY_BLOCK];
        s.copy_from_slice(chunk);
        let sum = exp_block(isa, &mut s, 0.0);
        let mut want_sum = 0f64;
        for (x, got) in chunk.iter().zip(&s) {
            let want = (*x as f64).exp();
            want_sum += want;
            // Below e^-87.3 (the smallest normal f32 region) the result is 0.
            let tol = (want * 2.5e-7).max(f32::MIN_POSITIVE as f64);
            assert!(
                ((*got as f64) - want).abs() <= tol,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!((sum as f64 - want_sum).abs() <= want_sum * 1e-6 + 1e-30);
    }
}

#[test]
fn exp_blocks_sum_in_one_order_on_every_instruction_set() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    for round in 0..200 {
        let mut s0 = [0f32; KEY_BLOCK];
        for (l, x) in s0.iter_mut().enumerate() {
            // Some masked lanes (−∞), values spread over many magnitudes.
            *x = if (l + round) % 7 == 0 {
                f32::NEG_INFINITY
            } else {
                rng.random_range(-30.0f32..0.0)
            };
        }
        let mut first: Option<([f32; KEY_BLOCK], f32)> = None;
        for &isa in Isa::available() {
            let mut s = s0;
            let sum = exp_block(isa, &mut s, 0.0);
            assert_eq!(
                sum.to_bits(),
                block_sum(&s).to_bits(),
                "{isa:?} round {round}"
            );
            if isa == Isa::Scalar {
                // The portable fallback takes the library's `exp`, not the kernels' polynomial.
                continue;
            }
            match &first {
                None => first = Some((s, sum)),
                Some((fs, fsum)) => {
                    assert_eq!(&s, fs, "{isa:?} exponentials, round {round}");
                    assert_eq!(sum.to_bits(), fsum.to_bits(), "{isa:?} sum, round {round}");
                }
            }
        }
    }
}

#[test]
fn bad_calls_are_errors() {
    let p = AttnParams {
        heads: 2,
        kv_heads: 1,
        head_dim: 8,
        scale: 1.0,
        window: usize::MAX,
        softcap: None,
        alibi: None,
    };
    let c = cache::<f32>(40, 1, 8, &mut rand::rngs::StdRng::seed_from_u64(1));
    let q = vec![0f32; 3 * 16];
    let mut out = vec![0f32; 3 * 16];
    let s = |row0, n, pos| SeqKv {
        row0,
        n,
        pos,
        k: &c.k,
        v: &c.v,
    };
    assert!(attend::<f32>(&p, &q, &[s(0, 3, 37)], &mut out).is_ok());
    // Rows past the call, a cache too short, overlapping sequences, uneven heads.
    assert!(attend::<f32>(&p, &q, &[s(1, 3, 0)], &mut out).is_err());
    // (The cache holds whole blocks: 40 positions take two, 64 positions' room.)
    assert!(attend::<f32>(&p, &q, &[s(0, 3, 61)], &mut out).is_ok());
    assert!(attend::<f32>(&p, &q, &[s(0, 3, 62)], &mut out).is_err());
    assert!(attend::<f32>(&p, &q, &[s(0, 2, 0), s(1, 2, 0)], &mut out).is_err());
    assert!(attend::<f32>(&AttnParams { kv_heads: 3, ..p }, &q, &[], &mut out).is_err());
    assert!(attend::<f32>(&p, &q[..47], &[], &mut out[..47]).is_err());
    let slopes = [0.5f32];
    assert!(attend::<f32>(
        &AttnParams {
            alibi: Some(&slopes),
            ..p
        },
        &q,
        &[],
        &mut out
    )
    .is_err());
    // Storage writes that do not fit write nothing.
    let mut k = vec![0f32; key_block_floats(1, 8)];
    assert!(!store_keys(&mut k, 1, 8, 30, &[1.0; 24], 3, 8));
    assert!(k.iter().all(|&x| x == 0.0));
    assert!(!store_values(&mut k, 1, 8, 0, &[1.0; 8], 2, 8));
}

/// An f16 cache holds each key and value rounded to nearest, in the same places as the f32
/// cache holds them exactly (half's scalar conversion is the reference for the slice one).
#[test]
fn f16_storage_rounds_each_value_in_place() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    let (kvh, hd, len) = (3, 24, 70);
    let w = kvh * hd;
    // Values of every magnitude, halfway cases and ones f16 cannot hold.
    let mut rows: Vec<f32> = random_f32(len * w, &mut rng)
        .iter()
        .map(|x| x * 10f32.powi(rng.random_range(-9..6)))
        .collect();
    rows[0] = 1.0 + 2f32.powi(-11);
    rows[1] = 70000.0;
    rows[2] = 1e-9;
    let mut k32 = vec![0f32; len.div_ceil(KEY_BLOCK) * key_block_floats(kvh, hd)];
    let mut k16 = vec![f16::ZERO; k32.len()];
    let (mut v32, mut v16) = (vec![0f32; k32.len()], vec![f16::ZERO; k32.len()]);
    assert!(store_keys(&mut k32, kvh, hd, 0, &rows, len, w));
    assert!(store_keys(&mut k16, kvh, hd, 0, &rows, len, w));
    assert!(store_values(&mut v32, kvh, hd, 0, &rows, len, w));
    assert!(store_values(&mut v16, kvh, hd, 0, &rows, len, w));
    for (a, b) in k32.iter().zip(&k16).chain(v32.iter().zip(&v16)) {
        assert_eq!(b.to_bits(), f16::from_f32(*a).to_bits(), "{a}");
    }
    assert_eq!(v16[0].to_f32(), 1.0, "ties round to even");
    assert!(v16[1].to_f32().is_infinite());
}
