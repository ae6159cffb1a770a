//! Causal attention on the CPU (f32) for a batch of sequences, each over its own key/value
//! cache: one algorithm for every query row, prefill and decode alike, whose result for a row
//! does not depend on the other rows of the call.
//!
//! A flash-attention-style pass: for each row, the visible keys are taken in blocks of
//! [`KEY_BLOCK`] that sit on absolute positions (`[0, 32)`, `[32, 64)`, ...), with an online
//! softmax (running maximum and sum) across blocks. Within a block, a row's 32 scores are
//! computed with a fixed sequence of fused multiply-adds over the head dimension, the keys it
//! may not see are set to −∞ (never used in arithmetic), their exponentials and sum follow a
//! fixed order, and the weighted sum of values runs over exactly the keys the row sees, in
//! position order. None of this depends on which other rows, heads or sequences share the call,
//! nor on how a prompt was split into calls, so a sequence's numbers are the same alone, in any
//! batch, chunked any way, or resumed from a cache that another call filled.
//!
//! Keys are stored transposed in blocks, `[block][kv_head][head_dim][32]` ([`store_keys`]), so a
//! row's 32 scores are vector multiply-adds over the head dimension with no horizontal sums;
//! values in blocks by position, `[block][kv_head][32][head_dim]` ([`store_values`]), so a kv
//! head's keys and values of a block are each one contiguous run. Rows of
//! the same kv head are grouped (several positions of a prompt, the query heads of a GQA
//! group) so that each key block is read from memory once for all of them; groups run on
//! rayon's pool.

use rayon::prelude::*;

use crate::Isa;

mod layout;

use layout::value_row;
pub use layout::{key_block_floats, store_keys, store_values, CacheElem};

/// Keys per online-softmax step; key blocks start at multiples of it.
pub const KEY_BLOCK: usize = 32;
/// Query rows per work item (they share each key block's loads).
const ROWS: usize = 16;

/// What every row of a call shares.
#[derive(Debug, Clone, Copy)]
pub struct AttnParams<'a> {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (`heads` is a multiple of it; query head `h` uses kv head
    /// `h / (heads / kv_heads)`).
    pub kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Score scale (`1/sqrt(head_dim)` usually).
    pub scale: f32,
    /// Keys a query sees at most, itself included (`usize::MAX`: no window).
    pub window: usize,
    /// Scores become `cap * tanh(score / cap)` (after the scale).
    pub softcap: Option<f32>,
    /// ALiBi: per query head, a slope; `slope * (key_pos - query_pos)` is added to the
    /// (scaled, capped) scores.
    pub alibi: Option<&'a [f32]>,
}

/// One sequence of a call: its rows of `q` and `out`, and its cache of the layer (f32 or f16
/// values, [`CacheElem`]).
#[derive(Debug, Clone, Copy)]
pub struct SeqKv<'a, E: CacheElem = f32> {
    /// First row (token) of this sequence in `q` and `out`.
    pub row0: usize,
    /// Rows (new tokens) of this sequence.
    pub n: usize,
    /// Absolute position of row `row0`: the rows are positions `pos..pos + n`, and the cache
    /// already holds their keys and values (written before the call) after those of the
    /// `pos` earlier positions.
    pub pos: usize,
    /// Keys, `[block][kv_head][head_dim][KEY_BLOCK]`, at least `ceil((pos + n) / 32)` blocks.
    pub k: &'a [E],
    /// Values, `[block][kv_head][32][head_dim]`, at least `ceil((pos + n) / 32)` blocks.
    pub v: &'a [E],
}

