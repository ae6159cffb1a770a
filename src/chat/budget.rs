//! The reasoning budget (`max_reasoning_tokens`, Anthropic's `thinking.budget_tokens`): once a
//! thinking model's reasoning block holds that many generated tokens and is still open, the
//! close is fed in place of sampled tokens, which ends the block; the answer follows. The
//! block is followed as usage counts it ([`ReasoningSplitter`]: at the start of the answer,
//! or from the first token when the prompt opened it); the engine's token loop does the
//! feeding through [`Steer`].

use std::sync::Arc;

use crate::engine::{Steer, SteerFactory};
use crate::parsers::{Reasoning, ReasoningSplitter};

/// A cap on a thinking model's reasoning block.
#[derive(Debug, Clone)]
pub struct ReasoningBudget {
    /// The family's markers.
    pub markers: Reasoning,
    /// The prompt opened the block: the answer starts inside it.
    pub started: bool,
    /// Most generated tokens in the block before it is closed (its open marker's included).
    pub max_tokens: usize,
    /// The tokens that close the block (the close marker, with line breaks around it).
    pub close_ids: Vec<u32>,
}

impl ReasoningBudget {
    /// What the token loop steers with: a fresh watch for each generation.
    pub fn steer(self) -> SteerFactory {
        let budget = Arc::new(self);
        SteerFactory(Arc::new(move || {
            Box::new(BudgetWatch::new(budget.clone())) as Box<dyn Steer>
        }))
    }
}

/// Where one generation stands against its [`ReasoningBudget`].
struct BudgetWatch {
    budget: Arc<ReasoningBudget>,
    splitter: ReasoningSplitter,
    /// The last token completed its text (no bytes of a character held back): the close may
    /// follow it without splitting a character.
    boundary: bool,
    /// Close tokens fed so far: `None` before the close began.
    fed: Option<usize>,
}

impl BudgetWatch {
    fn new(budget: Arc<ReasoningBudget>) -> Self {
        let splitter = ReasoningSplitter::new(budget.markers.clone(), budget.started);
        BudgetWatch {
            budget,
            splitter,
            boundary: true,
            fed: None,
        }
    }
}

impl Steer for BudgetWatch {
    fn push(&mut self, text: &str) {
        self.splitter.push_token(text);
        self.boundary = !text.is_empty();
    }

    /// The close's next token once the open block has used its budget, at a character
    /// boundary, where `allowed` (the grammar) lets it come. Where the first close token is not
    /// allowed yet, sampling goes on and the close waits; where a later one is not, the close
    /// ends there (never against the grammar).
    fn next(&mut self, allowed: &dyn Fn(u32) -> bool) -> Option<u32> {
        let ids = &self.budget.close_ids;
        let i = match self.fed {
            Some(i) => i,
            None if self.boundary
                && self.splitter.is_inside()
                && self.splitter.tokens() >= self.budget.max_tokens =>
            {
                0
            }
            None => return None,
        };
        match ids.get(i).copied().filter(|&id| allowed(id)) {
            Some(id) => {
                self.fed = Some(i + 1);
                Some(id)
            }
            None => {
                if i > 0 {
                    self.fed = Some(ids.len());
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max_tokens: usize, started: bool) -> BudgetWatch {
        BudgetWatch::new(Arc::new(ReasoningBudget {
            markers: Reasoning {
                open: "<think>".into(),
                close: "</think>".into(),
            },
            started,
            max_tokens,
            close_ids: vec![7, 8, 9],
        }))
    }

    const ANY: &dyn Fn(u32) -> bool = &|_| true;

    #[test]
    fn closes_an_open_block_at_its_budget_once() {
        let mut w = budget(3, false);
        assert_eq!(w.next(ANY), None);
        w.push("<think>");
        w.push("a");
        assert_eq!(w.next(ANY), None, "2 of 3 tokens");
        w.push("b");
        assert_eq!(w.next(ANY), Some(7));
        w.push("\n");
        assert_eq!(w.next(ANY), Some(8));
        w.push("</think>");
        assert_eq!(w.next(ANY), Some(9));
        w.push("\n\n");
        assert_eq!(w.next(ANY), None);
        w.push("answer");
        assert_eq!(w.next(ANY), None);
    }

    #[test]
    fn no_block_no_close_and_a_block_the_model_closed_is_left_alone() {
        let mut w = budget(1, false);
        w.push("plain answer");
        w.push("more");
        assert_eq!(w.next(ANY), None);
        let mut w = budget(4, true);
        w.push("x");
        w.push("</think>");
        for _ in 0..4 {
            w.push("y");
        }
        assert_eq!(w.next(ANY), None);
    }

    #[test]
    fn waits_for_a_whole_character_and_for_the_grammar() {
        let mut w = budget(1, true);
        w.push("");
        assert_eq!(w.next(ANY), None, "inside a character");
        w.push("é");
        assert_eq!(w.next(&|id| id != 7), None, "the grammar refuses the first");
        assert_eq!(w.next(ANY), Some(7));
        // A later token refused: the close ends there, and never starts again.
        assert_eq!(w.next(&|id| id != 8), None);
        assert_eq!(w.next(ANY), None);
    }
}
