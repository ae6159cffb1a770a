//! End markers and leading role labels: text a format's models write that is neither content
//! nor part of a call (`</s>`, `<|eom_id|>`, Glaive's `ASSISTANT:`...). Each format declares
//! its own ([`super::ToolFormat::end_markers`], [`super::ToolFormat::leading_labels`]);
//! [`MarkerFilter`] drops them from the text before any scanner sees it, so they reach neither
//! content nor arguments.
//!
//! The filter is chunking-invariant: what it passes on for any split of a text, concatenated,
//! is what it passes on for the whole text. It holds back at most a possible marker's or
//! label's prefix at the end.

/// Removes end markers anywhere and role labels at the start of an output.
#[derive(Debug, Clone, Default)]
pub struct MarkerFilter {
    ends: Vec<&'static str>,
    labels: Vec<&'static str>,
    held: String,
    /// Past the start: labels are no longer looked for.
    started: bool,
}

impl MarkerFilter {
    /// A filter dropping `ends` anywhere and `labels` at the start (after whitespace).
    pub fn new(ends: Vec<&'static str>, labels: Vec<&'static str>) -> Self {
        MarkerFilter {
            started: labels.is_empty(),
            ends: ends.into_iter().filter(|m| !m.is_empty()).collect(),
            labels: labels.into_iter().filter(|m| !m.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Whether the filter drops nothing.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty() && self.labels.is_empty()
    }

    /// Filters the next chunk; `eof` says no more text will come (then nothing is held).
    pub fn push(&mut self, chunk: &str, eof: bool) -> String {
        if self.is_empty() {
            return chunk.to_string();
        }
        let mut buf = std::mem::take(&mut self.held);
        buf.push_str(chunk);
        let mut out = String::with_capacity(buf.len());
        let mut i = self.strip_labels(&buf, eof, &mut out);
        if !self.started {
            self.held = buf[i..].to_string();
            return out;
        }
        let b = buf.as_bytes();
        let mut from = i;
        while i < b.len() {
            if !self.ends.iter().any(|m| m.as_bytes()[0] == b[i]) {
                i += 1;
                continue;
            }
            let rest = &buf[i..];
            if let Some(m) = self.ends.iter().find(|m| rest.starts_with(**m)) {
                out.push_str(&buf[from..i]);
                i += m.len();
                from = i;
            } else if !eof && self.ends.iter().any(|m| m.starts_with(rest)) {
                out.push_str(&buf[from..i]);
                self.held = rest.to_string();
                return out;
            } else {
                i += 1;
            }
        }
        out.push_str(&buf[from..]);
        out
    }

    /// Drops labels at the start of `buf` (writing the whitespace before them to `out`);
    /// returns where the rest begins. Leaves `started` false while a label may still come.
    fn strip_labels(&mut self, buf: &str, eof: bool, out: &mut String) -> usize {
        let mut i = 0;
        while !self.started {
            let j = i + (buf.len() - i - buf[i..].trim_start().len());
            let rest = &buf[j..];
            if let Some(l) = self.labels.iter().find(|l| rest.starts_with(**l)) {
                out.push_str(&buf[i..j]);
                i = j + l.len();
            } else if !eof && self.labels.iter().any(|l| l.starts_with(rest)) {
                // Nothing yet, or a label's beginning: pass the whitespace, wait for more.
                out.push_str(&buf[i..j]);
                return j;
            } else {
                self.started = true;
            }
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> MarkerFilter {
        MarkerFilter::new(vec!["</s>", "<|eom_id|>"], vec!["ASSISTANT:"])
    }

    #[test]
    fn drops_markers_and_the_leading_label_on_any_split() {
        let text = "  ASSISTANT: a</s>b <|eom_id|>c <|eom_ ASSISTANT: </";
        let want = "   ab c <|eom_ ASSISTANT: </";
        for cut in 0..=text.len() {
            let mut f = filter();
            let mut got = f.push(&text[..cut], false);
            got.push_str(&f.push(&text[cut..], false));
            got.push_str(&f.push("", true));
            assert_eq!(got, want, "cut at {cut}");
        }
        let mut f = filter();
        let mut got = String::new();
        for c in text.chars() {
            got.push_str(&f.push(&c.to_string(), false));
        }
        got.push_str(&f.push("", true));
        assert_eq!(got, want);
    }

    #[test]
    fn labels_only_at_the_start() {
        let mut f = filter();
        assert_eq!(
            f.push("ASSISTANT:ASSISTANT: x ASSISTANT:", true),
            " x ASSISTANT:"
        );
        let mut f = filter();
        assert_eq!(f.push("ASSIST", false), "");
        assert_eq!(f.push("ANCE", true), "ASSISTANCE");
    }
}
