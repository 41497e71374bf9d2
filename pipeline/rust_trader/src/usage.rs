//! The usage line, shared by `--help` (main.rs) and the command-line errors (error.rs); args.rs
//! and error.rs both depend on it, never on each other's text.

pub const USAGE: &str =
    "usage: tickscope-trader --md-port PORT --fix-port PORT [--md-host H] [--fix-host H] \
[--sender-comp-id ID] [--target-comp-id ID] [--heartbeat S] [--threshold X] [--qty N] [--connect-timeout S] \
[--logon-timeout S] [--ack-wait S] [--logout-wait S] [--quotes one|both] [--hedge-fix-host H] \
[--hedge-fix-port PORT] [--hedge-target-comp-id ID] [--hedge-every N] [--loop busy|tokio]";
