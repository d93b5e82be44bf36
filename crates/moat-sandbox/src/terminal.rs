//! The user's terminal around a session.

/// The modes of the terminal on stdin before the session. An agent CLI puts the terminal in raw
/// mode and restores it when it exits; one that is killed (a timeout, a stop) cannot, and
/// would leave the user's shell without echo or line editing.
#[derive(Clone)]
pub struct TerminalModes {
    saved: rustix::termios::Termios,
}

impl TerminalModes {
    /// The current modes, when stdin is a terminal.
    pub fn save() -> Option<Self> {
        let stdin = std::io::stdin();
        rustix::termios::isatty(&stdin)
            .then(|| rustix::termios::tcgetattr(&stdin).ok())
            .flatten()
            .map(|saved| Self { saved })
    }

    /// Puts the saved modes back, unless this process is no longer in the terminal's
    /// foreground (changing them from the background would stop it).
    pub fn restore(&self) {
        let stdin = std::io::stdin();
        let foreground = rustix::termios::tcgetpgrp(&stdin)
            .is_ok_and(|group| group == rustix::process::getpgrp());
        if foreground {
            let _ = rustix::termios::tcsetattr(
                &stdin,
                rustix::termios::OptionalActions::Drain,
                &self.saved,
            );
        }
    }
}
