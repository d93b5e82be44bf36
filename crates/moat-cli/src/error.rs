//! Errors the user can act on: a message and, where there is one, a `hint:` line; and the exit
//! code when it is not 1.

use std::fmt;

/// An error with an optional hint telling the user what to do next.
#[derive(Debug)]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
    /// The process's exit code, when it is not 1.
    pub exit_code: Option<u8>,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        UserError {
            message: message.into(),
            hint: None,
            exit_code: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Exit with `code` instead of 1 (e.g. 127 for a command that was not found, as a shell).
    pub fn exit_code(mut self, code: u8) -> Self {
        self.exit_code = Some(code);
        self
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}
