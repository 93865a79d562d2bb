//! How lbctl fails: an exit code from `--help`'s table and a message that
//! says what is wrong and what to do next.

use std::fmt;

use tonic::Code;
use tonic_types::StatusExt;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

pub const DIFFERENT: u8 = 1;
pub const USAGE: u8 = 2;
pub const REFUSED: u8 = 3;
pub const UNREACHABLE: u8 = 4;
pub const TIMED_OUT: u8 = 5;

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A bad input: usage or file.
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    /// A call the controller answered with an error: its message, each bad
    /// field on a line of its own, and the reason a script can match.
    pub fn status(what: &str, status: &tonic::Status) -> Self {
        let code = match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled => UNREACHABLE,
            _ => REFUSED,
        };
        let details = status.get_error_details();
        let mut message = format!("{what}: {}", status.message());
        if status.message().is_empty() {
            message.push_str(&format!("{:?}", status.code()));
        }
        if let Some(bad) = details.bad_request()
            && bad.field_violations.len() > 1
        {
            for v in &bad.field_violations {
                message.push_str(&format!("\n  {}: {}", v.field, v.description));
            }
        }
        if let Some(info) = details.error_info() {
            message.push_str(&format!(" [{}]", info.reason));
        }
        if status.code() == Code::Unavailable && details.error_info().is_none() {
            message.push_str(
                "\n  is lb-controller running, and is --endpoint (LBCTL_ENDPOINT) its API address?",
            );
        }
        if status.code() == Code::Cancelled {
            message.push_str(
                "\n  the controller closed the connection: over mutual TLS it asks for a client \
                 certificate (--tls-cert and --tls-key) signed by the CA it trusts",
            );
        }
        Self::new(code, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// Maps a call's error to a failure naming `what` was tried.
pub trait Called<T> {
    fn called(self, what: &str) -> Result<T>;
}

impl<T> Called<T> for std::result::Result<tonic::Response<T>, tonic::Status> {
    fn called(self, what: &str) -> Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| Failure::status(what, &s))
    }
}
