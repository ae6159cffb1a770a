//! `callm bench --prefix-reuse N`: time to first token of two requests that share an
//! N-token prompt prefix (as tool schemas and chat history are shared between turns), the
//! second one served from the prefix cache.

use crate::engine::{CancelToken, GenerateParams, SamplingParams};
use crate::runtime::LoadedModel;

/// Tokens after the shared prefix that differ between the two requests.
const SUFFIX: usize = 16;

/// Time to first token, in seconds, of the first and the second request of each repetition.
pub struct PrefixReuse {
    /// Shared prefix length.
    pub shared: usize,
    /// First request (cold cache) TTFT per repetition.
    pub first_s: Vec<f64>,
    /// Second request (prefix cached) TTFT per repetition.
    pub second_s: Vec<f64>,
    /// Prompt tokens the second request reused from the cache.
    pub reused_tokens: usize,
}

fn ttft(lm: &LoadedModel, prompt: &[u32]) -> anyhow::Result<(f64, usize)> {
    let params = GenerateParams {
        max_tokens: Some(1),
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        ..lm.default_params()
    };
    let stats = lm.generate(prompt, &params, &CancelToken::new(), &mut |_| true)?;
    Ok((stats.prefill_time.as_secs_f64(), stats.cached_tokens))
}

/// Runs `reps` repetitions (after one warm-up) on prompts built from `tokens`, which must
/// hold `shared + 2 * SUFFIX` ids.
pub fn run(
    lm: &LoadedModel,
    tokens: &[u32],
    shared: usize,
    reps: usize,
) -> anyhow::Result<PrefixReuse> {
    if !lm.prefix_cache.enabled() {
        anyhow::bail!("the prefix cache is disabled (CALLM_PREFIX_CACHE_MB=0)");
    }
    if tokens.len() < shared + 2 * SUFFIX || shared + SUFFIX + 2 > lm.context {
        anyhow::bail!(
            "--prefix-reuse {shared} does not fit the context window {} (raise --ctx)",
            lm.context
        );
    }
    let prefix = &tokens[..shared];
    let a: Vec<u32> = [prefix, &tokens[shared..shared + SUFFIX]].concat();
    let b: Vec<u32> = [prefix, &tokens[shared + SUFFIX..shared + 2 * SUFFIX]].concat();
    let mut out = PrefixReuse {
        shared,
        first_s: vec![],
        second_s: vec![],
        reused_tokens: 0,
    };
    for rep in 0..=reps {
        lm.clear_prefix_cache();
        let (t1, _) = ttft(lm, &a)?;
        let (t2, reused) = ttft(lm, &b)?;
        if rep > 0 {
            out.first_s.push(t1);
            out.second_s.push(t2);
            out.reused_tokens = reused;
        }
    }
    lm.clear_prefix_cache();
    Ok(out)
}
