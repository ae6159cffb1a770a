//! Times the packed matmul on SmolLM2's and a K-quant's shapes for 1, 4 and 8 activation rows:
//! microseconds per call and per row, the best of 5 runs. An A/B tool for kernel changes (build
//! it at both commits and run the two binaries alternately); speed is never asserted.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p callm-kernels --example matmul_speed
//! [avx2|avxvnni]` times one core's kernel (`avx2`, `avxvnni`: those kernels on a machine with
//! better ones); with more threads each call also pays the pool's wake-up.

use std::time::Instant;

use callm_kernels::{select_isa, Isa, PackedLinear};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

fn main() -> candle_core::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("avx2") => select_isa(Some(Isa::Avx2)),
        Some("avxvnni") => select_isa(Some(Isa::AvxVnni)),
        _ => select_isa(None),
    };
    let dev = Device::Cpu;
    // (output rows, inputs, kind, calls per timing run)
    let shapes = [
        (1536, 576, GgmlDType::Q4_1, 400),
        (576, 1536, GgmlDType::Q4_1, 400),
        (49152, 576, GgmlDType::Q8_0, 20),
        (1024, 1024, GgmlDType::Q4K, 400),
    ];
    for (n, k, kind, calls) in shapes {
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let Some(lin) = PackedLinear::from_qtensor(&QTensor::quantize(&w, kind)?) else {
            candle_core::bail!("{kind:?} is not a packed kind");
        };
        for m in [1usize, 4, 8] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            for _ in 0..calls / 10 {
                lin.forward(&x)?;
            }
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                for _ in 0..calls {
                    lin.forward(&x)?;
                }
                best = best.min(t.elapsed().as_secs_f64() / calls as f64);
            }
            let us = best * 1e6;
            println!(
                "{kind:?} {n}x{k} rows={m}: {us:.1} us ({:.1} us a row)",
                us / m as f64
            );
        }
    }
    Ok(())
}
