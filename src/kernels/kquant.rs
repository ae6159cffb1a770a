//! K-quants brought to the packed kernels' formats at load, so every matmul of the real GGUFs
//! runs on callm's kernels and rayon's pool (none on candle's busy-waiting one).
//!
//! - Q4_K: each 32-value sub-block is `d·sc·q − dmin·m` with `q` a nibble — exactly Q4_1 with
//!   scale `d·sc` and minimum `−dmin·m`, stored as f16 (a relative rounding of at most 2⁻¹¹ on
//!   the scales, far below the 4-bit error). 5 bits per weight instead of 4.5.
//! - Q6_K (16-value sub-blocks): requantized to Q8_0 (8.5 bits per weight instead of 6.56; a
//!   rounding error of a quarter of the 6-bit step at most).

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

/// Bytes of a Q4_K superblock (256 values).
const Q4K_BYTES: usize = 144;
const QK_K: usize = 256;

/// ggml's `get_scale_min_k4`: the 6-bit scale and minimum of sub-block `j` (0..8).
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

/// Rewrites Q4_K data (`n` rows of `k` values) as Q4_1 blocks; `None` when a derived scale does
/// not fit an f16 or the sizes do not match.
pub fn q4k_to_q4_1(data: &[u8], n: usize, k: usize) -> Option<Vec<u8>> {
    if !k.is_multiple_of(QK_K) || data.len() < n.checked_mul(k / QK_K * Q4K_BYTES)? {
        return None;
    }
    let supers = n * k / QK_K;
    let mut out = Vec::with_capacity(supers * 8 * 20);
    for sb in data[..supers * Q4K_BYTES].chunks_exact(Q4K_BYTES) {
        let d = f16::from_bits(u16::from_le_bytes([sb[0], sb[1]])).to_f32();
        let dmin = f16::from_bits(u16::from_le_bytes([sb[2], sb[3]])).to_f32();
        let scales = &sb[4..16];
        let qs = &sb[16..144];
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, scales);
            let d1 = f16::from_f32(d * sc as f32);
            let m1 = f16::from_f32(-(dmin * m as f32));
            if !d1.is_finite() || !m1.is_finite() {
                return None;
            }
            out.extend_from_slice(&d1.to_bits().to_le_bytes());
            out.extend_from_slice(&m1.to_bits().to_le_bytes());
            // Sub-block j holds the low (even j) or high (odd j) nibbles of qs[32*(j/2)..][..32].
            let src = &qs[32 * (j / 2)..32 * (j / 2) + 32];
            let nib = |i: usize| if j % 2 == 0 { src[i] & 15 } else { src[i] >> 4 };
            for i in 0..16 {
                out.push(nib(i) | (nib(i + 16) << 4));
            }
        }
    }
    Some(out)
}

/// Q6_K (or any other block type candle can dequantize) requantized to Q8_0 bytes.
pub fn to_q8_0(q: &QTensor) -> Option<Vec<u8>> {
    let dense = q.dequantize(&q.device()).ok()?;
    let q8 = QTensor::quantize(&dense, GgmlDType::Q8_0).ok()?;
    Some(q8.data().ok()?.into_owned())
}
