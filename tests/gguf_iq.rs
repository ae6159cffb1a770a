//! GGUF files with IQ4_NL and IQ4_XS tensors (candle 0.11 refuses such a file whole; callm reads
//! the kinds with its own kernels): a tiny Llama model written with its projections, output
//! and token embedding in both kinds (rows of 256 and 512 values, so IQ4_XS's superblocks fit),
//! loaded through the whole GGUF path (also with the embedding tied as the output), against
//! twins of it:
//! - the same file with every IQ4_NL tensor rewritten as Q8_0 blocks holding the same values
//!   (IQ4_NL's `d · table[q]` is Q8_0's `d · q` with `q = table[q]`): the logits must match
//!   bit for bit, since both run the same integer sums on the same activations;
//! - an f32 copy of the values (as `callm_kernels::dequantize` decodes them, which
//!   `quant_reference.rs` checks against ggml's own Python package): the logits must agree
//!   within the 8-bit activations' rounding (measured: 1.7% of the largest logit; the bound is
//!   5%), and bit for bit with the kernels off, where callm dequantizes the IQ tensors at load.
//!
//! Also a MoE layer's experts stacked in one IQ4_XS tensor, with the kernels on and off.
//!
//! One test: it sets `CALLM_KERNELS`, which no other test in this binary may read meanwhile.

use std::path::{Path, PathBuf};

use callm::engine::{CancelToken, SamplingParams};
use callm::model::gguf::GgufFile;
use callm::registry::Registry;
use callm::runtime::{LoadOptions, LoadedModel};
use callm::tokenizer::Tokenizer;
use callm_kernels::BlockKind;
use candle_core::{Device, Tensor};

#[path = "gguf_support/mod.rs"]
mod gguf_support;
use gguf_support::*;

const HIDDEN: usize = 256;
const FFN: usize = 512;
const VOCAB: usize = 512;
const KV: usize = 128;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// `rows` rows of `cols` values of `kind`, random: every nibble and 6-bit scale, and a scale
/// `d` that keeps the weights within about ±0.1.
fn random_blocks(kind: BlockKind, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let n = rows * cols / kind.block_values();
    let mut out = vec![0u8; n * kind.block_bytes()];
    for blk in out.chunks_mut(kind.block_bytes()) {
        for b in blk.iter_mut() {
            *b = rng.next() as u8;
        }
        let top = if kind == BlockKind::IQ4XS {
            2.5e-5
        } else {
            8e-4
        };
        let d = half::f16::from_f32(top * (0.5 + rng.unit()));
        blk[..2].copy_from_slice(&d.to_bits().to_le_bytes());
    }
    out
}

/// A tensor: name, ggml dims, kind (`None`: f32) and bytes.
type Raw = (String, Vec<u64>, Option<BlockKind>, Vec<u8>);

/// The model's tensors.
fn tensors(rng: &mut Rng) -> Vec<Raw> {
    let (nl, xs) = (Some(BlockKind::IQ4NL), Some(BlockKind::IQ4XS));
    let mut t = Vec::new();
    let mut quant = |name: &str, out: usize, inp: usize, kind: Option<BlockKind>| {
        let k = kind.unwrap_or(BlockKind::IQ4NL);
        let data = random_blocks(k, out, inp, rng);
        t.push((name.to_string(), vec![inp as u64, out as u64], kind, data));
    };
    quant("token_embd.weight", VOCAB, HIDDEN, nl);
    quant("output.weight", VOCAB, HIDDEN, xs);
    for l in 0..2 {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        quant(&n("attn_q"), HIDDEN, HIDDEN, xs);
        quant(&n("attn_k"), KV, HIDDEN, nl);
        quant(&n("attn_v"), KV, HIDDEN, xs);
        quant(&n("attn_output"), HIDDEN, HIDDEN, nl);
        quant(&n("ffn_gate"), FFN, HIDDEN, xs);
        quant(&n("ffn_up"), FFN, HIDDEN, nl);
        quant(&n("ffn_down"), HIDDEN, FFN, xs);
    }
    let mut norm = |name: String| {
        let v: Vec<u8> = (0..HIDDEN)
            .flat_map(|_| (0.8 + 0.4 * rng.unit()).to_le_bytes())
            .collect();
        (name, vec![HIDDEN as u64], None, v)
    };
    let mut norms = vec![norm("output_norm.weight".into())];
    for l in 0..2 {
        norms.push(norm(format!("blk.{l}.attn_norm.weight")));
        norms.push(norm(format!("blk.{l}.ffn_norm.weight")));
    }
    t.extend(norms);
    t
}

/// How each twin stores a tensor.
#[derive(Clone, Copy, PartialEq)]
enum Twin {
    /// As generated: IQ4_NL and IQ4_XS.
    Iq,
    /// IQ4_NL rewritten as Q8_0 with the same values.
    Q8,
    /// Every tensor as f32.
    F32,
}

