//! The progress bar of a model's load: the bytes of weights read, on standard error when it
//! is a terminal (nothing otherwise: logs get the "model loaded" line with the time taken).

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};

use indicatif::{ProgressBar, ProgressStyle};

use crate::model::weights::LoadProgress;

/// A progress reporter drawing a bar, or `None` when standard error is not a terminal.
pub fn load_bar() -> Option<LoadProgress> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar: OnceLock<ProgressBar> = OnceLock::new();
    Some(LoadProgress(Arc::new(move |read, total| {
        let bar = bar.get_or_init(|| {
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "loading weights {bar:40} {bytes}/{total_bytes} ({elapsed})",
            ) {
                b.set_style(style);
            }
            b
        });
        bar.set_position(read);
        if read >= total {
            bar.finish_and_clear();
        }
    })))
}
