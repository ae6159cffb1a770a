//! Tensor names: the logical weights of the Llama-style decoder and what each architecture
//! calls them in a Hugging Face checkpoint and in a GGUF file (llama.cpp naming).

use super::config::Arch;

/// Logical names of the tensors a Llama-style decoder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Token embedding.
    Embed,
    /// Final norm.
    FinalNorm,
    /// Output projection.
    LmHead,
    /// Per-layer tensors.
    Layer(usize, LayerWeight),
}

/// Per-layer tensors of a Llama-style decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerWeight {
    /// Pre-attention RMSNorm.
    AttnNorm,
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Query, key and value in one projection (ChatGLM), rows q then k then v.
    Qkv,
    /// Attention output projection.
    O,
    /// Pre-MLP RMSNorm.
    MlpNorm,
    /// MLP gate.
    Gate,
    /// MLP up.
    Up,
    /// MLP gate and up in one projection (ChatGLM), rows gate then up.
    GateUp,
    /// MLP down.
    Down,
}

/// Which naming convention a weight source uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Hugging Face checkpoint names (`model.layers.0.self_attn.q_proj.weight`).
    HuggingFace,
    /// llama.cpp GGUF names (`blk.0.attn_q.weight`).
    Gguf,
}

impl Weight {
    /// The tensor's name for `arch` under `naming`.
    pub fn name(&self, arch: Arch, naming: Naming) -> String {
        match naming {
            Naming::HuggingFace if arch == Arch::ChatGlm => self.chatglm_hf_name(),
            Naming::HuggingFace => self.hf_name(),
            Naming::Gguf => self.gguf_name(),
        }
    }

    /// The tensor's name in a Llama-layout Hugging Face checkpoint.
    pub fn hf_name(&self) -> String {
        use LayerWeight::*;
        match self {
            Weight::Embed => "model.embed_tokens.weight".into(),
            Weight::FinalNorm => "model.norm.weight".into(),
            Weight::LmHead => "lm_head.weight".into(),
            Weight::Layer(i, w) => {
                let s = match w {
                    AttnNorm => "input_layernorm",
                    Q => "self_attn.q_proj",
                    K => "self_attn.k_proj",
                    V => "self_attn.v_proj",
                    Qkv => "self_attn.qkv_proj",
                    O => "self_attn.o_proj",
                    MlpNorm => "post_attention_layernorm",
                    Gate => "mlp.gate_proj",
                    Up => "mlp.up_proj",
                    GateUp => "mlp.gate_up_proj",
                    Down => "mlp.down_proj",
                };
                format!("model.layers.{i}.{s}.weight")
            }
        }
    }

    /// The tensor's name in a ChatGLM2/3 Hugging Face checkpoint.
    fn chatglm_hf_name(&self) -> String {
        use LayerWeight::*;
        match self {
            Weight::Embed => "transformer.embedding.word_embeddings.weight".into(),
            Weight::FinalNorm => "transformer.encoder.final_layernorm.weight".into(),
            Weight::LmHead => "transformer.output_layer.weight".into(),
            Weight::Layer(i, w) => {
                let s = match w {
                    AttnNorm => "input_layernorm",
                    Q | K | V | Qkv => "self_attention.query_key_value",
                    O => "self_attention.dense",
                    MlpNorm => "post_attention_layernorm",
                    Gate | Up | GateUp => "mlp.dense_h_to_4h",
                    Down => "mlp.dense_4h_to_h",
                };
                format!("transformer.encoder.layers.{i}.{s}.weight")
            }
        }
    }

    /// The tensor's name in a GGUF file (llama.cpp naming; ChatGLM's fused gate/up is `ffn_up`).
    pub fn gguf_name(&self) -> String {
        use LayerWeight::*;
        match self {
            Weight::Embed => "token_embd.weight".into(),
            Weight::FinalNorm => "output_norm.weight".into(),
            Weight::LmHead => "output.weight".into(),
            Weight::Layer(i, w) => {
                let s = match w {
                    AttnNorm => "attn_norm",
                    Q => "attn_q",
                    K => "attn_k",
                    V => "attn_v",
                    Qkv => "attn_qkv",
                    O => "attn_output",
                    MlpNorm => "ffn_norm",
                    Gate => "ffn_gate",
                    Up | GateUp => "ffn_up",
                    Down => "ffn_down",
                };
                format!("blk.{i}.{s}.weight")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatglm_names_follow_its_checkpoint_layout() {
        let n = Weight::Layer(3, LayerWeight::Qkv).name(Arch::ChatGlm, Naming::HuggingFace);
        assert_eq!(
            n,
            "transformer.encoder.layers.3.self_attention.query_key_value.weight"
        );
        let n = Weight::Layer(0, LayerWeight::GateUp).name(Arch::ChatGlm, Naming::Gguf);
        assert_eq!(n, "blk.0.ffn_up.weight");
        let n = Weight::Layer(1, LayerWeight::Q).name(Arch::Llama, Naming::HuggingFace);
        assert_eq!(n, "model.layers.1.self_attn.q_proj.weight");
    }
}
