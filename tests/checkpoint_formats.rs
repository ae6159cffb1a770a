//! The ChatGLM3 and MPT fixtures in the other formats their real checkpoints ship in: PyTorch
//! `pytorch_model*.bin` shards (ChatGLM3-6B, replit-code-v1-3b and Glaive ship those) and
//! GGUF (llama.cpp's `chatglm` and `mpt` layouts). Each copy is written here from the
//! fixture's safetensors and must reproduce the reference logits (transformers / THUDM code).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use callm::model::gguf::GgufFile;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

fn fixture(arch: &str) -> PathBuf {
    callm::paths::fixtures_dir().join("tiny-models").join(arch)
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("callm-ckpt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tensors(arch: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(arch).join("model.safetensors"), &Device::Cpu).unwrap()
}

/// Max abs difference between our logits for case 1 (40 tokens) and the reference.
fn case1_diff(model: &dyn callm::model::LanguageModel, arch: &str) -> f32 {
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(arch).join("golden.json")).unwrap())
            .unwrap();
    let refs =
        candle_core::safetensors::load(fixture(arch).join("logits.safetensors"), &Device::Cpu)
            .unwrap();
    let case = &g["cases"][1];
    let ids: Vec<u32> = case["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let mut cache = model.new_cache(256).unwrap();
    let got = model.forward(&ids, &mut cache, true).unwrap();
    let want = &refs[case["logits_tensor"].as_str().unwrap()];
    (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// A minimal `torch.save` writer: a zip (stored) holding `archive/data.pkl` (pickle protocol 2:
// an OrderedDict of name -> torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False,
// OrderedDict())) and one raw little-endian storage file per tensor under `archive/data/`.

fn pickle_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn pickle_int(out: &mut Vec<u8>, x: usize) {
    out.push(b'J');
    out.extend((x as i32).to_le_bytes());
}

fn pickle_global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(b'c');
    out.extend(format!("{module}\n{name}\n").as_bytes());
}

fn pickle_ordered_dict(out: &mut Vec<u8>) {
    pickle_global(out, "collections", "OrderedDict");
    out.extend(b")R");
}

fn pickle_usize_tuple(out: &mut Vec<u8>, xs: &[usize]) {
    out.push(b'(');
    for &x in xs {
        pickle_int(out, x);
    }
    out.push(b't');
}

/// Writes `tensors` as a torch zip checkpoint; `storage` is "FloatStorage" (f32) or
/// "BFloat16Storage" (bf16).
fn write_torch_bin(path: &Path, tensors: &[(&String, &Tensor)], bf16: bool) {
    let (storage, dtype) = if bf16 {
        ("BFloat16Storage", DType::BF16)
    } else {
        ("FloatStorage", DType::F32)
    };
    let mut pkl = b"\x80\x02".to_vec();
    pickle_ordered_dict(&mut pkl);
    pkl.push(b'(');
    let mut blobs = vec![];
    for (key, (name, t)) in tensors.iter().enumerate() {
        let t = t.to_dtype(dtype).unwrap();
        let dims = t.dims().to_vec();
        let mut strides = vec![1usize; dims.len()];
        for i in (0..dims.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * dims[i + 1];
        }
        pickle_str(&mut pkl, name);
        pickle_global(&mut pkl, "torch._utils", "_rebuild_tensor_v2");
        pkl.push(b'(');
        // The storage, as a persistent id.
        pkl.push(b'(');
        pickle_str(&mut pkl, "storage");
        pickle_global(&mut pkl, "torch", storage);
        pickle_str(&mut pkl, &key.to_string());
        pickle_str(&mut pkl, "cpu");
        pickle_int(&mut pkl, t.elem_count());
        pkl.extend(b"tQ");
        pickle_int(&mut pkl, 0);
        pickle_usize_tuple(&mut pkl, &dims);
        pickle_usize_tuple(&mut pkl, &strides);
        pkl.push(0x89); // False
        pickle_ordered_dict(&mut pkl);
        pkl.extend(b"tR");
        let mut bytes = vec![];
        t.flatten_all().unwrap().write_bytes(&mut bytes).unwrap();
        blobs.push((key, bytes));
    }
    pkl.extend(b"u.");
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(&pkl).unwrap();
    zip.start_file("archive/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    for (key, bytes) in blobs {
        zip.start_file(format!("archive/data/{key}"), opts).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// A checkpoint directory with the fixture's config and its tensors in two `.bin` shards.
fn torch_dir(arch: &str, bf16: bool) -> PathBuf {
    let dir = tmp_dir(&format!("{arch}-bin-{bf16}"));
    std::fs::copy(fixture(arch).join("config.json"), dir.join("config.json")).unwrap();
    let ts = tensors(arch);
    let mut all: Vec<(&String, &Tensor)> = ts.iter().collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    let (a, b) = all.split_at(all.len() / 2);
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("pytorch_model-00001-of-00002.bin", a),
        ("pytorch_model-00002-of-00002.bin", b),
    ] {
        write_torch_bin(&dir.join(file), part, bf16);
        for (name, _) in part {
            map.insert((*name).clone(), file.into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join("pytorch_model.bin.index.json"), index.to_string()).unwrap();
    dir
}

#[test]
fn pytorch_bin_shards_load_and_match_the_reference() {
    for arch in ["chatglm3", "mpt"] {
        let dir = torch_dir(arch, false);
        let model = callm::model::load_safetensors_dir(&dir, DType::F32, &Device::Cpu).unwrap();
        let d = case1_diff(model.as_ref(), arch);
        assert!(d <= 1e-4, "{arch} from .bin: max abs diff {d}");
        // bf16 storages (how ChatGLM3-6B ships) load too, computed in f32.
        let dir16 = torch_dir(arch, true);
        let model = callm::model::load_safetensors_dir(&dir16, DType::F32, &Device::Cpu).unwrap();
        let d = case1_diff(model.as_ref(), arch);
        assert!(d <= 0.15, "{arch} from bf16 .bin: max abs diff {d}");
        std::fs::remove_dir_all(&dir).ok();
        std::fs::remove_dir_all(&dir16).ok();
    }
}

#[test]
fn unreadable_pytorch_bin_names_the_file_and_suggests_converting() {
    let dir = tmp_dir("bad-bin");
    std::fs::copy(fixture("mpt").join("config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"not a zip archive").unwrap();
    let err = callm::model::load_safetensors_dir(&dir, DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("pytorch_model.bin") && err.contains("safetensors"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// GGUF copies in llama.cpp's naming.

fn gguf_name(arch: &str, hf: &str) -> String {
    let table: &[(&str, &str)] = match arch {
        "mpt" => &[
            ("transformer.wte.weight", "token_embd.weight"),
            ("transformer.norm_f.weight", "output_norm.weight"),
            ("attn.Wqkv", "attn_qkv"),
            ("attn.out_proj", "attn_output"),
            ("norm_1", "attn_norm"),
            ("norm_2", "ffn_norm"),
            ("ffn.up_proj", "ffn_up"),
            ("ffn.down_proj", "ffn_down"),
            ("transformer.blocks.", "blk."),
        ],
        _ => &[
            (
                "transformer.embedding.word_embeddings.weight",
                "token_embd.weight",
            ),
            (
                "transformer.encoder.final_layernorm.weight",
                "output_norm.weight",
            ),
            ("transformer.output_layer.weight", "output.weight"),
            ("self_attention.query_key_value", "attn_qkv"),
            ("self_attention.dense", "attn_output"),
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "ffn_norm"),
            ("mlp.dense_h_to_4h", "ffn_up"),
            ("mlp.dense_4h_to_h", "ffn_down"),
            ("transformer.encoder.layers.", "blk."),
        ],
    };
    let mut n = hf.to_string();
    for (from, to) in table {
        n = n.replace(from, to);
    }
    n
}

fn write_gguf(arch: &str, quant: GgmlDType) -> PathBuf {
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(arch).join("config.json")).unwrap())
            .unwrap();
    let u = |k: &str| gguf_file::Value::U32(cfg[k].as_u64().unwrap() as u32);
    let (gguf_arch, meta): (&str, Vec<(&str, gguf_file::Value)>) = match arch {
        "mpt" => (
            "mpt",
            vec![
                ("context_length", u("max_seq_len")),
                ("embedding_length", u("d_model")),
                ("block_count", u("n_layers")),
                ("feed_forward_length", gguf_file::Value::U32(256)),
                ("attention.head_count", u("n_heads")),
                ("attention.layer_norm_epsilon", gguf_file::Value::F32(1e-5)),
                ("attention.max_alibi_bias", gguf_file::Value::F32(8.0)),
            ],
        ),
        _ => (
            "chatglm",
            vec![
                ("context_length", u("seq_length")),
                ("embedding_length", u("hidden_size")),
                ("block_count", u("num_layers")),
                ("feed_forward_length", u("ffn_hidden_size")),
                ("attention.head_count", u("num_attention_heads")),
                ("attention.head_count_kv", u("multi_query_group_num")),
                ("rope.dimension_count", gguf_file::Value::U32(8)),
                (
                    "attention.layer_norm_rms_epsilon",
                    gguf_file::Value::F32(1e-5),
                ),
            ],
        ),
    };
    let mut metadata: Vec<(String, gguf_file::Value)> = vec![(
        "general.architecture".into(),
        gguf_file::Value::String(gguf_arch.into()),
    )];
    metadata.extend(
        meta.into_iter()
            .map(|(k, v)| (format!("{gguf_arch}.{k}"), v)),
    );
    let mut qts: Vec<(String, QTensor)> = vec![];
    for (name, t) in tensors(arch) {
        if name.ends_with("inv_freq") {
            continue;
        }
        // Matrices quantized (as llama.cpp's converters do); norms and biases stay f32.
        let dtype = if t.rank() == 2 { quant } else { GgmlDType::F32 };
        qts.push((
            gguf_name(arch, &name),
            QTensor::quantize(&t, dtype).unwrap(),
        ));
    }
    let path = tmp_dir(&format!("{arch}-gguf")).join(format!("{arch}-{quant:?}.gguf"));
    let mut f = std::fs::File::create(&path).unwrap();
    let md: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = qts.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &md, &ts).unwrap();
    path
}

#[test]
fn gguf_copies_load_and_match_the_reference() {
    for arch in ["chatglm3", "mpt"] {
        // f32 GGUF: the same numbers as the safetensors.
        let path = write_gguf(arch, GgmlDType::F32);
        let model = GgufFile::open(&path, &Device::Cpu)
            .unwrap()
            .load_decoder(&Device::Cpu)
            .unwrap();
        let d = case1_diff(model.as_ref(), arch);
        assert!(d <= 1e-4, "{arch} f32 GGUF: max abs diff {d}");
        // Q8_0 GGUF (weights and, in candle's matmul, activations quantized): quantization
        // error only. Logits span about ±3.6 here; the mistakes the fixture README lists
        // (no ALiBi, wrong rotary layout) move them by 2 or more.
        let path8 = write_gguf(arch, GgmlDType::Q8_0);
        let model = GgufFile::open(&path8, &Device::Cpu)
            .unwrap()
            .load_decoder(&Device::Cpu)
            .unwrap();
        let d = case1_diff(model.as_ref(), arch);
        assert!(d <= 0.3, "{arch} Q8_0 GGUF: max abs diff {d}");
        for p in [path, path8] {
            std::fs::remove_dir_all(p.parent().unwrap()).ok();
        }
    }
}
