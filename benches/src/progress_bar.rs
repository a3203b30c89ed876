//! The benches' progress bar (indicatif) on stderr: elapsed time, a bar, position/length,
//! ETA and what runs now. Drawn only when stderr is a terminal, so logs, pipes and CI get no
//! bar and no ANSI escapes; lines printed on stdout or stderr while it is up go through
//! [`ProgressBar::suspend`] / [`ProgressBar::note`] so they are not torn by a redraw.
//! Shared by the all-reduce sweep, `train`, `transfer` and the `--controller` job watchers.

use std::borrow::Cow;
use std::io::IsTerminal as _;

/// A progress bar that exists only on a terminal (a no-op otherwise).
#[derive(Debug)]
pub(crate) struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    /// A bar over `total` units, `unit` naming them (e.g. "points", "steps").
    pub(crate) fn new(total: u64, unit: &str) -> Self {
        let target = if std::io::stderr().is_terminal() {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(Some(total), target);
        // The template is built from a constant shape; a bad one would only lose the styling.
        if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
            "[{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} ETA {{eta}} {{msg}}"
        )) {
            bar.set_style(style);
        }
        if !bar.is_hidden() {
            // Redraws the elapsed time while a long step blocks this thread.
            bar.enable_steady_tick(std::time::Duration::from_millis(250));
        }
        Self { bar }
    }

    /// Whether the bar is drawn (stderr is a terminal).
    pub(crate) fn is_drawn(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// `done` units finished of `total` (the length can change, e.g. once a job's plan is
    /// known); `msg` says what runs now.
    pub(crate) fn set(&self, done: u64, total: u64, msg: impl Into<Cow<'static, str>>) {
        self.bar.set_length(total);
        self.bar.set_position(done.min(total));
        self.bar.set_message(msg);
    }

    /// Runs `f` (which prints) with the bar cleared, then redraws it.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Prints `line` on stderr (always, terminal or not) without tearing the bar.
    pub(crate) fn note(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        // An early return (an error) must not leave a half-drawn bar on the terminal.
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_test_stderr_is_no_terminal_so_the_bar_is_hidden_and_clamps() {
        // cargo test captures stderr: not a terminal.
        let bar = ProgressBar::new(10, "points");
        assert!(!bar.is_drawn() || std::io::stderr().is_terminal());
        bar.set(12, 5, "past the end");
        assert_eq!(bar.bar.position(), 5);
        assert_eq!(bar.bar.length(), Some(5));
        assert_eq!(bar.suspend(|| 7), 7);
        bar.finish();
    }
}
