//! `callm bench --concurrent N[,N...]`: N simultaneous generations through the scheduler (one
//! batched forward pass per step), in the style of llama.cpp's `llama-batched-bench`:
//! aggregate and per-client decode tokens/s, time to first token and inter-token latency
//! (p50/p95), with every client starting together or with staggered arrivals, and optionally
//! the running streams' inter-token latency while a long new prompt is prefilled.
//!
//! Definitions. A client's decode rate is its tokens after the first divided by the time from
//! its first token to its last; the aggregate is every client's tokens after the first divided
//! by the time from the earliest first token to the latest last token (the span in which the
//! batch decodes). TTFT runs from a client's submission to its first token. Inter-token gaps
//! are the times between a client's successive tokens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{CancelToken, GenerateParams, SamplingParams};
use crate::runtime::LoadedModel;

/// What one concurrent run does.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Simultaneous clients.
    pub clients: usize,
    /// Prompt tokens of each client (distinct prompts: no prefix reuse between clients).
    pub n_prompt: usize,
    /// Tokens each client generates.
    pub n_gen: usize,
    /// Milliseconds between two clients' arrivals (0: all start together).
    pub arrival_ms: u64,
    /// When > 0: once every client decodes, one more request with a prompt of this many tokens
    /// arrives; the clients' gaps while it is prefilled are reported apart.
    pub long_prompt: usize,
}

/// The measurements of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConcurrentResult {
    /// Simultaneous clients.
    pub clients: usize,
    /// `together`, `staggered Nms`, plus `+ prefill L` with a long prompt.
    pub mode: String,
    /// Aggregate decode tokens/s of all clients.
    pub aggregate_ts: f64,
    /// Mean decode tokens/s of one client.
    pub per_client_ts: f64,
    /// Time to first token, p50 and p95, seconds.
    pub ttft_s: [f64; 2],
    /// Inter-token gaps, p50 and p95, seconds.
    pub itl_s: [f64; 2],
    /// With a long prompt: the clients' gaps while it was prefilled, p50 and p95, seconds.
    pub itl_during_prefill_s: Option<[f64; 2]>,
    /// With a long prompt: its prefill time, seconds.
    pub long_prefill_s: Option<f64>,
    /// The median over sweeps of this count's aggregate divided by the first count's in the
    /// same sweep (`bench -r` sweeps over the counts); `None` where no sweep has both.
    pub ratio_to_first: Option<f64>,
}

/// For `rates[i][sweep]` (client count `i`'s aggregate in each sweep): per count, the median
/// over the sweeps of its rate divided by count 0's rate in the same sweep (nearest rank, as
/// [`quantile`]: an even number of sweeps takes the lower middle one). Sweeps where count 0
/// measured nothing are left out; `None` where none is left.
pub fn median_ratios(rates: &[Vec<f64>]) -> Vec<Option<f64>> {
    let Some(first) = rates.first() else {
        return vec![];
    };
    rates
        .iter()
        .map(|rs| {
            let v: Vec<f64> = rs
                .iter()
                .zip(first)
                .filter(|(_, &f)| f > 0.0)
                .map(|(&r, &f)| r / f)
                .collect();
            (!v.is_empty()).then(|| quantile(&v, 0.5))
        })
        .collect()
}

/// The `q`-quantile (0..=1) of `v` by the nearest-rank rule; 0 for an empty `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// One client's timeline.
struct Client {
    submitted: Instant,
    tokens: Vec<Instant>,
}

fn params(lm: &LoadedModel, n_gen: usize) -> GenerateParams {
    GenerateParams {
        max_tokens: Some(n_gen),
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        ..lm.default_params()
    }
}

/// Runs `sc` with client `i`'s prompt `prompts[i]` (and the long prompt `prompts[clients]`
/// when asked for).
pub fn run(
    lm: &Arc<LoadedModel>,
    prompts: &[Vec<u32>],
    sc: Scenario,
) -> anyhow::Result<ConcurrentResult> {
    let need = sc.clients + usize::from(sc.long_prompt > 0);
    if prompts.len() < need || sc.clients == 0 || sc.n_gen < 2 {
        anyhow::bail!("--concurrent needs at least one client, -n 2 and a prompt per client");
    }
    lm.clear_prefix_cache();
    let decoding = Arc::new(AtomicUsize::new(0));
    let stop = CancelToken::new();
    let start = Instant::now();
    let handles: Vec<_> = (0..sc.clients)
        .map(|i| {
            let (lm, prompt) = (lm.clone(), prompts[i].clone());
            let (decoding, stop) = (decoding.clone(), stop.clone());
            let at = start + Duration::from_millis(sc.arrival_ms * i as u64);
            // With a long prompt the clients decode until it is done, then stop.
            let n_gen = if sc.long_prompt > 0 {
                lm.context - prompt.len() - 1
            } else {
                sc.n_gen
            };
            std::thread::spawn(move || -> anyhow::Result<Client> {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let mut c = Client {
                    submitted: Instant::now(),
                    tokens: vec![],
                };
                let stats = lm.generate(&prompt, &params(&lm, n_gen), &stop, &mut |_| {
                    c.tokens.push(Instant::now());
                    if c.tokens.len() == 8 {
                        decoding.fetch_add(1, Ordering::AcqRel);
                    }
                    true
                })?;
                c.tokens.truncate(stats.completion_tokens);
                Ok(c)
            })
        })
        .collect();
    let mut long = None;
    if sc.long_prompt > 0 {
        while decoding.load(Ordering::Acquire) < sc.clients {
            std::thread::sleep(Duration::from_millis(2));
        }
        let t = Instant::now();
        lm.generate(
            &prompts[sc.clients],
            &params(lm, 1),
            &CancelToken::new(),
            &mut |_| true,
        )?;
        long = Some((t, Instant::now()));
        // Let the clients decode unloaded again for a while, then end them.
        std::thread::sleep((long.map_or(t, |l| l.1) - t).min(Duration::from_secs(2)));
        stop.cancel();
    }
    let mut clients = vec![];
    for h in handles {
        clients.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("a bench client panicked"))??,
        );
    }
    Ok(summarize(&clients, sc, long))
}

