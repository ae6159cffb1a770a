//! The cache layouts of [`super::attend`], both in blocks of [`KEY_BLOCK`] positions and, within
//! a block, by kv head: keys transposed (`[block][kv_head][head_dim][32]`), values by position
//! (`[block][kv_head][32][head_dim]`), each value an f32 or an f16 ([`CacheElem`]). A work item
//! of the kernel (one kv head of one sequence) so reads whole contiguous 4 KiB runs (f16, 64
//! values per head) of keys and of values per block, never a head's slice out of every row.

use half::f16;

use super::KEY_BLOCK;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// The type of a cached key or value: `f32` (exact), or `f16` (half the memory and half the
/// bytes each decode step reads; values are rounded to nearest when stored and converted back
/// exactly when read, so a row's numbers still depend on nothing but its own cache).
pub trait CacheElem:
    sealed::Sealed + Copy + Default + Send + Sync + std::fmt::Debug + 'static
{
    /// Whether this is `f16` (the kernels convert on load).
    const HALF: bool;
    /// `x` rounded to this type.
    fn from_f32(x: f32) -> Self;
    /// The value as an f32 (exact).
    fn to_f32(self) -> f32;
    /// `dst[i] = from_f32(src[i])` (the slices are equally long).
    fn from_f32_slice(src: &[f32], dst: &mut [Self]);
}

impl CacheElem for f32 {
    const HALF: bool = false;
    #[inline]
    fn from_f32(x: f32) -> Self {
        x
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32_slice(src: &[f32], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }
}

impl CacheElem for f16 {
    const HALF: bool = true;
    #[inline]
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32_slice(src: &[f32], dst: &mut [Self]) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::isa().has_avx2() {
                // SAFETY: the selected instruction set includes F16C (detected at run time).
                unsafe { crate::arch::x86::attn::to_f16_slice(src, dst) };
                return;
            }
        }
        use half::slice::HalfFloatSliceExt;
        dst.convert_from_f32_slice(src);
    }
}

/// Values one key block holds for all kv heads (the unit the key storage grows by).
pub fn key_block_floats(kv_heads: usize, head_dim: usize) -> usize {
    kv_heads * head_dim * KEY_BLOCK
}

/// Writes the keys of positions `pos0..pos0 + rows` into blocked storage `dst`; `src` holds
/// `rows` rows of `kv_heads * head_dim` values, one every `stride` values. `false` (nothing
/// written) when `dst` or `src` is too short.
pub fn store_keys<E: CacheElem>(
    dst: &mut [E],
    kv_heads: usize,
    head_dim: usize,
    pos0: usize,
    src: &[f32],
    rows: usize,
    stride: usize,
) -> bool {
    let width = kv_heads * head_dim;
    let end_block = (pos0 + rows).div_ceil(KEY_BLOCK);
    if rows == 0 {
        return true;
    }
    if stride < width
        || src.len() < (rows - 1) * stride + width
        || dst.len() < end_block * key_block_floats(kv_heads, head_dim)
    {
        return false;
    }
    // One head's keys converted at a time (vector conversion), then spread over the block.
    let mut buf = [E::default(); 256];
    for t in 0..rows {
        let p = pos0 + t;
        let (b, lane) = (p / KEY_BLOCK, p % KEY_BLOCK);
        let row = &src[t * stride..t * stride + width];
        for g in 0..kv_heads {
            let base = (b * kv_heads + g) * head_dim * KEY_BLOCK + lane;
            let head = &row[g * head_dim..(g + 1) * head_dim];
            const CHUNK: usize = 256;
            for (c, chunk) in head.chunks(CHUNK).enumerate() {
                let conv = &mut buf[..chunk.len()];
                E::from_f32_slice(chunk, conv);
                let at = base + c * CHUNK * KEY_BLOCK;
                for (d, &x) in conv.iter().enumerate() {
                    dst[at + d * KEY_BLOCK] = x;
                }
            }
        }
    }
    true
}

/// Writes the values of positions `pos0..pos0 + rows` into blocked storage `dst`
/// (`[block][kv_head][32][head_dim]`); `src` as for [`store_keys`]. `false` (nothing written)
/// when a slice is too short.
pub fn store_values<E: CacheElem>(
    dst: &mut [E],
    kv_heads: usize,
    head_dim: usize,
    pos0: usize,
    src: &[f32],
    rows: usize,
    stride: usize,
) -> bool {
    let width = kv_heads * head_dim;
    if rows == 0 {
        return true;
    }
    let end_block = (pos0 + rows).div_ceil(KEY_BLOCK);
    if stride < width
        || src.len() < (rows - 1) * stride + width
        || dst.len() < end_block * key_block_floats(kv_heads, head_dim)
    {
        return false;
    }
    for t in 0..rows {
        let p = pos0 + t;
        let (b, lane) = (p / KEY_BLOCK, p % KEY_BLOCK);
        let row = &src[t * stride..t * stride + width];
        for g in 0..kv_heads {
            let at = value_row(b, g, lane, kv_heads, head_dim);
            E::from_f32_slice(
                &row[g * head_dim..(g + 1) * head_dim],
                &mut dst[at..at + head_dim],
            );
        }
    }
    true
}

/// Where the values of position `32 * block + lane` of kv head `g` start in blocked storage.
pub(crate) fn value_row(
    block: usize,
    g: usize,
    lane: usize,
    kv_heads: usize,
    head_dim: usize,
) -> usize {
    ((block * kv_heads + g) * KEY_BLOCK + lane) * head_dim
}
