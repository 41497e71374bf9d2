//! The trader's counters and the stats file the collector reads each second
//! (`<ring dir>/trader.<pid>.stats.json`): the same keys, in the same order, as pipeline/trader.py
//! writes, so `meta.json` holds one shape for both traders.

use crate::itch::FeedStats;
use crate::oms::OrderManager;
use crate::risk::{RiskChecker, REJECT_NAMES};
use crate::session::SessionStats;
use std::fmt::Display;
use std::path::Path;

/// What happened to the orders on the wire; the OMS and risk keep the rest.
#[derive(Debug, Default, Clone)]
pub struct OrderCounts {
    pub sent: u64,
    /// ExecutionReports of an order's first answer other than a reject.
    pub acked: u64,
    /// Rejected by the venue: an ExecutionReport 150=8 or a session-level Reject(35=3).
    pub rejected: u64,
    /// Sent under numbers we gap-filled at the venue's ResendRequest: never delivered.
    pub gap_filled: u64,
    /// Times the oldest unanswered order waited past --ack-wait while the venue kept sending.
    pub stalls: u64,
}

/// One FIX session (venue) of the trader: `venues` in the stats file.
pub struct VenueStats<'a> {
    pub name: &'a str,
    pub role: &'static str,
    pub port: u16,
    pub in_flight_at_end: usize,
}

/// One stats file's worth of counters, borrowed from where each is kept.
pub struct Stats<'a> {
    pub feed: &'a FeedStats,
    pub unknown_order_refs: u64,
    pub orders: &'a OrderCounts,
    pub in_flight: usize,
    /// Orders sent per leg kind (`bid`, `ask` or `taker`, `hedge`), in that order.
    pub by_leg: &'a [(&'static str, u64)],
    pub quotes: &'static str,
    pub quoted_signals: u64,
    pub hedges_due: u64,
    pub hedges_held_by_risk: u64,
    pub hedge_every: i64,
    pub venues: Vec<VenueStats<'a>>,
    pub oms: &'a OrderManager,
    pub risk: &'a RiskChecker,
    pub signals_held_back: u64,
    pub fix: &'a SessionStats,
    /// The hedge venue's session, when there is one.
    pub fix_hedge: Option<&'a SessionStats>,
    pub kernel_rx_stamps: bool,
    pub kernel_tx_stamps: bool,
    pub tx_stamps_unmatched: usize,
    /// `busy` or `tokio`.
    pub loop_kind: &'static str,
}

impl Stats<'_> {
    pub fn to_json(&self) -> String {
        let f = self.feed;
        let mut feed = Object::new();
        feed.value("packets", f.packets)
            .value("messages", f.messages)
            .value("skipped", f.skipped)
            .value("heartbeats", f.heartbeats)
            .value("gaps", f.gaps)
            .value("gap_messages", f.gap_messages)
            .value("stale_packets", f.stale_packets)
            .value("malformed_packets", f.malformed_packets)
            .value("malformed_messages", f.malformed_messages)
            .value("end_of_session", f.end_of_session);
        let mut risk = Object::new();
        for (name, count) in REJECT_NAMES.iter().zip(self.risk.counts.iter()).skip(1) {
            risk.value(name, count);
        }
        let kill = if self.risk.killed { json_str(&self.risk.kill_reason) } else { "null".into() };
        let mut by_leg = Object::new();
        for (kind, n) in self.by_leg {
            by_leg.value(kind, n);
        }
        let mut venues = Object::new();
        for v in &self.venues {
            let mut one = Object::new();
            one.raw("role", &json_str(v.role))
                .value("port", v.port)
                .value("in_flight_at_end", v.in_flight_at_end);
            venues.raw(v.name, &one.end());
        }
        let o = self.orders;
        let mut top = Object::new();
        top.raw("trader", "\"rust\"")
            .raw("feed", &feed.end())
            // the Python trader's top-level names for the feed's gaps, kept for meta.json's counters
            .value("feed_gaps", f.gaps)
            .value("feed_gap_messages", f.gap_messages)
            .value("unknown_order_refs", self.unknown_order_refs)
            .value("orders_sent", o.sent)
            .value("orders_acked", o.acked)
            .value("orders_rejected", o.rejected)
            .value("orders_in_flight_at_end", self.in_flight)
            .raw("orders_by_leg", &by_leg.end())
            .raw("quotes", &json_str(self.quotes))
            .value("quoted_signals", self.quoted_signals)
            .value("hedges_due", self.hedges_due)
            .value("hedges_held_by_risk", self.hedges_held_by_risk)
            .value("hedge_every", self.hedge_every)
            .raw("venues", &venues.end())
            .value("orders_gap_filled", o.gap_filled)
            .value("order_stalls", o.stalls)
            .value("fills", self.oms.fills)
            .raw("risk_rejects", &risk.end())
            .value("signals_held_back", self.signals_held_back)
            .raw("kill_switch", &kill)
            .value("oms_invalid_transitions", self.oms.invalid_transitions)
            .value("oms_unknown_reports", self.oms.unknown_reports)
            .raw("fix", &session_json(self.fix));
        if let Some(hedge) = self.fix_hedge {
            top.raw("fix_hedge", &session_json(hedge));
        }
        top.value("kernel_rx_stamps", self.kernel_rx_stamps)
            .value("kernel_tx_stamps", self.kernel_tx_stamps)
            .raw("loop", &json_str(self.loop_kind))
            .value("tx_stamps_unmatched", self.tx_stamps_unmatched);
        top.end()
    }
}

