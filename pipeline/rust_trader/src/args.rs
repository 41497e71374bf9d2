//! The command line: the Python trader's options (pipeline/trader.py) that the Rust trader
//! implements, `--flag value` or `--flag=value`; every mistake is one line naming the option.

use crate::error::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub md_host: String,
    pub md_port: u16,
    pub fix_host: String,
    pub fix_port: u16,
    pub sender: String,
    pub target: String,
    pub heartbeat: i64,
    pub threshold: f64,
    pub qty: i64,
    pub connect_timeout: f64,
    pub logon_timeout: f64,
    pub ack_wait: f64,
    pub logout_wait: f64,
    /// `--quotes both` (the default): a signal quotes bid and ask (the market maker); one: a
    /// marketable IOC per signal.
    pub quotes_both: bool,
    pub hedge_fix_host: String,
    /// The hedge venue's FIX acceptor, a second session; 0: no hedge leg.
    pub hedge_fix_port: u16,
    pub hedge_target: String,
    pub hedge_every: i64,
    /// `--loop tokio`: the tokio loop (tokio_loop.rs), in a build with the `tokio-loop` feature.
    pub tokio: bool,
}

impl Default for Args {
    /// The Python trader's defaults; the two ports have none (0: not given).
    fn default() -> Self {
        Args {
            md_host: "127.0.0.1".into(),
            md_port: 0,
            fix_host: "127.0.0.1".into(),
            fix_port: 0,
            sender: "TICKSCOPE".into(),
            target: "VENUE".into(),
            heartbeat: 30,
            threshold: 0.6,
            qty: 100,
            connect_timeout: 5.0,
            logon_timeout: 5.0,
            ack_wait: 2.0,
            logout_wait: 1.0,
            quotes_both: true,
            hedge_fix_host: "127.0.0.1".into(),
            hedge_fix_port: 0,
            hedge_target: "VENUE2".into(),
            hedge_every: 4,
            tokio: false,
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<Args>),
    /// `-h`/`--help`: print USAGE and exit 0.
    Help,
}

/// Options in order; the first mistake is the error. `argv` excludes the program name.
pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Command, Error> {
    let mut a = Args::default();
    let mut argv = argv.into_iter();
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help);
        }
        let value = match inline.or_else(|| argv.next()) {
            Some(v) => v,
            None => return Err(Error::MissingValue { flag }),
        };
        set(&mut a, flag, value)?;
    }
    if a.md_port == 0 || a.fix_port == 0 {
        return Err(Error::MissingPorts);
    }
    if a.hedge_fix_port != 0 && a.hedge_target == a.target {
        return Err(Error::SameVenue { target: a.target });
    }
    Ok(Command::Run(Box::new(a)))
}

fn set(a: &mut Args, flag: String, value: String) -> Result<(), Error> {
    let bad = |expected: &'static str| Error::BadValue { flag: flag.clone(), value: value.clone(), expected };
    match flag.as_str() {
        "--md-host" => a.md_host = value,
        "--md-port" => a.md_port = port(&value).ok_or_else(|| bad("a port number"))?,
        "--fix-host" => a.fix_host = value,
        "--fix-port" => a.fix_port = port(&value).ok_or_else(|| bad("a port number"))?,
        "--sender-comp-id" => a.sender = value,
        "--target-comp-id" => a.target = value,
        "--heartbeat" => a.heartbeat = positive(&value).ok_or_else(|| bad("a positive integer"))?,
        "--threshold" => a.threshold = finite(&value).ok_or_else(|| bad("a number"))?,
        "--qty" => a.qty = positive(&value).ok_or_else(|| bad("a positive integer"))?,
        "--connect-timeout" => a.connect_timeout = seconds(&value).ok_or_else(|| bad("seconds"))?,
        "--logon-timeout" => a.logon_timeout = seconds(&value).ok_or_else(|| bad("seconds"))?,
        "--ack-wait" => a.ack_wait = seconds(&value).ok_or_else(|| bad("seconds"))?,
        "--logout-wait" => a.logout_wait = seconds(&value).ok_or_else(|| bad("seconds"))?,
        "--quotes" if value == "one" || value == "both" => a.quotes_both = value == "both",
        "--quotes" => return Err(bad("one or both")),
        "--hedge-fix-host" => a.hedge_fix_host = value,
        "--hedge-fix-port" => a.hedge_fix_port = port(&value).ok_or_else(|| bad("a port number"))?,
        "--hedge-target-comp-id" => a.hedge_target = value,
        "--hedge-every" => a.hedge_every = positive(&value).ok_or_else(|| bad("a positive integer"))?,
        "--feed" if value == "itch" => {}
        "--feed" => {
            return Err(Error::Unsupported { flag: "--feed", value, instead: "reads the ITCH feed only" })
        }
        "--loop" if value == "busy" => a.tokio = false,
        "--loop" if value == "tokio" && cfg!(feature = "tokio-loop") => a.tokio = true,
        "--loop" => return Err(Error::Unsupported { flag: "--loop", value, instead: LOOPS }),
        "--ws-url" | "--symbols" => {} // WebSocket feed options of the Python trader: unused here
        _ => return Err(Error::UnknownOption { flag }),
    }
    Ok(())
}

