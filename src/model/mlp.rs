//! The decoder's feed-forward blocks: the gated MLP `down(act(gate x) * up x)` (separate or
//! fused gate/up) and routed experts (Qwen3-MoE).
//!
//! Experts: the router's softmax over every expert's logit picks each token's top k (weights
//! renormalised to sum 1 when configured, as Qwen3-MoE does). The tokens of a call are then
//! grouped by expert, so each selected expert runs once on all of its tokens (its weights read
//! once per call, several tokens per weight load in the quantized kernels), and experts no
//! token picked are not touched.

use candle_core::{DType, Tensor};

use super::options::Activation;
use super::weights::Linear;

/// The MLP input projections: separate gate and up, or one fused `[gate; up]` matrix.
pub(super) enum GateUpProj {
    /// Separate projections.
    Separate { gate: Linear, up: Linear },
    /// One projection whose rows are the gate, then the up projection.
    Fused(Linear),
}

/// A gated MLP.
pub(super) struct GatedMlp {
    pub gate_up: GateUpProj,
    pub down: Linear,
    /// Intermediate width (rows of the gate).
    pub width: usize,
}

impl GatedMlp {
    /// `down(act(gate h) * up h)` for `h` `[n, hidden]`.
    pub fn forward(&self, h: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        let (g, u) = match &self.gate_up {
            GateUpProj::Separate { gate, up } => (gate.forward(h)?, up.forward(h)?),
            GateUpProj::Fused(gu) => {
                let y = gu.forward(h)?;
                (
                    y.narrow(1, 0, self.width)?,
                    y.narrow(1, self.width, self.width)?,
                )
            }
        };
        let gu = match act {
            // callm's fused kernel on the CPU (one pass, vector `exp`), candle's ops elsewhere.
            Activation::Silu if g.device().is_cpu() && g.dtype() == DType::F32 && g.rank() == 2 => {
                g.apply_op2_no_bwd(&u, &crate::kernels::SiluMul)?
            }
            Activation::Silu => (candle_nn::ops::silu(&g)? * u)?,
            Activation::GeluTanh => (g.gelu()? * u)?,
        };
        self.down.forward(&gu)
    }
}

/// Routed experts.
pub(super) struct Experts {
    pub router: Linear,
    pub experts: Vec<GatedMlp>,
    pub top_k: usize,
    pub norm_topk_prob: bool,
}

impl Experts {
    /// The experts' output for `h` `[n, hidden]`.
    pub fn forward(&self, h: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        let n = h.dim(0)?;
        let logits = self.router.forward(h)?.to_dtype(DType::F32)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
        let routes = route(&probs, self.experts.len(), self.top_k, self.norm_topk_prob);
        let mut out = h.zeros_like()?;
        for (expert, (rows, weights)) in self.experts.iter().zip(routes) {
            if rows.is_empty() {
                continue;
            }
            let m = rows.len();
            let idx = Tensor::new(rows.as_slice(), h.device())?;
            let y = expert.forward(&h.index_select(&idx, 0)?, act)?;
            let w = Tensor::from_vec(weights, (m, 1), h.device())?.to_dtype(h.dtype())?;
            out = out.index_add(&idx, &y.broadcast_mul(&w)?, 0)?;
        }
        debug_assert_eq!(out.dim(0)?, n);
        Ok(out)
    }
}

/// For each expert, the rows (tokens) routed to it and their weights: each row of `probs`
/// (a softmax over `experts`) picks its `top_k` largest (ties: the lower index), renormalised
/// to sum 1 when `normalize`.
pub(super) fn route(
    probs: &[Vec<f32>],
    experts: usize,
    top_k: usize,
    normalize: bool,
) -> Vec<(Vec<u32>, Vec<f32>)> {
    let mut routes = vec![(Vec::new(), Vec::new()); experts];
    let mut order: Vec<usize> = Vec::with_capacity(experts);
    for (row, p) in probs.iter().enumerate() {
        order.clear();
        order.extend(0..p.len().min(experts));
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        let picked = &order[..top_k.min(order.len())];
        let sum: f32 = picked.iter().map(|&e| p[e]).sum();
        for &e in picked {
            let w = if normalize && sum > 0.0 {
                p[e] / sum
            } else {
                p[e]
            };
            routes[e].0.push(row as u32);
            routes[e].1.push(w);
        }
    }
    routes
}

/// A layer's feed-forward block.
pub(super) enum Mlp {
    /// One gated MLP.
    Dense(GatedMlp),
    /// Routed experts.
    Experts(Experts),
}

impl Mlp {
    /// The block's output for `h` `[n, hidden]`.
    pub fn forward(&self, h: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        match self {
            Mlp::Dense(m) => m.forward(h, act),
            Mlp::Experts(e) => e.forward(h, act),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keeps_top_k_and_renormalises() {
        let probs = vec![vec![0.1, 0.5, 0.3, 0.1], vec![0.4, 0.1, 0.1, 0.4]];
        let r = route(&probs, 4, 2, true);
        // Row 0 picks experts 1 and 2 (0.5/0.8, 0.3/0.8); row 1 picks 0 and 3 (tie: both 0.4).
        assert_eq!(r[1], (vec![0], vec![0.625]));
        assert_eq!(r[2], (vec![0], vec![0.375]));
        assert_eq!(r[0], (vec![1], vec![0.5]));
        assert_eq!(r[3], (vec![1], vec![0.5]));
        let raw = route(&probs, 4, 2, false);
        assert_eq!(raw[1], (vec![0], vec![0.5]));
    }
}