/// Attention of every sequence's rows: `q` and `out` hold rows of `heads * head_dim` values
/// (token-major, query head `h` at `h * head_dim`), the sequences' rows are disjoint, and each
/// row attends causally (within the window) to its own sequence's cache. Rows of `out` that
/// no sequence names are left as they are.
pub fn attend<E: CacheElem>(
    p: &AttnParams<'_>,
    q: &[f32],
    seqs: &[SeqKv<'_, E>],
    out: &mut [f32],
) -> candle_core::Result<()> {
    attend_with(crate::isa(), p, q, seqs, out)
}

/// [`attend`] with the kernels of `isa` (which this CPU must execute: `Isa::available`).
pub(crate) fn attend_with<E: CacheElem>(
    isa: Isa,
    p: &AttnParams<'_>,
    q: &[f32],
    seqs: &[SeqKv<'_, E>],
    out: &mut [f32],
) -> candle_core::Result<()> {
    if !Isa::available().contains(&isa) {
        candle_core::bail!("attention: {isa:?} does not run here");
    }
    let (heads, kvh, hd) = (p.heads, p.kv_heads, p.head_dim);
    if heads == 0 || kvh == 0 || hd == 0 || !heads.is_multiple_of(kvh) {
        candle_core::bail!("attention: {heads} heads for {kvh} kv heads of {hd} values");
    }
    let width = heads * hd;
    if q.len() != out.len() || !q.len().is_multiple_of(width) {
        candle_core::bail!("attention: q and out must be whole rows of {width} values");
    }
    if p.alibi.is_some_and(|a| a.len() != heads) {
        candle_core::bail!("attention: one ALiBi slope per query head");
    }
    let total = q.len() / width;
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(seqs.len());
    for s in seqs {
        let end = s.pos + s.n;
        if s.row0 + s.n > total
            || s.k.len() < end.div_ceil(KEY_BLOCK) * key_block_floats(kvh, hd)
            || s.v.len() < end.div_ceil(KEY_BLOCK) * key_block_floats(kvh, hd)
        {
            candle_core::bail!("attention: a sequence's rows or cache are out of bounds");
        }
        if s.n > 0 {
            spans.push((s.row0, s.row0 + s.n));
        }
    }
    // Disjoint rows: each output is written by one work item only.
    spans.sort_unstable();
    if spans.windows(2).any(|w| w[1].0 < w[0].1) {
        candle_core::bail!("attention: sequences share rows");
    }
    let rep = heads / kvh;
    let (pos_per_item, heads_per_item) = if rep <= ROWS {
        ((ROWS / rep).max(1), rep)
    } else {
        (1, ROWS)
    };
    let mut items = Vec::new();
    for (si, s) in seqs.iter().enumerate() {
        for g in 0..kvh {
            for i0 in (0..s.n).step_by(pos_per_item) {
                for h0 in (0..rep).step_by(heads_per_item) {
                    items.push(Item {
                        seq: si,
                        g,
                        i0,
                        ni: pos_per_item.min(s.n - i0),
                        h0,
                        nh: heads_per_item.min(rep - h0),
                    });
                }
            }
        }
    }
    let job = Job {
        p: *p,
        isa,
        q,
        seqs,
        out: OutPtr(out.as_mut_ptr()),
        rep,
    };
    // Decode of one sequence has few items: the pool is worth waking only for real work.
    if items.len() <= 1 {
        items.iter().for_each(|it| job.run(it));
    } else {
        items.par_iter().for_each(|it| job.run(it));
    }
    Ok(())
}

/// Positions `i0..i0 + ni` of sequence `seq`, query heads `h0..h0 + nh` of kv head `g`'s group.
struct Item {
    seq: usize,
    g: usize,
    i0: usize,
    ni: usize,
    h0: usize,
    nh: usize,
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: work items write disjoint rows x heads of the output (checked in `attend`).
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`.
unsafe impl Sync for OutPtr {}

struct Job<'a, E: CacheElem> {
    p: AttnParams<'a>,
    isa: Isa,
    q: &'a [f32],
    seqs: &'a [SeqKv<'a, E>],
    out: OutPtr,
    rep: usize,
}

/// One row's running state.
#[derive(Clone, Copy)]
struct Row {
    /// Offset of its query (and output) in `q` (`out`).
    at: usize,
    /// Its position and its first visible key.
    qpos: usize,
    lo: usize,
    /// Running maximum and sum of the online softmax.
    m: f32,
    l: f32,
    slope: f32,
}

impl<E: CacheElem> Job<'_, E> {
    fn run(&self, it: &Item) {
        let (p, s) = (&self.p, &self.seqs[it.seq]);
        let (hd, kvh) = (p.head_dim, p.kv_heads);
        let width = p.heads * hd;
        let mut rows = [Row {
            at: 0,
            qpos: 0,
            lo: 0,
            m: f32::NEG_INFINITY,
            l: 0.0,
            slope: 0.0,
        }; ROWS];
        let mut nr = 0;
        for i in it.i0..it.i0 + it.ni {
            for j in it.h0..it.h0 + it.nh {
                let h = it.g * self.rep + j;
                let qpos = s.pos + i;
                rows[nr] = Row {
                    at: (s.row0 + i) * width + h * hd,
                    qpos,
                    lo: (qpos + 1).saturating_sub(p.window),
                    m: f32::NEG_INFINITY,
                    l: 0.0,
                    slope: p.alibi.map_or(0.0, |a| a[h]),
                };
                nr += 1;
            }
        }
        let rows = &mut rows[..nr];
        for r in rows.iter() {
            // SAFETY: the row's `hd` outputs are this item's alone (`attend` checked that
            // sequences' rows are disjoint and in bounds; items split heads and positions).
            unsafe { std::ptr::write_bytes(self.out.0.add(r.at), 0, hd) };
        }
        let first = rows.iter().map(|r| r.lo).min().unwrap_or(0) / KEY_BLOCK;
        let last = rows.iter().map(|r| r.qpos).max().unwrap_or(0) / KEY_BLOCK;
        let kb_len = hd * KEY_BLOCK;
        let plain = p.softcap.is_none() && p.alibi.is_none();
        let mut sc = [[0f32; KEY_BLOCK]; ROWS];
        // Per visible row of a block: its index, its visible lanes and its correction.
        let mut vis = [(0usize, 0usize, 0usize, 0f32); ROWS];
        for b in first..=last {
            let j0 = b * KEY_BLOCK;
            let kb = &s.k[(b * kvh + it.g) * kb_len..][..kb_len];
            let mut nv = 0;
            for (i, r) in rows.iter().enumerate() {
                if r.qpos >= j0 && r.lo < j0 + KEY_BLOCK {
                    let (a, e) = (r.lo.max(j0) - j0, (r.qpos + 1).min(j0 + KEY_BLOCK) - j0);
                    vis[nv] = (i, a, e, 0.0);
                    nv += 1;
                }
            }
            // Scores, up to four rows sharing each key load.
            let mut i = 0;
            while i < nv {
                let g = group_len(nv - i);
                let mut at = [0usize; 4];
                for (x, v) in at.iter_mut().zip(&vis[i..i + g]) {
                    *x = rows[v.0].at;
                }
                // The next block of this kv head, which the kernel asks the cache for.
                let ahead = if b < last { kvh * kb_len } else { 0 };
                scores_group(self.isa, self.q, &at[..g], hd, kb, &mut sc[i..i + g], ahead);
                i += g;
            }
            // The online softmax, row by row.
            for (si, v) in vis[..nv].iter_mut().enumerate() {
                let r = &mut rows[v.0];
                let sc = &mut sc[si];
                let (a, e) = (v.1, v.2);
                let mb = if plain {
                    scale_mask_max(self.isa, sc, a, e, p.scale)
                } else {
                    let mut mb = f32::NEG_INFINITY;
                    for (l, x) in sc.iter_mut().enumerate() {
                        if l < a || l >= e {
                            *x = f32::NEG_INFINITY;
                            continue;
                        }
                        let mut y = *x * p.scale;
                        if let Some(cap) = p.softcap {
                            y = cap * (y / cap).tanh();
                        }
                        if p.alibi.is_some() {
                            y += r.slope * ((j0 + l) as f32 - r.qpos as f32);
                        }
                        *x = y;
                        mb = mb.max(y);
                    }
                    mb
                };
                if mb == f32::NEG_INFINITY || mb.is_nan() {
                    // Nothing usable: probabilities 0, state and output unchanged.
                    sc.fill(0.0);
                    v.3 = 1.0;
                    continue;
                }
                let m = r.m.max(mb);
                // exp(0) is exactly 1: skipping the call changes nothing.
                let corr = if m == r.m { 1.0 } else { (r.m - m).exp() };
                let sum = exp_block(self.isa, sc, m);
                r.l = r.l * corr + sum;
                r.m = m;
                v.3 = corr;
            }
            // Values, up to four rows with the same visible keys sharing each value load.
            let vb = &s.v[value_row(b, it.g, 0, kvh, hd)..][..kb_len];
            // The next block of this kv head's values, which the kernel asks the cache for.
            let v_ahead = if b < last { kvh * kb_len } else { 0 };
            let mut i = 0;
            while i < nv {
                let mut g = 1;
                while g < group_len(nv - i) && vis[i + g].1 == vis[i].1 && vis[i + g].2 == vis[i].2
                {
                    g += 1;
                }
                let g = group_len(g);
                let mut out = [std::ptr::null_mut(); 4];
                let mut corr = [0f32; 4];
                for k in 0..g {
                    // SAFETY: the row's offset is inside `out` (checked in `attend`).
                    out[k] = unsafe { self.out.0.add(rows[vis[i + k].0].at) };
                    corr[k] = vis[i + k].3;
                }
                let (a, e) = (vis[i].1, vis[i].2);
                // SAFETY: each row's `hd` outputs are this item's alone (see above); keys
                // `j0 + a .. j0 + e` are below `pos + n`, inside `s.v` (checked in `attend`).
                unsafe {
                    pv_group(
                        self.isa,
                        &out[..g],
                        &corr[..g],
                        &sc[i..i + g],
                        a,
                        e,
                        vb,
                        hd,
                        v_ahead,
                    )
                };
                i += g;
            }
        }
        for r in rows.iter() {
            let inv = if r.l > 0.0 { 1.0 / r.l } else { 0.0 };
            // SAFETY: as above.
            let o = unsafe { std::slice::from_raw_parts_mut(self.out.0.add(r.at), hd) };
            for x in o {
                *x *= inv;
            }
        }
    }
}

/// Rows handled together by [`scores_group`] and [`pv_group`] out of `left`: up to 4 (a GQA group of 3 query heads stays one group).
fn group_len(left: usize) -> usize {
    match left {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        _ => 4,
    }
}

/// The 32 dot products of each query row (`q[at..at + hd]` for each offset, 1 to 4 rows)
/// with a key block (`[hd][32]`), unscaled; a row's numbers do not depend on the others.
fn scores_group<E: CacheElem>(
    isa: Isa,
    q: &[f32],
    ats: &[usize],
    hd: usize,
    kb: &[E],
    out: &mut [[f32; KEY_BLOCK]],
    ahead: usize,
) {
    debug_assert!(kb.len() == hd * KEY_BLOCK && out.len() == ats.len());
    debug_assert!(ats.iter().all(|&a| a + hd <= q.len()));
    #[cfg(target_arch = "x86_64")]
    {
        use crate::arch::x86::attn::{scores_avx2, scores_avx512};
        let qp = q.as_ptr();
        macro_rules! group {
            ($f:ident, $r:literal) => {{
                let mut qs = [qp; $r];
                let mut ss = [std::ptr::null_mut(); $r];
                for (k, (a, o)) in ats.iter().zip(out.iter_mut()).enumerate() {
                    // SAFETY: `a + hd <= q.len()` (the callers' offsets are rows of `q`).
                    qs[k] = unsafe { qp.add(*a) };
                    ss[k] = o.as_mut_ptr();
                }
                // SAFETY: the instruction set was checked when it was selected; each query
                // holds `hd` values, `kb` holds `hd` rows of 32 keys, each output 32 floats.
                unsafe { $f::<$r, E>(qs, hd, kb.as_ptr(), ss, ahead) }
            }};
        }
        match (isa, ats.len()) {
            (Isa::Avx512Vnni, 4) => return group!(scores_avx512, 4),
            (Isa::Avx512Vnni, 3) => return group!(scores_avx512, 3),
            (Isa::Avx512Vnni, 2) => return group!(scores_avx512, 2),
            (Isa::Avx512Vnni, 1) => return group!(scores_avx512, 1),
            (Isa::Avx2 | Isa::AvxVnni, 4) => return group!(scores_avx2, 4),
            (Isa::Avx2 | Isa::AvxVnni, 3) => return group!(scores_avx2, 3),
            (Isa::Avx2 | Isa::AvxVnni, 2) => return group!(scores_avx2, 2),
            (Isa::Avx2 | Isa::AvxVnni, 1) => return group!(scores_avx2, 1),
            (Isa::Avx512Vnni | Isa::Avx2 | Isa::AvxVnni, _) => {
                for (a, o) in ats.iter().zip(out.iter_mut()) {
                    scores_group(isa, q, &[*a], hd, kb, std::slice::from_mut(o), ahead);
                }
                return;
            }
            _ => {}
        }
    }
    // The prefetch distance only steers the x86 kernels.
    let _ = (isa, ahead);
    for (a, o) in ats.iter().zip(out.iter_mut()) {
        scores_portable(&q[*a..*a + hd], kb, o);
    }
}

/// The definition every version follows per key: two partial sums, of the even and of the odd
/// dimensions, each one fused multiply-add per dimension in order, then added.
pub(crate) fn scores_portable<E: CacheElem>(q: &[f32], kb: &[E], s: &mut [f32; KEY_BLOCK]) {
    let mut acc = [[0f32; KEY_BLOCK]; 2];
    for (d, (&qd, k)) in q.iter().zip(kb.chunks_exact(KEY_BLOCK)).enumerate() {
        let a = &mut acc[d % 2];
        for l in 0..KEY_BLOCK {
            a[l] = qd.mul_add(k[l].to_f32(), a[l]);
        }
    }
    for l in 0..KEY_BLOCK {
        s[l] = acc[0][l] + acc[1][l];
    }
}

/// `s[l] ← s[l] · scale` for the visible lanes `a..e`, −∞ for the others; returns their maximum
/// (−∞ when none).
#[inline]
pub(crate) fn scale_mask_max(
    isa: Isa,
    s: &mut [f32; KEY_BLOCK],
    a: usize,
    e: usize,
    scale: f32,
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512Vnni {
            // SAFETY: the instruction set was checked when it was selected.
            return unsafe { crate::arch::x86::attn::scale_mask_max_avx512(s, a, e, scale) };
        }
        if isa.has_avx2() {
            // SAFETY: AVX2 is part of the selected instruction set.
            return unsafe { crate::arch::x86::attn::scale_mask_max_avx2(s, a, e, scale) };
        }
    }
    let _ = isa;
    scale_mask_max_portable(s, a, e, scale)
}

/// The definition [`scale_mask_max`]'s kernels follow, for scores without NaN (with a NaN
/// score a kernel may return NaN, on which the caller skips the block).
pub(crate) fn scale_mask_max_portable(
    s: &mut [f32; KEY_BLOCK],
    a: usize,
    e: usize,
    scale: f32,
) -> f32 {
    let mut mb = f32::NEG_INFINITY;
    for (l, x) in s.iter_mut().enumerate() {
        if l < a || l >= e {
            *x = f32::NEG_INFINITY;
        } else {
            *x *= scale;
            mb = mb.max(*x);
        }
    }
    mb
}

/// `s ← exp(s − m)` for the 32 scores (−∞ gives 0); returns their sum in the order of
/// [`block_sum`], on every instruction set.
#[inline]
fn exp_block(isa: Isa, s: &mut [f32; KEY_BLOCK], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512Vnni {
            // SAFETY: AVX-512 F is part of the selected instruction set.
            return unsafe { crate::arch::x86::attn::exp_block_avx512(s, m) };
        }
        if isa.has_avx2() {
            // SAFETY: AVX2 and FMA are part of the selected instruction set.
            return unsafe { crate::arch::x86::attn::exp_block_avx2(s, m) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let _ = isa;
        // SAFETY: NEON is part of every aarch64 target Rust builds for.
        return unsafe { crate::arch::arm::exp::exp_block_neon(s, m) };
    }
    #[allow(unreachable_code)]
    {
        let _ = isa;
        for x in s.iter_mut() {
            *x = (*x - m).exp();
        }
        block_sum(s)
    }
}

/// The sum of a block's 32 exponentials, in the order every `exp_block` kernel adds them (that
/// of four 8-lane parts): lane `j` of `t` is `(x[j] + x[8 + j]) + (x[16 + j] + x[24 + j])`, then
/// `q[i] = t[i] + t[4 + i]`, and the sum is `(q[0] + q[2]) + (q[1] + q[3])`. One order for all
/// instruction sets makes a row's normalizer, and so its output, the same on any of them (a
/// seeded generation then gives the same text on an AVX2 laptop as on an AVX-512 server).
pub(crate) fn block_sum(x: &[f32; KEY_BLOCK]) -> f32 {
    let t: [f32; 8] = std::array::from_fn(|j| (x[j] + x[8 + j]) + (x[16 + j] + x[24 + j]));
    let q: [f32; 4] = std::array::from_fn(|i| t[i] + t[4 + i]);
    (q[0] + q[2]) + (q[1] + q[3])
}

/// For each row `k` (1 to 4): `o_k ← o_k · corr_k + Σ_{l ∈ a..e} p_k[l] · v[l]` over its
/// `hd` values, where `v[l]` is the row `l * hd` values into `v` (a kv head's values of one
/// block); a row's numbers do not depend on the others. `ahead`: how far after `v` the next
/// block's values lie, which the kernels ask the cache for as they go (a hint only).
///
/// # Safety
/// Each `out[k]` must point to `hd` writable floats no other thread touches; `v` must hold rows
/// `a..e` (`e * hd` values).
#[allow(clippy::too_many_arguments)]
unsafe fn pv_group<E: CacheElem>(
    isa: Isa,
    out: &[*mut f32],
    corr: &[f32],
    p: &[[f32; KEY_BLOCK]],
    a: usize,
    e: usize,
    v: &[E],
    hd: usize,
    ahead: usize,
) {
    debug_assert!(e >= 1 && v.len() >= e * hd);
    #[cfg(target_arch = "x86_64")]
    {
        use crate::arch::x86::attn::{pv_avx2, pv_avx512};
        macro_rules! group {
            ($f:ident, $r:literal) => {{
                let o: [*mut f32; $r] = std::array::from_fn(|k| out[k]);
                let c: [f32; $r] = std::array::from_fn(|k| corr[k]);
                let pp: [&[f32; KEY_BLOCK]; $r] = std::array::from_fn(|k| &p[k]);
                // SAFETY: the instruction set was checked when it was selected; the caller's
                // contract.
                unsafe { $f::<$r, E>(o, c, pp, a, e, v.as_ptr(), hd, ahead) }
            }};
        }
        match (isa, out.len()) {
            (Isa::Avx512Vnni, 4) => return group!(pv_avx512, 4),
            (Isa::Avx512Vnni, 3) => return group!(pv_avx512, 3),
            (Isa::Avx512Vnni, 2) => return group!(pv_avx512, 2),
            (Isa::Avx512Vnni, 1) => return group!(pv_avx512, 1),
            (Isa::Avx512Vnni, _) => {
                for k in 0..out.len() {
                    let o = [out[k]];
                    // SAFETY: as above, one row at a time.
                    unsafe {
                        pv_avx512::<1, E>(o, [corr[k]], [&p[k]], a, e, v.as_ptr(), hd, ahead)
                    };
                }
                return;
            }
            (Isa::Avx2 | Isa::AvxVnni, 4) => return group!(pv_avx2, 4),
            (Isa::Avx2 | Isa::AvxVnni, 3) => return group!(pv_avx2, 3),
            (Isa::Avx2 | Isa::AvxVnni, 2) => return group!(pv_avx2, 2),
            (Isa::Avx2 | Isa::AvxVnni, 1) => return group!(pv_avx2, 1),
            (Isa::Avx2 | Isa::AvxVnni, _) => {
                for k in 0..out.len() {
                    let o = [out[k]];
                    // SAFETY: as above, one row at a time.
                    unsafe { pv_avx2::<1, E>(o, [corr[k]], [&p[k]], a, e, v.as_ptr(), hd, ahead) };
                }
                return;
            }
            _ => {}
        }
    }
    let _ = (isa, ahead);
    for k in 0..out.len() {
        // SAFETY: the caller's contract.
        let o = unsafe { std::slice::from_raw_parts_mut(out[k], hd) };
        pv_portable(o, corr[k], &p[k], a, e, v);
    }
}

/// The definition every version follows per value: one running sum from `o · corr`, one fused
/// multiply-add per visible key in position order.
pub(crate) fn pv_portable<E: CacheElem>(
    o: &mut [f32],
    corr: f32,
    p: &[f32; KEY_BLOCK],
    a: usize,
    e: usize,
    v: &[E],
) {
    let hd = o.len();
    for (d, od) in o.iter_mut().enumerate() {
        let mut acc = *od * corr;
        for (l, &pl) in p.iter().enumerate().take(e).skip(a) {
            acc = pl.mul_add(v[l * hd + d].to_f32(), acc);
        }
        *od = acc;
    }
}

#[cfg(test)]
mod tests;