/// IQ4_NL blocks as Q8_0 blocks of the same values: the same `d`, each nibble's integer.
fn iq4nl_as_q8_0(data: &[u8]) -> Vec<u8> {
    const TABLE: [i8; 16] = [
        -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
    ];
    let mut out = Vec::with_capacity(data.len() / 18 * 34);
    for blk in data.chunks(18) {
        out.extend_from_slice(&blk[..2]);
        let qs = &blk[2..];
        out.extend(qs.iter().map(|&b| TABLE[(b & 15) as usize] as u8));
        out.extend(qs.iter().map(|&b| TABLE[(b >> 4) as usize] as u8));
    }
    out
}

/// Writes the model as `twin`; `tied`: without `output.weight` (the embedding is the output).
fn write(twin: Twin, tied: bool, path: &Path) {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut at = 0u64;
    let mut entries = Vec::new();
    for (name, dims, kind, data) in tensors(&mut rng) {
        if tied && name == "output.weight" {
            continue;
        }
        let (dtype, data) = match (twin, kind) {
            (_, None) => (0, data),
            (Twin::F32, Some(k)) => {
                let elems = dims.iter().product::<u64>() as usize;
                let mut v = vec![0f32; elems];
                assert!(callm_kernels::dequantize(k, &data, &mut v));
                (0, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
            (Twin::Q8, Some(BlockKind::IQ4NL)) => (8, iq4nl_as_q8_0(&data)),
            (_, Some(BlockKind::IQ4NL)) => (20, data),
            (_, Some(_)) => (23, data),
        };
        let len = data.len() as u64;
        entries.push(TensorEntry {
            name,
            dims,
            dtype,
            offset: at,
            data,
            data_at: at,
        });
        at = (at + len).next_multiple_of(32);
    }
    let mut meta = vec![
        ("general.architecture".to_string(), strv("llama")),
        ("general.name".into(), strv("iq-test")),
        ("llama.context_length".into(), u32v(256)),
        ("llama.embedding_length".into(), u32v(HIDDEN as u32)),
        ("llama.block_count".into(), u32v(2)),
        ("llama.feed_forward_length".into(), u32v(FFN as u32)),
        ("llama.attention.head_count".into(), u32v(4)),
        ("llama.attention.head_count_kv".into(), u32v(2)),
        ("llama.attention.layer_norm_rms_epsilon".into(), f32v(1e-5)),
        ("llama.rope.freq_base".into(), f32v(1e4)),
        ("llama.rope.dimension_count".into(), u32v(64)),
    ];
    meta.extend(tokenizer_meta());
    Gguf {
        meta,
        tensors: entries,
        truncate: 0,
    }
    .write(path);
}

fn path(twin: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callm-gguf-iq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{twin}.gguf"))
}

/// Every position's logits for a fixed prompt, as one flat vector.
fn logits(path: &Path) -> Vec<f32> {
    let model = GgufFile::open(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .load_decoder(&Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ids: Vec<u32> = b"<|im_start|>user\nhello, IQ4!"
        .iter()
        .map(|&b| b as u32)
        .collect();
    let mut cache = model.new_cache(64).unwrap();
    let out: Tensor = model.forward(&ids, &mut cache, true).unwrap();
    out.flatten_all().unwrap().to_vec1().unwrap()
}

/// Asserts `a` and `b` equal bit for bit, naming the first logit that differs.
fn assert_same_bits(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
        panic!("{what}: logit {i} is {} against {}", a[i], b[i]);
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Experts stacked in one IQ4_XS tensor (`ffn_up_exps`, as llama.cpp stores a MoE layer's),
/// next to each expert's blocks as a tensor alone: each expert's projection from the stack
/// equals the one loaded alone, bit for bit, and the product with its dequantized weights up
/// to the 8-bit activations' rounding.
fn stacked_experts_split_into_their_own_matrices() {
    use callm::model::weights::{GgufSource, WeightSource};
    let (experts, out, inp) = (3, 32, 256);
    let mut rng = Rng(7);
    let kind = BlockKind::IQ4XS;
    let blocks: Vec<Vec<u8>> = (0..experts)
        .map(|_| random_blocks(kind, out, inp, &mut rng))
        .collect();
    let mut tensors = vec![(
        "blk.0.ffn_up_exps.weight".to_string(),
        vec![inp as u64, out as u64, experts as u64],
        blocks.concat(),
    )];
    for (e, b) in blocks.iter().enumerate() {
        tensors.push((
            format!("expert{e}.weight"),
            vec![inp as u64, out as u64],
            b.clone(),
        ));
    }
    let mut at = 0u64;
    let entries = tensors
        .into_iter()
        .map(|(name, dims, data)| {
            let e = TensorEntry {
                name,
                dims,
                dtype: 23,
                offset: at,
                data_at: at,
                data,
            };
            at = (at + e.data.len() as u64).next_multiple_of(32);
            e
        })
        .collect();
    let path = path("experts");
    Gguf {
        meta: vec![("general.architecture".to_string(), strv("qwen3moe"))],
        tensors: entries,
        truncate: 0,
    }
    .write(&path);
    let mut file = std::fs::File::open(&path).unwrap();
    let facts = callm::gguf_header::check(&mut file).unwrap();
    let content = callm::gguf_header::read_content(&mut file, &facts).unwrap();
    let only = facts
        .callm_only
        .into_iter()
        .map(|t| (t.name, t.kind))
        .collect();
    let mut src = GgufSource::new(content, file, &path, &Device::Cpu).with_callm_only(only);
    let stacked = src
        .stacked_linears("blk.0.ffn_up_exps.weight", experts, out, inp)
        .unwrap();
    assert_eq!(stacked.len(), experts);
    let x_vals: Vec<f32> = (0..5 * inp).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let x = Tensor::from_vec(x_vals, (5, inp), &Device::Cpu).unwrap();
    let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (e, lin) in stacked.iter().enumerate() {
        let alone = src
            .linear(&format!("expert{e}.weight"), out, inp, false)
            .unwrap();
        let got = flat(lin.forward(&x).unwrap());
        assert_same_bits(&got, &flat(alone.forward(&x).unwrap()), "stacked vs alone");
        let mut w = vec![0f32; out * inp];
        assert!(callm_kernels::dequantize(kind, &blocks[e], &mut w));
        let w = Tensor::from_vec(w, (out, inp), &Device::Cpu).unwrap();
        let exact = flat(x.matmul(&w.t().unwrap()).unwrap());
        let top = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&got, &exact);
        assert!(
            d <= 0.02 * top,
            "expert {e}: {d} from the f32 product (up to {top})"
        );
    }
    assert!(src
        .stacked_linears("blk.0.ffn_up_exps.weight", experts, out + 1, inp)
        .is_err());
    std::fs::remove_file(&path).ok();
}

#[test]
fn iq4_nl_and_iq4_xs_files_load_and_compute_their_values() {
    let (iq, q8, f32) = (path("iq"), path("q8"), path("f32"));
    write(Twin::Iq, false, &iq);
    write(Twin::Q8, false, &q8);
    write(Twin::F32, false, &f32);

    // The true kinds are known; candle's header lists a stand-in.
    let file = GgufFile::open(&iq, &Device::Cpu).unwrap();
    assert_eq!(
        file.tensor_kind("blk.0.attn_k.weight"),
        Some(BlockKind::IQ4NL)
    );
    assert_eq!(
        file.tensor_kind("blk.1.ffn_down.weight"),
        Some(BlockKind::IQ4XS)
    );
    assert_eq!(file.tensor_kind("output_norm.weight"), None);
    drop(file);

    let got = logits(&iq);
    assert!(got.iter().all(|v| v.is_finite()));
    let spread = got.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        spread > 0.5,
        "logits all near zero ({spread}): a degenerate model"
    );

    // IQ4_NL as Q8_0 of the same values: the same integer sums, bit for bit.
    assert_same_bits(&got, &logits(&q8), "IQ4_NL against its Q8_0 twin");
    // Tied: the IQ4_NL embedding is also the output projection.
    let (iq_tied, q8_tied) = (path("iq-tied"), path("q8-tied"));
    write(Twin::Iq, true, &iq_tied);
    write(Twin::Q8, true, &q8_tied);
    let tied = logits(&iq_tied);
    assert_same_bits(&tied, &logits(&q8_tied), "tied, against Q8_0");
    assert!(
        max_abs_diff(&tied, &got) > 0.1,
        "the tied head is another matrix"
    );

    // The f32 values: the same model up to the 8-bit rounding of activations in the matmuls.
    let want = logits(&f32);
    let d = max_abs_diff(&got, &want);
    assert!(
        d <= 0.05 * spread,
        "against f32: max abs diff {d} (logits up to {spread})"
    );

    stacked_experts_split_into_their_own_matrices();

    // Kernels off: the IQ tensors are dequantized at load into f32 weights, the f32 twin's.
    std::env::set_var("CALLM_KERNELS", "off");
    let (off, off_f32) = (logits(&iq), logits(&f32));
    stacked_experts_split_into_their_own_matrices();
    std::env::remove_var("CALLM_KERNELS");
    assert_same_bits(&off, &off_f32, "kernels off against f32");

    // The tokenizer reads the file, and the whole runtime loads it and generates.
    let tok = Tokenizer::from_gguf_file(&iq).unwrap();
    assert_eq!(tok.encode("hi", false).unwrap(), vec![104, 105]);
    let lm = LoadedModel::load(
        &LoadOptions {
            model: iq.display().to_string(),
            device: Some("cpu".into()),
            ..Default::default()
        },
        &Registry::builtin(),
    )
    .unwrap();
    let mut params = lm.default_params();
    params.sampling = SamplingParams::greedy();
    params.max_tokens = Some(8);
    params.ignore_eos = true;
    let stats = lm
        .generate(&[256, 104, 105], &params, &CancelToken::new(), &mut |_| {
            true
        })
        .unwrap();
    assert_eq!(stats.output_ids.len(), 8);
    for p in [iq, q8, f32, iq_tied, q8_tied] {
        std::fs::remove_file(p).ok();
    }
}
