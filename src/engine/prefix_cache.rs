//! Prompt-prefix reuse: the key/value caches of recent sequences, kept in a small
//! memory-bounded LRU. A new request starts from the cached sequence that shares the longest
//! token prefix with its prompt, so repeated tool schemas and chat history are not prefilled
//! again.
//!
//! Reuse starts at any token, and covers generated tokens as well as the prompt: on the CPU
//! path the forward pass is batch-invariant (`model::batch`), so a position's keys and values
//! are the same bit for bit whether a prefill chunk or a decode step computed them, and reuse
//! never changes the output, sampled or greedy. (Elsewhere, GPUs and `CALLM_KERNELS=off`,
//! reuse is exact up to float summation order.)

use std::sync::Mutex;

use crate::model::KvCache;

/// Default memory budget for cached sequences (`CALLM_PREFIX_CACHE_MB` overrides it).
pub const DEFAULT_BUDGET_BYTES: usize = 1 << 30;

/// Most sequences kept at once, whatever their size.
pub const MAX_ENTRIES: usize = 16;

struct Entry {
    /// The tokens of the cached positions.
    tokens: Vec<u32>,
    cache: KvCache,
    last_used: u64,
}

/// A memory-bounded LRU of key/value caches keyed by the tokens they hold.
pub struct PrefixCache {
    budget_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    clock: u64,
}

/// A cache to start a request from, and how many prompt tokens it already holds.
pub struct Reused {
    /// The cache (sized for the request), holding `tokens` positions of the prompt.
    pub cache: KvCache,
    /// Prompt tokens whose keys and values are already in `cache`.
    pub tokens: usize,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// An empty cache that keeps at most `budget_bytes` of key/value buffers (0 disables it).
    pub fn new(budget_bytes: usize) -> Self {
        PrefixCache {
            budget_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The budget from `CALLM_PREFIX_CACHE_MB` (mebibytes), or the default.
    pub fn budget_from_env() -> usize {
        std::env::var("CALLM_PREFIX_CACHE_MB")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map_or(DEFAULT_BUDGET_BYTES, |mb| mb.saturating_mul(1 << 20))
    }

    /// Whether caching is on.
    pub fn enabled(&self) -> bool {
        self.budget_bytes > 0
    }

    /// Number of sequences held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no sequence is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the cached sequence sharing the longest prefix with `prompt` (never the whole
    /// prompt: its last token is always recomputed to get logits), in a new cache of
    /// `capacity` positions. `None` when nothing useful is cached. The entry stays cached, so
    /// concurrent requests can share it.
    pub fn lookup(&self, prompt: &[u32], capacity: usize) -> candle_core::Result<Option<Reused>> {
        if !self.enabled() || prompt.len() < 2 {
            return Ok(None);
        }
        let mut inner = self.lock();
        let best = inner
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let n = common_prefix(&e.tokens, prompt)
                    .min(prompt.len() - 1)
                    .min(capacity);
                (i, n)
            })
            .max_by_key(|&(_, n)| n);
        let Some((i, n)) = best else {
            return Ok(None);
        };
        if n == 0 {
            return Ok(None);
        }
        inner.clock += 1;
        let clock = inner.clock;
        let entry = &mut inner.entries[i];
        entry.last_used = clock;
        let cache = entry.cache.copy_prefix(n, capacity)?;
        Ok(Some(Reused { cache, tokens: n }))
    }

