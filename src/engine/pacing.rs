//! How many prompt tokens a step may prefill while other sequences decode.
//!
//! A step that carries a prefill chunk delays every running stream's next token by the chunk's
//! cost. [`Pacer`] sizes the chunk from measured step times so that such a step takes about
//! [`Pacer::factor`] times a decode-only step: the running streams slow down by a bounded
//! factor while a long prompt prefills, on any model, device or thread count, instead of by
//! whatever a fixed token budget happens to cost there. Outputs do not depend on the chunking
//! (batch invariance), so pacing by the clock changes no result.
//!
//! A decode step grows dearer as the running sequences grow (their attention reads more keys),
//! so while a prompt prefills, every [`REFRESH`]th step decodes only and renews that baseline:
//! otherwise a stale, cheaper baseline would charge the streams' own growth to the prefill and
//! starve it.
/// Weight of a new measurement in the running averages.
const ALPHA: f64 = 0.25;
/// While a prompt prefills, one step in this many decodes only, to renew the baseline.
pub const REFRESH: usize = 8;
/// Weight of a renewed baseline: the streams grew since the last one, so it counts more.
const ALPHA_REFRESH: f64 = 0.6;

/// Step-time bookkeeping and the prefill budget derived from it.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// A step with prefill may take this many times a decode-only step.
    factor: f64,
    /// Prefill tokens per step before anything is measured.
    start: usize,
    /// Never more prefill tokens per step than this.
    max: usize,
    /// Average seconds of a decode-only step.
    decode_secs: Option<f64>,
    /// Average seconds one prefill token adds to a step.
    token_secs: Option<f64>,
    /// Steps with prefill since the last decode-only step.
    since_decode: usize,
}

impl Pacer {
    /// A pacer that lets a prefill step take `factor` times a decode-only step, starting at
    /// `start` tokens per step and never above `max`.
    pub fn new(factor: f64, start: usize, max: usize) -> Self {
        let max = max.max(1);
        Pacer {
            factor: factor.max(1.0),
            start: start.clamp(1, max),
            max,
            decode_secs: None,
            token_secs: None,
            since_decode: 0,
        }
    }

    /// Whether the next step, though a prompt waits, should decode only (to renew the
    /// decode-only baseline the budget is sized from).
    pub fn refresh_due(&self) -> bool {
        self.since_decode >= REFRESH
    }

    /// Prefill tokens the next step may take while sequences decode (at least one, so a
    /// waiting prompt always progresses).
    pub fn budget(&self) -> usize {
        match (self.decode_secs, self.token_secs) {
            (Some(_), Some(token)) if token <= 0.0 => self.max,
            (Some(step), Some(token)) => {
                let n = ((self.factor - 1.0) * step / token).floor();
                if n.is_finite() {
                    (n as usize).clamp(1, self.max)
                } else {
                    self.max
                }
            }
            _ => self.start,
        }
    }

    /// Records a step that ran `decoding` decode rows and `prefill` prompt tokens in `secs`.
    pub fn record(&mut self, decoding: usize, prefill: usize, secs: f64) {
        if decoding == 0 || !secs.is_finite() || secs < 0.0 {
            return;
        }
        if prefill == 0 {
            let alpha = if self.since_decode > 0 {
                ALPHA_REFRESH
            } else {
                ALPHA
            };
            self.decode_secs = Some(avg(self.decode_secs, secs, alpha));
            self.since_decode = 0;
            return;
        }
        self.since_decode += 1;
        if let Some(step) = self.decode_secs {
            let extra = (secs - step).max(0.0) / prefill as f64;
            self.token_secs = Some(avg(self.token_secs, extra, ALPHA));
        }
    }
}

fn avg(old: Option<f64>, new: f64, alpha: f64) -> f64 {
    match old {
        Some(o) => o + alpha * (new - o),
        None => new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_start_budget_until_both_costs_are_known() {
        let mut p = Pacer::new(2.0, 8, 64);
        assert_eq!(p.budget(), 8);
        p.record(4, 8, 0.2); // no decode-only step yet: nothing to compare with
        assert_eq!(p.budget(), 8);
        p.record(4, 0, 0.04);
        assert_eq!(p.budget(), 8);
        p.record(4, 8, 0.12); // 10 ms per prefill token on a 40 ms step
        assert_eq!(p.budget(), 4); // (2 - 1) * 40 ms / 10 ms
    }

    #[test]
    fn the_budget_follows_the_factor_and_stays_within_bounds() {
        let mut p = Pacer::new(3.0, 8, 64);
        p.record(2, 0, 0.02);
        p.record(2, 10, 0.03); // 1 ms per token
        assert_eq!(p.budget(), 40); // 2 * 20 ms / 1 ms
        let mut slow = Pacer::new(2.0, 8, 64);
        slow.record(1, 0, 0.01);
        slow.record(1, 1, 0.5);
        assert_eq!(slow.budget(), 1, "a prompt always progresses");
        let mut free = Pacer::new(2.0, 8, 16);
        free.record(1, 0, 0.01);
        free.record(1, 4, 0.005); // faster than a decode step: no measurable cost
        assert_eq!(free.budget(), 16);
    }

    #[test]
    fn a_decode_only_step_is_due_every_refresh_steps_and_renews_the_baseline() {
        let mut p = Pacer::new(2.0, 8, 64);
        p.record(4, 0, 0.010);
        p.record(4, 5, 0.015);
        assert_eq!(p.budget(), 10); // 10 ms / 1 ms per token
        for _ in 1..REFRESH {
            assert!(!p.refresh_due());
            p.record(4, 10, 0.020);
        }
        assert!(p.refresh_due());
        // The streams grew: a decode-only step now takes 30 ms, which the old 10 ms baseline
        // would have charged to the prefill.
        for _ in 0..40 {
            p.record(4, 0, 0.030);
        }
        assert!(!p.refresh_due());
        p.record(4, 10, 0.040);
        assert!(p.budget() > 10, "{p:?}");
    }

    #[test]
    fn steps_without_decoders_and_bad_timings_are_ignored() {
        let mut p = Pacer::new(2.0, 8, 64);
        p.record(0, 512, 1.0);
        p.record(3, 0, f64::NAN);
        p.record(3, 0, -1.0);
        assert_eq!(p.decode_secs, None);
        assert_eq!(p.budget(), 8);
    }
}
