//! Progress bars for the slow steps (issue 7): reading and signing a large update archive,
//! writing an offline bundle to a slow USB stick, waiting on the hub. Drawn on stderr, and only
//! when stdout and stderr are terminals: in scripts, logs and tests they are hidden, so the
//! printed output stays exactly the messages.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// Where bars are drawn: stderr at a terminal, nowhere otherwise.
fn target() -> ProgressDrawTarget {
    if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar over `len` bytes, e.g. reading an archive.
pub fn bytes(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:<28} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// A bar over `len` steps (files of a bundle).
pub fn steps(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target());
    if let Ok(style) = ProgressStyle::with_template("{msg:<28} [{bar:30}] {pos}/{len} {prefix}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// A spinner for a step of unknown length (waiting on the hub, checking a signature).
pub fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, target());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Reads a whole file with a byte bar.
pub fn read_file(path: &std::path::Path, what: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = bytes(len, what);
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    bar.wrap_read(file).read_to_end(&mut out)?;
    bar.finish_and_clear();
    Ok(out)
}