    /// Keeps `cache`, whose positions hold `tokens` (extra tokens beyond `cache.len()` are
    /// ignored), evicting the least recently used sequences to stay within the budget. A
    /// sequence that is a prefix of another cached one is dropped as redundant.
    pub fn insert(&self, tokens: &[u32], cache: KvCache) {
        let used = cache.position_bytes() * cache.len();
        let reusable = cache.len().min(tokens.len());
        if !self.enabled() || reusable == 0 || used > self.budget_bytes {
            return;
        }
        // Positions past what may be reused are never read again: keep only the reusable ones.
        let tokens = tokens[..reusable.min(tokens.len())].to_vec();
        // Keep only the used positions (a request's cache is sized for its max_tokens, or grew
        // by doubling), unless little would be saved: the copy takes the caller's time.
        let need = cache.position_bytes() * reusable;
        let cache = if cache.size_bytes() > need + need / 4 || cache.len() > reusable {
            match cache.copy_prefix(reusable, reusable) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("prefix cache: cannot copy a finished sequence: {e}");
                    return;
                }
            }
        } else {
            cache
        };
        let mut inner = self.lock();
        // Already covered by a longer cached sequence: just refresh it.
        inner.clock += 1;
        let clock = inner.clock;
        if let Some(e) = inner
            .entries
            .iter_mut()
            .find(|e| common_prefix(&e.tokens, &tokens) == tokens.len())
        {
            e.last_used = clock;
            return;
        }
        inner
            .entries
            .retain(|e| common_prefix(&e.tokens, &tokens) < e.tokens.len());
        inner.entries.push(Entry {
            tokens,
            cache,
            last_used: clock,
        });
        let mut total: usize = inner.entries.iter().map(|e| e.cache.size_bytes()).sum();
        while total > self.budget_bytes || inner.entries.len() > MAX_ENTRIES {
            let Some((oldest, _)) = inner
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
            else {
                break;
            };
            total -= inner.entries[oldest].cache.size_bytes();
            inner.entries.swap_remove(oldest);
        }
    }

    /// Drops every cached sequence.
    pub fn clear(&self) {
        self.lock().entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    /// A cache whose position p holds the value p in every slot.
    fn filled(len: usize, capacity: usize) -> KvCache {
        let mut c = KvCache::new(2, 1, 4, capacity, DType::F32, &Device::Cpu).unwrap();
        let vals: Vec<f32> = (0..len).flat_map(|p| [p as f32; 4]).collect();
        let t = Tensor::from_vec(vals, (1, len, 4), &Device::Cpu).unwrap();
        for layer in 0..2 {
            c.append(layer, &t, &t).unwrap();
        }
        c.advance(len);
        c
    }

    fn toks(n: usize, salt: u32) -> Vec<u32> {
        (0..n as u32).map(|i| i * 7 + salt).collect()
    }

    #[test]
    fn reuses_the_longest_shared_prefix_at_any_token_and_copies_it() {
        let pc = PrefixCache::new(1 << 30);
        let a = toks(150, 0);
        pc.insert(&a, filled(a.len(), a.len() + 20));
        // A prompt sharing 77 tokens, then diverging: all 77 are reused.
        let mut p = a[..77].to_vec();
        p.extend([9999, 9998]);
        let r = pc.lookup(&p, 500).unwrap().unwrap();
        assert_eq!(r.tokens, 77);
        assert_eq!((r.cache.len(), r.cache.capacity()), (77, 500));
        let mut c = r.cache;
        let probe = Tensor::zeros((1, 1, 4), DType::F32, &Device::Cpu).unwrap();
        let (k, _) = c.append(0, &probe, &probe).unwrap();
        let last = k.narrow(1, 76, 1).unwrap().flatten_all().unwrap();
        assert_eq!(last.to_vec1::<f32>().unwrap(), vec![76.0; 4]);
        // The same prompt again: everything but its last token.
        assert_eq!(pc.lookup(&a, 500).unwrap().unwrap().tokens, 149);
        // A longer prompt that continues the cached sequence reuses all of it.
        let mut longer = a.clone();
        longer.push(5);
        assert_eq!(pc.lookup(&longer, 500).unwrap().unwrap().tokens, 150);
        // A short repeated prompt is reused too.
        let pc = PrefixCache::new(1 << 30);
        let short = toks(30, 3);
        pc.insert(&short, filled(29, 40));
        assert_eq!(pc.lookup(&short, 40).unwrap().unwrap().tokens, 29);
        // Unrelated prompts reuse nothing.
        assert!(pc.lookup(&toks(30, 1), 40).unwrap().is_none());
    }

    #[test]
    fn evicts_least_recently_used_within_the_budget() {
        const G: usize = 64;
        let one = filled(2 * G, 2 * G).size_bytes();
        let pc = PrefixCache::new(2 * one);
        let n = 2 * G;
        pc.insert(&toks(n, 0), filled(n, n));
        pc.insert(&toks(n, 1), filled(n, n));
        // Touch the first so the second is the least recently used.
        assert!(pc.lookup(&toks(n, 0), n).unwrap().is_some());
        pc.insert(&toks(n, 2), filled(n, n));
        assert_eq!(pc.len(), 2);
        assert!(pc.lookup(&toks(n, 0), n).unwrap().is_some());
        assert!(pc.lookup(&toks(n, 1), n).unwrap().is_none());
        assert!(pc.lookup(&toks(n, 2), n).unwrap().is_some());
        // A disabled cache keeps nothing.
        let off = PrefixCache::new(0);
        off.insert(&toks(n, 0), filled(n, n));
        assert!(off.is_empty());
    }

    #[test]
    fn a_prefix_of_a_cached_sequence_is_not_stored_twice() {
        let pc = PrefixCache::new(1 << 30);
        const G: usize = 64;
        let long = toks(4 * G, 0);
        pc.insert(&long[..G], filled(G, G));
        pc.insert(&long, filled(4 * G, 4 * G));
        assert_eq!(pc.len(), 1);
        pc.insert(&long[..2 * G], filled(2 * G, 2 * G));
        assert_eq!(pc.len(), 1);
    }
}
