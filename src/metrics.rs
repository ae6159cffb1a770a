//! What `GET /metrics` reports, in Prometheus' text format: requests by endpoint and status,
//! tokens in and out, the waiting line and running sequences, batch sizes per step, KV-cache
//! memory, prefix-cache reuse, and time-to-first-token and inter-token histograms.
//!
//! One [`Metrics`] per served model: the engine's scheduler records the generation side, the
//! server the HTTP side; both are plain counters and histograms of the `prometheus` crate
//! (TiKV's client library, the one the Prometheus project lists for Rust), rendered at scrape
//! time. This module knows nothing of HTTP.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The metrics of one served model.
pub struct Metrics {
    registry: Registry,
    /// Requests by `endpoint` (route path) and HTTP `status`.
    pub requests: IntCounterVec,
    /// Prompt tokens of finished generations.
    pub prompt_tokens: IntCounter,
    /// Generated tokens.
    pub completion_tokens: IntCounter,
    /// Requests waiting for a slot in the server's queue.
    pub waiting: IntGauge,
    /// Sequences waiting to join the batch (for room in it or for KV-cache memory).
    pub kv_waiting: IntGauge,
    /// Sequences in the running batch.
    pub running: IntGauge,
    /// Sequences in each forward pass.
    pub batch_sequences: Histogram,
    /// Tokens in each forward pass (decode tokens plus prefill chunks).
    pub batch_tokens: Histogram,
    /// Bytes of KV cache allocated by running sequences.
    pub kv_bytes: IntGauge,
    /// Bytes of KV cache reserved by running sequences (their worst case).
    pub kv_reserved_bytes: IntGauge,
    /// Requests that started from a cached prefix.
    pub prefix_hits: IntCounter,
    /// Prompt tokens taken from the prefix cache instead of computed.
    pub prefix_reused_tokens: IntCounter,
    /// Seconds from a generation's arrival at the engine to its first token's logits.
    pub ttft: Histogram,
    /// Seconds between a sequence's successive tokens.
    pub itl: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("a valid metric name");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("a valid metric name");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("a valid metric name");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

impl Metrics {
    /// A fresh set of metrics (all zero).
    pub fn new() -> Arc<Self> {
        let r = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "callm_requests_total",
                "HTTP requests by endpoint and status",
            ),
            &["endpoint", "status"],
        )
        .expect("a valid metric name");
        r.register(Box::new(requests.clone()))
            .expect("registered once");
        let latency = vec![
            0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let sizes = vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0];
        let tokens = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        Arc::new(Metrics {
            requests,
            prompt_tokens: counter(&r, "callm_prompt_tokens_total", "Prompt tokens processed"),
            completion_tokens: counter(&r, "callm_completion_tokens_total", "Tokens generated"),
            waiting: gauge(
                &r,
                "callm_queue_waiting",
                "Requests waiting for a slot in the server's queue",
            ),
            kv_waiting: gauge(
                &r,
                "callm_batch_waiting_sequences",
                "Sequences waiting to join the batch (room or KV-cache memory)",
            ),
            running: gauge(
                &r,
                "callm_running_sequences",
                "Sequences in the running batch",
            ),
            batch_sequences: histogram(
                &r,
                "callm_batch_sequences",
                "Sequences per forward pass",
                sizes,
            ),
            batch_tokens: histogram(&r, "callm_batch_tokens", "Tokens per forward pass", tokens),
            kv_bytes: gauge(
                &r,
                "callm_kv_cache_bytes",
                "KV-cache bytes allocated by running sequences",
            ),
            kv_reserved_bytes: gauge(
                &r,
                "callm_kv_cache_reserved_bytes",
                "KV-cache bytes reserved by running sequences",
            ),
            prefix_hits: counter(
                &r,
                "callm_prefix_cache_hits_total",
                "Generations started from a cached prompt prefix",
            ),
            prefix_reused_tokens: counter(
                &r,
                "callm_prefix_cache_reused_tokens_total",
                "Prompt tokens reused from the prefix cache",
            ),
            ttft: histogram(
                &r,
                "callm_time_to_first_token_seconds",
                "Arrival at the engine to the first token",
                latency.clone(),
            ),
            itl: histogram(
                &r,
                "callm_inter_token_seconds",
                "Time between a sequence's tokens",
                latency,
            ),
            registry: r,
        })
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("metrics: cannot encode: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_in_the_text_format() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["/v1/chat/completions", "200"])
            .inc();
        m.ttft.observe(0.03);
        m.batch_sequences.observe(4.0);
        let text = m.render();
        for name in [
            "callm_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 1",
            "# TYPE callm_time_to_first_token_seconds histogram",
            "callm_time_to_first_token_seconds_bucket{le=\"0.05\"} 1",
            "callm_batch_sequences_sum 4",
            "callm_kv_cache_bytes 0",
            "callm_prefix_cache_reused_tokens_total 0",
            "callm_queue_waiting 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