fn summarize(
    clients: &[Client],
    sc: Scenario,
    long: Option<(Instant, Instant)>,
) -> ConcurrentResult {
    let (mut ttft, mut gaps, mut during, mut rates) = (vec![], vec![], vec![], vec![]);
    let mut decoded = 0usize;
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for c in clients {
        let (Some(&f), Some(&l)) = (c.tokens.first(), c.tokens.last()) else {
            continue;
        };
        ttft.push((f - c.submitted).as_secs_f64());
        first = Some(first.map_or(f, |x| x.min(f)));
        last = Some(last.map_or(l, |x| x.max(l)));
        decoded += c.tokens.len() - 1;
        if c.tokens.len() > 1 {
            rates.push((c.tokens.len() - 1) as f64 / (l - f).as_secs_f64().max(1e-9));
        }
        for w in c.tokens.windows(2) {
            let gap = (w[1] - w[0]).as_secs_f64();
            match long {
                Some((a, b)) if w[1] > a && w[0] < b => during.push(gap),
                _ => gaps.push(gap),
            }
        }
    }
    let span = match (first, last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64().max(1e-9),
        _ => 1.0,
    };
    let mut mode = match sc.arrival_ms {
        0 => "together".to_string(),
        ms => format!("staggered {ms}ms"),
    };
    if sc.long_prompt > 0 {
        mode.push_str(&format!(" + prefill {}", sc.long_prompt));
    }
    let pq = |v: &[f64]| [quantile(v, 0.5), quantile(v, 0.95)];
    ConcurrentResult {
        clients: sc.clients,
        mode,
        aggregate_ts: decoded as f64 / span,
        per_client_ts: rates.iter().sum::<f64>() / rates.len().max(1) as f64,
        ttft_s: pq(&ttft),
        itl_s: pq(&gaps),
        itl_during_prefill_s: long.map(|_| pq(&during)),
        long_prefill_s: long.map(|(a, b)| (b - a).as_secs_f64()),
        ratio_to_first: None,
    }
}

/// Prints `results` as a markdown table.
pub fn print_table(model: &str, threads: usize, results: &[ConcurrentResult]) {
    println!(
        "| model | threads | clients | arrivals | aggregate t/s | x first count | per client t/s | TTFT p50/p95 s | ITL p50/p95 ms | ITL in prefill p50/p95 ms |"
    );
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in results {
        let during = match (r.itl_during_prefill_s, r.long_prefill_s) {
            (Some(d), Some(p)) => {
                format!("{:.1} / {:.1} (prefill {p:.1} s)", d[0] * 1e3, d[1] * 1e3)
            }
            _ => "-".to_string(),
        };
        let ratio = r
            .ratio_to_first
            .map_or_else(|| "-".to_string(), |x| format!("{x:.2}x"));
        println!(
            "| {model} | {threads} | {} | {} | {:.2} | {ratio} | {:.2} | {:.3} / {:.3} | {:.1} / {:.1} | {during} |",
            r.clients,
            r.mode,
            r.aggregate_ts,
            r.per_client_ts,
            r.ttft_s[0],
            r.ttft_s[1],
            r.itl_s[0] * 1e3,
            r.itl_s[1] * 1e3,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{median_ratios, quantile};

    #[test]
    fn ratios_are_taken_within_a_sweep_then_the_median() {
        // Three sweeps whose speeds drift: 100, 150, 80 t/s for one client.
        let rates = vec![
            vec![100.0, 150.0, 80.0],
            vec![250.0, 300.0, 240.0],
            vec![300.0, 600.0, 400.0],
        ];
        let r = median_ratios(&rates);
        assert_eq!(r[0], Some(1.0));
        // 2.5, 2.0, 3.0 -> 2.5 (the median of the ratios, not 250 / 100 of the medians).
        assert_eq!(r[1], Some(2.5));
        // 3.0, 4.0, 5.0 -> 4.0.
        assert_eq!(r[2], Some(4.0));
        // An even count takes the lower middle (3.0 and 2.5: 2.5); a sweep without a first
        // rate is left out.
        let r = median_ratios(&[vec![100.0, 0.0, 200.0], vec![300.0, 50.0, 500.0]]);
        assert_eq!(r[1], Some(2.5));
        assert_eq!(median_ratios(&[vec![0.0], vec![1.0]])[1], None);
        assert!(median_ratios(&[]).is_empty());
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.95), 5.0);
        assert_eq!(quantile(&v, 0.2), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
