//! Token sampling: temperature, top-k, top-p, min-p, repetition / presence / frequency
//! penalties, logit bias, seeded RNG. Works on the raw logits of one position.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How to pick the next token.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability sums to `top_p` (1 = off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0 = off).
    pub min_p: f32,
    /// HF-style repetition penalty over prompt and output tokens (1 = off).
    pub repetition_penalty: f32,
    /// OpenAI presence penalty over output tokens (0 = off).
    pub presence_penalty: f32,
    /// OpenAI frequency penalty over output tokens (0 = off).
    pub frequency_penalty: f32,
    /// Added to the logits of the given token ids (checked at the edge: the API's
    /// [-100, 100] in requests, the same range for `--logit-bias`).
    pub logit_bias: Vec<(u32, f32)>,
    /// RNG seed; `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.7,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: vec![],
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with no penalties.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Checks the ranges the sampler needs; the message names the offending parameter.
    /// (Logit biases are added as given: their API range is the front ends' to check.)
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=2.0).contains(&self.temperature) || self.temperature.is_nan() {
            return Err(format!(
                "temperature must be in [0, 2], got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(format!("{name} must be in [-2, 2], got {v}"));
            }
        }
        Ok(())
    }
}

/// The log-probability of a token and of the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The chosen token.
    pub token: u32,
    /// Its log-probability.
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

/// A stateful sampler for one sequence.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Output-token counts, for presence and frequency penalties.
    counts: HashMap<u32, u32>,
    /// Tokens seen in prompt or output, for the repetition penalty.
    seen: std::collections::HashSet<u32>,
    probs: Vec<f32>,
    idx: Vec<u32>,
}

impl Sampler {
    /// A sampler for `params`; `prompt` feeds the repetition penalty.
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Self {
        let rng = match params.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let seen = if params.repetition_penalty != 1.0 {
            prompt.iter().copied().collect()
        } else {
            Default::default()
        };
        Sampler {
            params,
            rng,
            counts: HashMap::new(),
            seen,
            probs: vec![],
            idx: vec![],
        }
    }