fn session_json(s: &SessionStats) -> String {
    let mut fix = Object::new();
    fix.value("messages_in", s.messages_in)
        .value("messages_out", s.messages_out)
        .value("rejects_sent", s.rejects_sent)
        .value("rejects_received", s.rejects_received)
        .value("garbage", s.garbage)
        .value("gaps", s.gaps)
        .value("resend_requests_sent", s.resend_requests_sent)
        .value("seq_too_low", s.seq_too_low)
        .value("test_requests_sent", s.test_requests_sent)
        .value("heartbeats_sent", s.heartbeats_sent)
        .value("invalid_fields", s.invalid_fields)
        .value("queued", s.queued)
        .value("poss_dup_ignored", s.poss_dup_ignored)
        .value("resend_requests_received", s.resend_requests_received)
        .value("gap_fills_sent", s.gap_fills_sent)
        .value("messages_resent", s.messages_resent)
        .value("gap_fills_received", s.gap_fills_received)
        .value("sequence_resets_received", s.sequence_resets_received)
        .value("seq_num_resets", s.seq_num_resets)
        .value("peer_expects", s.peer_expects)
        .raw("last_error", &json_str(&s.last_error));
    fix.end()
}

/// Written aside and renamed: the collector never reads half a file. A failed write leaves the
/// last complete one (the stats are a view, the run goes on).
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// A JSON object written as Python's `json.dumps` does by default (`", "` and `": "`).
struct Object(String);

impl Object {
    fn new() -> Self {
        Object(String::from("{"))
    }

    /// A number or a boolean: their `Display` is their JSON.
    fn value(&mut self, key: &str, v: impl Display) -> &mut Self {
        self.raw(key, &v.to_string())
    }

    fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        if self.0.len() > 1 {
            self.0.push_str(", ");
        }
        self.0.push_str(&json_str(key));
        self.0.push_str(": ");
        self.0.push_str(json);
        self
    }

    fn end(&mut self) -> String {
        let mut out = std::mem::take(&mut self.0);
        out.push('}');
        out
    }
}

