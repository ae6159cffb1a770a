//! callm's decoding of the IQ4_NL and IQ4_XS block formats against ggml's own Python package
//! (`gguf`, from llama.cpp's repository): random blocks and the extremes, dequantized by both,
//! value for value. The packed kernels are checked against this decoding in
//! `crates/callm-kernels` (every instruction set), so this ties them to ggml's definition.
//!
//! The reference comes from `scripts/gen-quant-reference.sh` (run by the test command).

use std::path::PathBuf;

use callm_kernels::BlockKind;

const SCRIPT: &str = "scripts/gen-quant-reference.sh";

/// `$CALLM_QUANT_REFERENCE`, else `~/.cache/callm/quant-reference`; panics naming the script if
/// absent.
fn reference_dir() -> PathBuf {
    let dir = match std::env::var_os("CALLM_QUANT_REFERENCE") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".cache/callm/quant-reference")
        }
    };
    assert!(
        dir.join("STAMP").is_file(),
        "quantization reference missing in {}: run {SCRIPT} (or set CALLM_QUANT_REFERENCE)",
        dir.display()
    );
    dir
}

fn check(name: &str, kind: BlockKind) {
    let dir = reference_dir();
    let read = |ext: &str| {
        let path = dir.join(format!("{name}.{ext}"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{} ({e}): run {SCRIPT}", path.display()))
    };
    let (blocks, values) = (read("blocks"), read("f32"));
    let want: Vec<f32> = values
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let per = match kind {
        BlockKind::IQ4XS => 256,
        _ => 32,
    };
    assert_eq!(blocks.len() / (want.len() / per), kind_bytes(kind));
    let mut got = vec![f32::NAN; want.len()];
    assert!(callm_kernels::dequantize(kind, &blocks, &mut got));
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g == w,
            "{name}: value {i} (block {}): {g} vs gguf's {w}",
            i / per
        );
    }
    // A length that is not whole blocks, or bytes for another count, is refused.
    assert!(!callm_kernels::dequantize(kind, &blocks, &mut got[1..]));
    assert!(!callm_kernels::dequantize(kind, &blocks[1..], &mut got));
}

fn kind_bytes(kind: BlockKind) -> usize {
    match kind {
        BlockKind::IQ4XS => 136,
        _ => 18,
    }
}

#[test]
fn iq4_nl_decodes_as_ggml() {
    check("iq4_nl", BlockKind::IQ4NL);
}

#[test]
fn iq4_xs_decodes_as_ggml() {
    check("iq4_xs", BlockKind::IQ4XS);
}

#[test]
fn gguf_type_ids_name_the_kinds() {
    // ggml's `ggml_type` numbering, as in the GGUF specification.
    for (id, name) in [
        (2, "Q4_0"),
        (12, "Q4_K"),
        (14, "Q6_K"),
        (20, "IQ4_NL"),
        (23, "IQ4_XS"),
    ] {
        assert_eq!(BlockKind::from_gguf_type(id).map(|k| k.name()), Some(name));
    }
    for id in [0, 1, 16, 21, 22, 30, 39, 1000] {
        assert!(BlockKind::from_gguf_type(id).is_none(), "{id}");
    }
}
