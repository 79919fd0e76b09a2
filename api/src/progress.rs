//! Progress of long operations: a bar on a terminal, plain lines otherwise (logs, CI, pipes).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports `done` out of `total` items.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    label: &'static str,
    total: u64,
    next_line_at: u64,
    done: u64,
    printed: u64,
}

impl Progress {
    /// A progress report for `total` items of work named `label`.
    pub fn new(label: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(label);
            bar
        });
        Progress { bar, label, total, next_line_at: 0, done: 0, printed: u64::MAX }
    }

    /// `done` items are finished.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if done >= self.next_line_at => {
                eprintln!("{}: {done}/{}", self.label, self.total);
                self.printed = done;
                // About ten lines for the whole run.
                self.next_line_at = done + (self.total / 10).max(1);
            }
            None => {}
        }
    }

    /// The work is over.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        } else if self.printed != self.done {
            eprintln!("{}: {}/{}", self.label, self.done, self.total);
        }
    }
}