    /// Applies penalties and bias to `logits` in place.
    fn process(&self, logits: &mut [f32]) {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            for &t in &self.seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&t, &c) in &self.counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.frequency_penalty * c as f32 + p.presence_penalty;
                }
            }
        }
        for &(t, b) in &p.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
    }

    /// Picks the next token from `logits` (consumed as scratch space) and records it.
    /// With `top_logprobs = Some(k)`, also returns log-probabilities.
    pub fn sample(
        &mut self,
        logits: &mut [f32],
        top_logprobs: Option<usize>,
    ) -> (u32, Option<TokenLogprob>) {
        self.process(logits);
        let token = if self.params.temperature <= 0.0 {
            argmax(logits)
        } else {
            self.sample_random(logits)
        };
        let lp = top_logprobs.map(|k| logprobs_of(logits, token, k));
        self.record(token);
        (token, lp)
    }

    /// Takes `token` as the next one without sampling (a forced token): records it, and with
    /// `top_logprobs = Some(k)` returns its log-probabilities under the same penalties and bias
    /// a sampled token's would have.
    pub fn force(
        &mut self,
        logits: &mut [f32],
        token: u32,
        top_logprobs: Option<usize>,
    ) -> Option<TokenLogprob> {
        self.process(logits);
        let lp = top_logprobs.map(|k| logprobs_of(logits, token, k));
        self.record(token);
        lp
    }

    /// Records a token that was forced rather than sampled.
    pub fn record(&mut self, token: u32) {
        *self.counts.entry(token).or_insert(0) += 1;
        if self.params.repetition_penalty != 1.0 {
            self.seen.insert(token);
        }
    }

    fn sample_random(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let inv_t = 1.0 / p.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return argmax(logits);
        }
        // Candidate set: start with all tokens; shrink with top-k, min-p, top-p.
        self.idx.clear();
        self.probs.clear();
        let min_logit = if p.min_p > 0.0 {
            max + p.min_p.ln() * p.temperature
        } else {
            f32::NEG_INFINITY
        };
        for (i, &l) in logits.iter().enumerate() {
            if l >= min_logit && l.is_finite() {
                self.idx.push(i as u32);
            }
        }
        if p.top_k > 0 && self.idx.len() > p.top_k {
            self.idx.select_nth_unstable_by(p.top_k - 1, |a, b| {
                logits[*b as usize].total_cmp(&logits[*a as usize])
            });
            self.idx.truncate(p.top_k);
        }
        let mut sum = 0.0f32;
        for &i in &self.idx {
            let e = ((logits[i as usize] - max) * inv_t).exp();
            self.probs.push(e);
            sum += e;
        }
        if p.top_p < 1.0 {
            self.apply_top_p(logits, sum);
            sum = self.probs.iter().sum();
        }
        let mut r = self.rng.random::<f32>() * sum;
        for (k, &pr) in self.probs.iter().enumerate() {
            r -= pr;
            if r <= 0.0 {
                return self.idx[k];
            }
        }
        self.idx.last().copied().unwrap_or_else(|| argmax(logits))
    }

    /// Keeps the most likely candidates whose mass reaches `top_p`, without sorting the
    /// whole vocabulary: partial selection of growing prefixes.
    fn apply_top_p(&mut self, logits: &[f32], sum: f32) {
        let target = self.params.top_p * sum;
        let mut order: Vec<usize> = (0..self.idx.len()).collect();
        let mut k = 64.min(order.len());
        loop {
            if k < order.len() {
                order.select_nth_unstable_by(k - 1, |a, b| {
                    self.probs[*b].total_cmp(&self.probs[*a])
                });
            }
            order[..k].sort_unstable_by(|a, b| self.probs[*b].total_cmp(&self.probs[*a]));
            let mut acc = 0.0;
            let mut cut = None;
            for (j, &o) in order[..k].iter().enumerate() {
                acc += self.probs[o];
                if acc >= target {
                    cut = Some(j + 1);
                    break;
                }
            }
            if let Some(c) = cut.or(if k == order.len() { Some(k) } else { None }) {
                let keep: Vec<usize> = order[..c].to_vec();
                self.idx = keep.iter().map(|&o| self.idx[o]).collect();
                self.probs = keep.iter().map(|&o| self.probs[o]).collect();
                let _ = logits;
                return;
            }
            k = (k * 4).min(order.len());
        }
    }
}

/// Index of the largest logit (first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    // Two passes the compiler vectorizes: the largest value (16 lanes, `>` so NaN never wins),
    // then its first index. The same answer as one pass keeping the first strictly larger
    // value, about ten times faster over a vocabulary.
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    let mut best = f32::NEG_INFINITY;
    for &x in lanes.iter().chain(tail) {
        if x > best {
            best = x;
        }
    }
    if best == f32::NEG_INFINITY {
        // Nothing beats -inf (all -inf or NaN): the first token, as the one-pass loop gives.
        return 0;
    }
    logits.iter().position(|&x| x == best).unwrap_or(0) as u32
}

