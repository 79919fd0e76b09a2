//! Progress of long operations: a bar on a terminal, plain lines otherwise (logs, CI, pipes).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports `done` out of `total` items.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    label: &'static str,
    total: u64,
    /// Whether `total` is a guess (shown as `~N`, and the last line gives the count alone).
    estimated: bool,
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
        Progress { bar, label, total, estimated: false, next_line_at: 0, done: 0, printed: u64::MAX }
    }

    /// Like [`Progress::new`], for a `total` that is only an estimate (from a file's size).
    pub fn estimated(label: &'static str, total: u64) -> Self {
        Progress { estimated: true, ..Progress::new(label, total) }
    }

    fn of_total(&self) -> String {
        if self.estimated {
            format!("~{}", self.total)
        } else {
            self.total.to_string()
        }
    }

    /// `done` items are finished.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if done >= self.next_line_at => {
                eprintln!("{}: {done}/{}", self.label, self.of_total());
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
        } else if self.estimated {
            eprintln!("{}: {} in all", self.label, self.done);
        } else if self.printed != self.done {
            eprintln!("{}: {}/{}", self.label, self.done, self.total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn an_estimated_total_reads_as_one() {
        assert_eq!(Progress::new("verify", 10).of_total(), "10");
        assert_eq!(Progress::estimated("verify", 24_560).of_total(), "~24560");
    }
}