pub fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::RiskLimits;

    /// Every counter a different number, so a key bound to the wrong counter shows.
    fn numbered() -> (FeedStats, OrderCounts, OrderManager, RiskChecker, SessionStats) {
        let feed = FeedStats {
            packets: 1,
            messages: 2,
            skipped: 3,
            heartbeats: 4,
            gaps: 5,
            gap_messages: 6,
            stale_packets: 7,
            malformed_packets: 8,
            malformed_messages: 9,
            end_of_session: true,
        };
        let orders = OrderCounts { sent: 11, acked: 12, rejected: 13, gap_filled: 14, stalls: 15 };
        let mut oms = OrderManager::default();
        oms.fills = 16;
        oms.invalid_transitions = 17;
        oms.unknown_reports = 18;
        let mut risk = RiskChecker::new(RiskLimits::default());
        risk.counts = [0, 21, 22, 23, 24, 25, 26, 27, 28, 29];
        let fix = SessionStats {
            messages_in: 31,
            messages_out: 32,
            rejects_sent: 33,
            rejects_received: 34,
            garbage: 35,
            gaps: 36,
            resend_requests_sent: 37,
            seq_too_low: 38,
            test_requests_sent: 39,
            heartbeats_sent: 40,
            invalid_fields: 41,
            queued: 42,
            poss_dup_ignored: 43,
            resend_requests_received: 44,
            gap_fills_sent: 45,
            messages_resent: 46,
            gap_fills_received: 47,
            sequence_resets_received: 48,
            seq_num_resets: 49,
            peer_expects: 50,
            last_error: "CheckSum 012 does not match".into(),
        };
        (feed, orders, oms, risk, fix)
    }

    fn json(
        feed: &FeedStats,
        orders: &OrderCounts,
        oms: &OrderManager,
        risk: &RiskChecker,
        fix: &SessionStats,
    ) -> String {
        let stats = Stats {
            feed,
            unknown_order_refs: 10,
            orders,
            in_flight: 19,
            by_leg: &[("bid", 5), ("ask", 4), ("hedge", 2)],
            quotes: "both",
            quoted_signals: 8,
            hedges_due: 2,
            hedges_held_by_risk: 0,
            hedge_every: 4,
            venues: vec![
                VenueStats { name: "VENUE", role: "primary", port: 7001, in_flight_at_end: 19 },
                VenueStats { name: "VENUE2", role: "hedge", port: 7002, in_flight_at_end: 0 },
            ],
            oms,
            risk,
            signals_held_back: 20,
            fix,
            fix_hedge: None,
            kernel_rx_stamps: true,
            kernel_tx_stamps: false,
            tx_stamps_unmatched: 51,
            loop_kind: "busy",
        };
        stats.to_json()
    }

    #[test]
    fn every_counter_sits_under_the_python_traders_key_in_its_order() {
        let (feed, orders, oms, risk, fix) = numbered();
        let want = concat!(
            r#"{"trader": "rust", "feed": {"packets": 1, "messages": 2, "skipped": 3, "heartbeats": 4, "gaps": 5, "#,
            r#""gap_messages": 6, "stale_packets": 7, "malformed_packets": 8, "malformed_messages": 9, "#,
            r#""end_of_session": true}, "feed_gaps": 5, "feed_gap_messages": 6, "unknown_order_refs": 10, "#,
            r#""orders_sent": 11, "orders_acked": 12, "orders_rejected": 13, "orders_in_flight_at_end": 19, "#,
            r#""orders_by_leg": {"bid": 5, "ask": 4, "hedge": 2}, "quotes": "both", "quoted_signals": 8, "#,
            r#""hedges_due": 2, "hedges_held_by_risk": 0, "hedge_every": 4, "venues": {"VENUE": {"role": "primary", "#,
            r#""port": 7001, "in_flight_at_end": 19}, "VENUE2": {"role": "hedge", "port": 7002, "in_flight_at_end": 0}}, "#,
            r#""orders_gap_filled": 14, "order_stalls": 15, "fills": 16, "risk_rejects": {"KILL_SWITCH": 21, "#,
            r#""RESTRICTED": 22, "MAX_QTY": 23, "MAX_NOTIONAL": 24, "PRICE_COLLAR": 25, "MSG_RATE": 26, "#,
            r#""DUPLICATE": 27, "MAX_POSITION": 28, "CREDIT": 29}, "signals_held_back": 20, "kill_switch": null, "#,
            r#""oms_invalid_transitions": 17, "oms_unknown_reports": 18, "fix": {"messages_in": 31, "#,
            r#""messages_out": 32, "rejects_sent": 33, "rejects_received": 34, "garbage": 35, "gaps": 36, "#,
            r#""resend_requests_sent": 37, "seq_too_low": 38, "test_requests_sent": 39, "heartbeats_sent": 40, "#,
            r#""invalid_fields": 41, "queued": 42, "poss_dup_ignored": 43, "resend_requests_received": 44, "#,
            r#""gap_fills_sent": 45, "messages_resent": 46, "gap_fills_received": 47, "#,
            r#""sequence_resets_received": 48, "seq_num_resets": 49, "peer_expects": 50, "#,
            r#""last_error": "CheckSum 012 does not match"}, "kernel_rx_stamps": true, "#,
            r#""kernel_tx_stamps": false, "loop": "busy", "tx_stamps_unmatched": 51}"#
        );
        assert_eq!(json(&feed, &orders, &oms, &risk, &fix), want);
    }

    #[test]
    fn the_kill_reason_and_the_last_error_are_json_strings_whatever_they_hold() {
        let (feed, orders, oms, mut risk, mut fix) = numbered();
        risk.kill("venue said \"no\" \\ twice\n\u{1}é");
        fix.last_error = "tab\there".into();
        let text = json(&feed, &orders, &oms, &risk, &fix);
        assert!(text.contains(r#""kill_switch": "venue said \"no\" \\ twice\u000a\u0001é","#), "{}", text);
        assert!(text.contains(r#""last_error": "tab\u0009here"}"#), "{}", text);
    }

    #[test]
    fn the_stats_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("tickscope-trader-stats-test.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trader.1.stats.json");
        write_atomically(&path, "{\"a\": 1}");
        write_atomically(&path, "{\"a\": 2}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\": 2}");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["trader.1.stats.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