/// What `--loop` takes in this build: the tokio loop is built from tokio/Cargo.toml (tokio is a
/// dependency there only, so this crate's default build stays std-only and offline).
const LOOPS: &str = if cfg!(feature = "tokio-loop") {
    "runs the busy or tokio loop only"
} else {
    "busy-polls only in this build (--loop tokio: build pipeline/rust_trader/tokio/Cargo.toml)"
};

fn port(v: &str) -> Option<u16> {
    v.parse().ok()
}

fn positive(v: &str) -> Option<i64> {
    v.parse().ok().filter(|n| *n > 0)
}

fn finite(v: &str) -> Option<f64> {
    v.parse().ok().filter(|x: &f64| x.is_finite())
}

fn seconds(v: &str) -> Option<f64> {
    finite(v).filter(|x| *x >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::USAGE;

    fn run(argv: &[&str]) -> Result<Command, Error> {
        parse(argv.iter().map(|s| s.to_string()))
    }

    fn error(argv: &[&str]) -> String {
        let line = run(argv).expect_err("an error").to_string();
        assert!(!line.contains('\n'), "one line: {:?}", line);
        line
    }

    #[test]
    fn the_two_ports_are_enough_and_the_rest_has_the_python_traders_defaults() {
        let got = run(&["--md-port", "5001", "--fix-port=5002"]).unwrap();
        assert_eq!(got, Command::Run(Box::new(Args { md_port: 5001, fix_port: 5002, ..Args::default() })));
    }

    #[test]
    fn run_bare_it_is_the_market_maker_and_quotes_one_is_one_order_per_signal() {
        let bare = |extra: &[&str]| match run(&[&["--md-port", "1", "--fix-port", "2"][..], extra].concat()) {
            Ok(Command::Run(args)) => args.quotes_both,
            other => panic!("not a run: {:?}", other),
        };
        assert!(bare(&[]), "the bundled default quotes both sides, as profile runs it");
        assert!(!bare(&["--quotes", "one"]));
    }

    #[test]
    fn every_option_takes_its_value_after_a_space_or_an_equals_sign() {
        let argv = [
            "--md-host=0.0.0.0",
            "--md-port",
            "1",
            "--fix-host",
            "venue.local",
            "--fix-port=2",
            "--sender-comp-id",
            "ME",
            "--target-comp-id=X=Y",
            "--heartbeat",
            "5",
            "--threshold=-0.25",
            "--qty",
            "7",
            "--connect-timeout",
            "0.5",
            "--logon-timeout=1.5",
            "--ack-wait",
            "0",
            "--logout-wait",
            "3",
            "--feed=itch",
            "--loop",
            "busy",
            "--ws-url",
            "ws://ignored",
            "--symbols=ignored",
            "--quotes",
            "one",
            "--hedge-fix-host=h2",
            "--hedge-fix-port",
            "3",
            "--hedge-target-comp-id",
            "V2",
            "--hedge-every=2",
        ];
        let want = Args {
            md_host: "0.0.0.0".into(),
            md_port: 1,
            fix_host: "venue.local".into(),
            fix_port: 2,
            sender: "ME".into(),
            target: "X=Y".into(),
            heartbeat: 5,
            threshold: -0.25,
            qty: 7,
            connect_timeout: 0.5,
            logon_timeout: 1.5,
            ack_wait: 0.0,
            logout_wait: 3.0,
            quotes_both: false,
            hedge_fix_host: "h2".into(),
            hedge_fix_port: 3,
            hedge_target: "V2".into(),
            hedge_every: 2,
            tokio: false,
        };
        assert_eq!(run(&argv).unwrap(), Command::Run(Box::new(want)));
    }

    #[test]
    fn a_bad_value_names_the_option_the_value_and_what_it_must_be() {
        let ports = ["--md-port", "1", "--fix-port", "2"];
        let with = |extra: &[&str]| error(&[&ports[..], extra].concat());
        assert_eq!(error(&["--md-port", "99999"]), r#"--md-port "99999" is not a port number"#);
        assert_eq!(error(&["--fix-port=x"]), r#"--fix-port "x" is not a port number"#);
        assert_eq!(with(&["--heartbeat", "0"]), r#"--heartbeat "0" is not a positive integer"#);
        assert_eq!(with(&["--qty", "1.5"]), r#"--qty "1.5" is not a positive integer"#);
        assert_eq!(with(&["--threshold", "nan"]), r#"--threshold "nan" is not a number"#);
        assert_eq!(with(&["--connect-timeout", "-1"]), r#"--connect-timeout "-1" is not seconds"#);
        assert_eq!(with(&["--logon-timeout", "inf"]), r#"--logon-timeout "inf" is not seconds"#);
        assert_eq!(with(&["--ack-wait", ""]), r#"--ack-wait "" is not seconds"#);
        assert_eq!(with(&["--logout-wait=soon"]), r#"--logout-wait "soon" is not seconds"#);
        assert_eq!(with(&["--quotes", "all"]), r#"--quotes "all" is not one or both"#);
        assert_eq!(with(&["--hedge-every", "0"]), r#"--hedge-every "0" is not a positive integer"#);
        assert_eq!(
            with(&["--hedge-fix-port", "3", "--hedge-target-comp-id", "VENUE"]),
            "--hedge-target-comp-id must differ from --target-comp-id (VENUE): it names the venue"
        );
    }

    #[test]
    fn what_the_rust_trader_does_not_do_is_said_as_such() {
        assert_eq!(error(&["--feed", "ws"]), "--feed ws: the Rust trader reads the ITCH feed only");
        assert_eq!(error(&["--loop=asyncio"]), format!("--loop asyncio: the Rust trader {}", LOOPS));
        let tokio = run(&["--md-port", "1", "--fix-port", "2", "--loop", "tokio"]);
        if cfg!(feature = "tokio-loop") {
            assert!(matches!(tokio, Ok(Command::Run(a)) if a.tokio));
        } else {
            assert_eq!(
                tokio.expect_err("no tokio loop").to_string(),
                "--loop tokio: the Rust trader busy-polls only in this build (--loop tokio: build pipeline/rust_trader/tokio/Cargo.toml)"
            );
        }
    }

    #[test]
    fn unknown_missing_and_required_options_come_with_the_usage() {
        assert_eq!(error(&["--md-port", "1", "--bogus", "x"]), format!("unknown option --bogus ({})", USAGE));
        assert_eq!(error(&["--md-port"]), format!("--md-port needs a value ({})", USAGE));
        assert_eq!(error(&["--md-port", "1"]), format!("--md-port and --fix-port are required ({})", USAGE));
        assert_eq!(error(&[]), format!("--md-port and --fix-port are required ({})", USAGE));
    }

    #[test]
    fn help_wins_over_what_follows_but_not_over_an_earlier_mistake() {
        assert_eq!(run(&["--help"]).unwrap(), Command::Help);
        assert_eq!(run(&["--md-port", "1", "-h", "--bogus"]).unwrap(), Command::Help);
        assert!(run(&["--qty", "0", "--help"]).is_err());
    }
}
