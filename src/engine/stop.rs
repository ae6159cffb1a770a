//! Stop-string matching over streamed text: text that may still become a stop string is
//! held back; a completed stop string ends generation and is never emitted.

/// Incremental stop-string matcher.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

/// What the matcher decided for a piece of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopStep {
    /// Text safe to emit now.
    pub emit: String,
    /// A stop string was completed: generation ends (its text is not in `emit`).
    pub stopped: bool,
    /// The stop string that was completed, when `stopped`.
    pub matched: Option<String>,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
        }
    }

    /// Feeds newly decoded text.
    pub fn push(&mut self, text: &str) -> StopStep {
        if self.stops.is_empty() {
            return StopStep {
                emit: text.to_string(),
                stopped: false,
                matched: None,
            };
        }
        self.pending.push_str(text);
        // Earliest complete stop string (the first listed among those ending there).
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|&(at, _)| at);
        if let Some((at, stop)) = first {
            let matched = Some(stop.clone());
            let emit = self.pending[..at].to_string();
            self.pending.clear();
            return StopStep {
                emit,
                stopped: true,
                matched,
            };
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let mut hold = 0;
        for s in &self.stops {
            let max = s.len().saturating_sub(1).min(self.pending.len());
            for k in (1..=max).rev() {
                let start = self.pending.len() - k;
                if self.pending.is_char_boundary(start) && s.starts_with(&self.pending[start..]) {
                    hold = hold.max(k);
                    break;
                }
            }
        }
        let cut = self.pending.len() - hold;
        let emit = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        StopStep {
            emit,
            stopped: false,
            matched: None,
        }
    }

    /// Releases held-back text at the end of generation.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let s = m.push(p);
            out.push_str(&s.emit);
            if s.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn stop_split_across_tokens_stops_and_is_not_emitted() {
        assert_eq!(
            run(&["USER:"], &["Hello", " US", "ER", ": more"]),
            ("Hello ".into(), true)
        );
    }

    #[test]
    fn near_miss_is_released() {
        assert_eq!(run(&["USER:"], &["a US", "B"]), ("a USB".into(), false));
        assert_eq!(run(&["###"], &["a #", "#"]), ("a ##".into(), false));
    }

    #[test]
    fn earliest_stop_wins_and_unicode_is_safe() {
        assert_eq!(run(&["b", "é"], &["aéb"]), ("a".into(), true));
        assert_eq!(run(&["日本"], &["x日", "本y"]), ("x".into(), true));
    }

    #[test]
    fn the_completed_stop_string_is_named() {
        let mut m = StopMatcher::new(vec!["END".into(), "b".into(), "é".into()]);
        let first = m.push("aE");
        assert_eq!((first.emit.as_str(), first.matched), ("a", None));
        let step = m.push("Néb");
        assert!(step.stopped);
        assert_eq!(step.emit, "EN");
        assert_eq!(step.matched.as_deref(), Some("é"));
    }

    #[test]
    fn no_stops_passes_through() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }
}
