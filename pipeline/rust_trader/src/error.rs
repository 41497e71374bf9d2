//! What goes wrong in the trader itself, each as one line (`Display`) naming the thing and what
//! was found. Start-up errors end the process with exit 2; orders left unanswered with exit 3
//! (pipeline/trader.py and pipeline/fix_session.py keep the same contract); the rest are reasons
//! for the kill switch. A peer's bad input is not here: it is counted and answered where it is
//! read (itch::DecodeError, a Reject(35=3) from fix::FieldError).

use crate::usage::USAGE;
use std::fmt;
use std::io;

/// 0: every order answered. Start-up failed: one line, exit 2.
pub const EXIT_START_UP: i32 = 2;
/// Orders left unanswered at the end (a stalled or lost order session), named in the last line.
pub const EXIT_UNANSWERED: i32 = 3;

#[derive(Debug)]
pub enum Error {
    // -- the command line
    MissingValue {
        flag: String,
    },
    BadValue {
        flag: String,
        value: String,
        expected: &'static str,
    },
    Unsupported {
        flag: &'static str,
        value: String,
        instead: &'static str,
    },
    UnknownOption {
        flag: String,
    },
    MissingPorts,
    SameVenue {
        target: String,
    },
    // -- start-up
    Bind {
        port: u16,
        source: io::Error,
    },
    Socket {
        what: &'static str,
        source: io::Error,
    },
    Connect {
        host: String,
        port: u16,
        source: io::Error,
    },
    ProbeRing(tickscope_probe::Error),
    LogonSend(io::Error),
    LogonTimeout {
        host: String,
        port: u16,
        secs: f64,
    },
    LogonClosed,
    LogonRead(io::Error),
    LogonGarbage(String),
    LogonRefused(String),
    // -- while running: reasons for the kill switch
    Send(io::Error),
    OrderSend(io::Error),
    Read(io::Error),
    PeerClosed,
    SessionEnded(String),
    /// The session layer's own reason for logging out (no answer to a TestRequest, ...).
    Session(String),
    /// What went wrong on the hedge venue's session, named as such.
    HedgeVenue {
        venue: String,
        source: Box<Error>,
    },
    // -- the end
    Unanswered {
        unanswered: usize,
        sent: u64,
        facts: String,
    },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Unanswered { .. } => EXIT_UNANSWERED,
            Error::HedgeVenue { source, .. } => source.exit_code(),
            _ => EXIT_START_UP,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingValue { flag } => write!(f, "{} needs a value ({})", flag, USAGE),
            Error::BadValue { flag, value, expected } => {
                write!(f, "{} {:?} is not {}", flag, value, expected)
            }
            Error::Unsupported { flag, value, instead } => {
                write!(f, "{} {}: the Rust trader {}", flag, value, instead)
            }
            Error::UnknownOption { flag } => write!(f, "unknown option {} ({})", flag, USAGE),
            Error::MissingPorts => write!(f, "--md-port and --fix-port are required ({})", USAGE),
            Error::SameVenue { target } => write!(
                f,
                "--hedge-target-comp-id must differ from --target-comp-id ({}): it names the venue",
                target
            ),
            Error::HedgeVenue { venue, source } => write!(f, "hedge venue {}: {}", venue, source),
            Error::Bind { port, source } => write!(f, "cannot bind market data port {}: {}", port, source),
            Error::Socket { what, source } => write!(f, "{} socket: {}", what, source),
            Error::Connect { host, port, source } => {
                write!(f, "cannot connect to FIX acceptor {}:{}: {}", host, port, source)
            }
            Error::ProbeRing(e) => write!(f, "probe ring: {}", e),
            Error::LogonSend(e) => write!(f, "cannot send Logon: {}", e),
            Error::LogonTimeout { host, port, secs } => {
                write!(f, "venue {}:{} never answered Logon within {}s", host, port, secs)
            }
            Error::LogonClosed => write!(f, "venue closed the connection during Logon"),
            Error::LogonRead(e) => write!(f, "FIX connection error during Logon: {}", e),
            Error::LogonGarbage(why) => write!(f, "venue answered Logon with garbage: {}", why),
            Error::LogonRefused(reason) => write!(f, "venue refused Logon: {}", reason),
            Error::Send(e) => write!(f, "FIX send failed: {}", e),
            Error::OrderSend(e) => write!(f, "order send failed: {}", e),
            Error::Read(e) => write!(f, "FIX connection error: {}", e),
            Error::PeerClosed => write!(f, "venue closed the FIX connection"),
            Error::SessionEnded(reason) => write!(f, "FIX session ended: {}", reason),
            Error::Session(reason) => write!(f, "{}", reason),
            Error::Unanswered { unanswered, sent, facts } => write!(
                f,
                "{} of {} orders never answered ({}): exit {}",
                unanswered, sent, facts, EXIT_UNANSWERED
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<tickscope_probe::Error> for Error {
    fn from(e: tickscope_probe::Error) -> Self {
        Error::ProbeRing(e)
    }
}