/// Log-softmax value of `token` and the `k` best tokens.
fn logprobs_of(logits: &[f32], token: u32, k: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    if k > 0 && k < idx.len() {
        idx.select_nth_unstable_by(k - 1, |a, b| {
            logits[*b as usize].total_cmp(&logits[*a as usize])
        });
    }
    idx.truncate(k);
    idx.sort_unstable_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
    TokenLogprob {
        token,
        logprob: logits
            .get(token as usize)
            .map(|l| l - lse)
            .unwrap_or(f32::NEG_INFINITY),
        top: idx
            .into_iter()
            .map(|i| (i, logits[i as usize] - lse))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, -1.0, 2.9]
    }

    #[test]
    fn greedy_picks_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy(), &[]);
        assert_eq!(s.sample(&mut logits(), None).0, 1);
    }

    /// The definition: the first index whose value is strictly larger than all before it.
    fn argmax_one_pass(v: &[f32]) -> u32 {
        let (mut best, mut bv) = (0, f32::NEG_INFINITY);
        for (i, &x) in v.iter().enumerate() {
            if x > bv {
                (best, bv) = (i, x);
            }
        }
        best as u32
    }

    #[test]
    fn vectorized_argmax_matches_the_definition() {
        let mut rng = StdRng::seed_from_u64(3);
        for len in [0, 1, 5, 15, 16, 17, 33, 100, 49_152] {
            for case in 0..6 {
                let mut v: Vec<f32> = (0..len).map(|_| rng.random_range(-4.0..4.0)).collect();
                if len > 0 {
                    let at = |r: &mut StdRng| r.random_range(0..len);
                    match case {
                        // Ties of the maximum: the first one wins.
                        1 => (v[at(&mut rng)], v[at(&mut rng)]) = (9.0, 9.0),
                        2 => v.iter_mut().for_each(|x| *x = x.round()),
                        3 => v[at(&mut rng)] = f32::NAN,
                        4 => v.iter_mut().for_each(|x| *x = f32::NEG_INFINITY),
                        5 => v.iter_mut().for_each(|x| *x = f32::NAN),
                        _ => {}
                    }
                }
                assert_eq!(argmax(&v), argmax_one_pass(&v), "len {len}, case {case}");
            }
        }
    }

    #[test]
    fn same_seed_same_tokens() {
        let p = SamplingParams {
            temperature: 1.0,
            seed: Some(7),
            ..Default::default()
        };
        let run = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone(), &[]);
            (0..50)
                .map(|_| s.sample(&mut logits(), None).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&p), run(&p));
        let other = run(&SamplingParams {
            seed: Some(8),
            ..p.clone()
        });
        assert_ne!(run(&p), other);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let p = SamplingParams {
            temperature: 1.5,
            top_k: 1,
            seed: Some(1),
            ..Default::default()
        };
        let mut s = Sampler::new(p, &[]);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits(), None).0, 1);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // probs at T=1: token1 and token5 carry most mass; top_p 0.5 keeps token 1 only.
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.3,
            seed: Some(3),
            ..Default::default()
        };
        let mut s = Sampler::new(p, &[]);
        for _ in 0..50 {
            assert_eq!(s.sample(&mut logits(), None).0, 1);
        }
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.6,
            seed: Some(3),
            ..Default::default()
        };
        let mut s = Sampler::new(p, &[]);
        for _ in 0..100 {
            let t = s.sample(&mut logits(), None).0;
            assert!(t == 1 || t == 5, "{t}");
        }
    }

    #[test]
    fn min_p_filters_unlikely_tokens() {
        let p = SamplingParams {
            temperature: 1.0,
            min_p: 0.5,
            seed: Some(9),
            ..Default::default()
        };
        let mut s = Sampler::new(p, &[]);
        for _ in 0..100 {
            let t = s.sample(&mut logits(), None).0;
            // p(2)/p(1) = e^-1 < 0.5: only tokens 1 and 5 (e^-0.1) remain.
            assert!(t == 1 || t == 5, "{t}");
        }
    }

    #[test]
    fn penalties_and_bias_change_the_choice() {
        let p = SamplingParams {
            logit_bias: vec![(4, 10.0)],
            ..SamplingParams::greedy()
        };
        assert_eq!(Sampler::new(p, &[]).sample(&mut logits(), None).0, 4);
        let p = SamplingParams {
            frequency_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(p, &[]);
        assert_eq!(s.sample(&mut logits(), None).0, 1);
        // token 1 now penalised by 2.0: 5 (2.9) wins over 1 (1.0).
        assert_eq!(s.sample(&mut logits(), None).0, 5);
        let p = SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        assert_eq!(Sampler::new(p, &[1]).sample(&mut logits(), None).0, 5);
    }

    #[test]
    fn logprobs_are_normalised() {
        let mut s = Sampler::new(SamplingParams::greedy(), &[]);
        let (_, lp) = s.sample(&mut logits(), Some(3));
        let lp = lp.unwrap();
        assert_eq!(lp.top.len(), 3);
        assert_eq!(lp.top[0].0, 1);
        assert!((lp.logprob - lp.top[0].1).abs() < 1e-6);
        let total: f32 = logits().iter().map(|l| (l - 3.0).exp()).sum();
        assert!((lp.logprob - (-(total.ln()))).abs() < 1e-5);
    }

    #[test]
    fn validation_names_the_parameter() {
        let p = SamplingParams {
            top_p: 0.0,
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("top_p"));
        assert!(SamplingParams::default().validate().is_ok());
    }
}
