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
    /// Per-head query RMSNorm (Qwen3, Gemma 3).
    QNorm,
    /// Per-head key RMSNorm (Qwen3, Gemma 3).
    KNorm,
    /// Norm of the attention output before the residual add (Gemma 3).
    PostAttnNorm,
    /// Norm of the MLP output before the residual add (Gemma 3).
    PostMlpNorm,
    /// Router of a mixture-of-experts layer, `[experts, hidden]`.
    Router,
    /// Gate projection of one expert.
    ExpertGate(usize),
    /// Up projection of one expert.
    ExpertUp(usize),
    /// Down projection of one expert.
    ExpertDown(usize),
    /// Gate projections of all experts, stacked `[experts, ff, hidden]` (GGUF).
    ExpertsGate,
    /// Up projections of all experts, stacked `[experts, ff, hidden]` (GGUF).
    ExpertsUp,
    /// Down projections of all experts, stacked `[experts, hidden, ff]` (GGUF).
    ExpertsDown,
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
            Naming::HuggingFace if arch == Arch::Gemma3 => self.gemma_hf_name(),
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
                    AttnNorm => "input_layernorm".to_string(),
                    Q => "self_attn.q_proj".into(),
                    K => "self_attn.k_proj".into(),
                    V => "self_attn.v_proj".into(),
                    Qkv => "self_attn.qkv_proj".into(),
                    O => "self_attn.o_proj".into(),
                    QNorm => "self_attn.q_norm".into(),
                    KNorm => "self_attn.k_norm".into(),
                    MlpNorm | PostAttnNorm => "post_attention_layernorm".into(),
                    PostMlpNorm => "post_feedforward_layernorm".into(),
                    Gate => "mlp.gate_proj".into(),
                    Up => "mlp.up_proj".into(),
                    GateUp => "mlp.gate_up_proj".into(),
                    Down => "mlp.down_proj".into(),
                    Router => "mlp.gate".into(),
                    ExpertGate(e) => format!("mlp.experts.{e}.gate_proj"),
                    ExpertUp(e) => format!("mlp.experts.{e}.up_proj"),
                    ExpertDown(e) => format!("mlp.experts.{e}.down_proj"),
                    ExpertsGate => "mlp.experts.gate_proj".into(),
                    ExpertsUp => "mlp.experts.up_proj".into(),
                    ExpertsDown => "mlp.experts.down_proj".into(),
                };
                format!("model.layers.{i}.{s}.weight")
            }
        }
    }

    /// The tensor's name in a Gemma 3 Hugging Face checkpoint: four norms per layer, where
    /// `post_attention_layernorm` follows the attention and `pre_feedforward_layernorm`
    /// precedes the MLP.
    fn gemma_hf_name(&self) -> String {
        match self {
            Weight::Layer(i, LayerWeight::MlpNorm) => {
                format!("model.layers.{i}.pre_feedforward_layernorm.weight")
            }
            other => other.hf_name(),
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
                    // ChatGLM has none of these; names that no checkpoint holds.
                    QNorm | KNorm | PostAttnNorm | PostMlpNorm | Router | ExpertGate(_)
                    | ExpertUp(_) | ExpertDown(_) | ExpertsGate | ExpertsUp | ExpertsDown => {
                        return self.hf_name()
                    }
                };
                format!("transformer.encoder.layers.{i}.{s}.weight")
            }
        }
    }

    /// The tensor's name in a GGUF file (llama.cpp naming; ChatGLM's and Phi-3's fused
    /// gate/up is `ffn_up`, Gemma 3's pre-MLP norm `ffn_norm`).
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
                    QNorm => "attn_q_norm",
                    KNorm => "attn_k_norm",
                    PostAttnNorm => "post_attention_norm",
                    MlpNorm => "ffn_norm",
                    PostMlpNorm => "post_ffw_norm",
                    Gate => "ffn_gate",
                    Up | GateUp => "ffn_up",
                    Down => "ffn_down",
                    Router => "ffn_gate_inp",
                    // llama.cpp stores experts stacked; these per-expert names are its older
                    // split layout (`blk.N.ffn_gate.E`).
                    ExpertGate(e) => return format!("blk.{i}.ffn_gate.{e}.weight"),
                    ExpertUp(e) => return format!("blk.{i}.ffn_up.{e}.weight"),
                    ExpertDown(e) => return format!("blk.{i}.ffn_down.{e}.weight"),
                    ExpertsGate => "ffn_gate_exps",
                    ExpertsUp => "ffn_up_exps",
                    ExpertsDown => "ffn_down_exps",
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

    #[test]
    fn gemma_norm_names_follow_its_checkpoint_layout() {
        let hf = |w| Weight::Layer(2, w).name(Arch::Gemma3, Naming::HuggingFace);
        assert_eq!(
            hf(LayerWeight::MlpNorm),
            "model.layers.2.pre_feedforward_layernorm.weight"
        );
        assert_eq!(
            hf(LayerWeight::PostAttnNorm),
            "model.layers.2.post_attention_layernorm.weight"
        );
        let gguf = |w| Weight::Layer(2, w).name(Arch::Gemma3, Naming::Gguf);
        assert_eq!(gguf(LayerWeight::PostMlpNorm), "blk.2.post_ffw_norm.weight");
        assert_eq!(gguf(LayerWeight::ExpertsDown), "blk.2.ffn_down_exps.weight");
    }
}
