//! Pre-trade risk (pipeline/risk.py: the same nine checks, order and reason names). Time is
//! passed in, never read here.

use crate::book::{IntHasher, IntMap};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Ok = 0,
    KillSwitch = 1,
    Restricted = 2,
    MaxQty = 3,
    MaxNotional = 4,
    PriceCollar = 5,
    MsgRate = 6,
    Duplicate = 7,
    MaxPosition = 8,
    Credit = 9,
}

pub const REJECT_NAMES: [&str; 10] = [
    "OK",
    "KILL_SWITCH",
    "RESTRICTED",
    "MAX_QTY",
    "MAX_NOTIONAL",
    "PRICE_COLLAR",
    "MSG_RATE",
    "DUPLICATE",
    "MAX_POSITION",
    "CREDIT",
];

impl Reject {
    pub fn name(self) -> &'static str {
        REJECT_NAMES[self as usize]
    }
}

pub struct RiskLimits {
    pub max_qty: i64,
    pub max_notional: i64,
    pub collar_bps: i64,
    pub max_position: i64,
    pub credit: i64,
    pub max_orders_per_s: usize,
    pub duplicate_window_ns: u64,
    pub restricted: Vec<String>,
}

impl Default for RiskLimits {
    fn default() -> Self {
        RiskLimits {
            max_qty: 10_000,
            max_notional: 5_000_000 * 10_000,
            collar_bps: 500,
            max_position: 50_000,
            credit: 50_000_000 * 10_000,
            max_orders_per_s: 500,
            duplicate_window_ns: 5_000_000,
            restricted: Vec::new(),
        }
    }
}

pub struct RiskChecker {
    pub limits: RiskLimits,
    pub counts: [u64; 10],
    pub killed: bool,
    pub kill_reason: String,
    recent: VecDeque<u64>,
    last_order: HashMap<(u16, u8, i64, i64), u64, BuildHasherDefault<IntHasher>>,
    pub positions: IntMap<u16, i64>,
    pub open_exposure: i64,
    position_value: IntMap<u16, i64>,
}

impl RiskChecker {
    pub fn new(limits: RiskLimits) -> Self {
        RiskChecker {
            limits,
            counts: [0; 10],
            killed: false,
            kill_reason: String::new(),
            recent: VecDeque::with_capacity(1024),
            last_order: HashMap::default(),
            positions: IntMap::default(),
            open_exposure: 0,
            position_value: IntMap::default(),
        }
    }

    pub fn kill(&mut self, reason: &str) {
        self.killed = true;
        self.kill_reason = reason.to_string();
    }

    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &mut self,
        locate: u16,
        symbol: &str,
        side: u8,
        qty: i64,
        price: i64,
        mid: Option<f64>,
        now_ns: u64,
    ) -> Reject {
        let lim = &self.limits;
        let notional = qty * price;
        let r = if self.killed {
            Reject::KillSwitch
        } else if lim.restricted.iter().any(|s| s == symbol) {
            Reject::Restricted
        } else if qty <= 0 || qty > lim.max_qty {
            Reject::MaxQty
        } else if notional > lim.max_notional {
            Reject::MaxNotional
        } else if match mid {
            None => true,
            Some(m) => (price as f64 - m).abs() * 10_000.0 > lim.collar_bps as f64 * m,
        } {
            Reject::PriceCollar
        } else {
            while let Some(&t) = self.recent.front() {
                if t + 1_000_000_000 <= now_ns {
                    self.recent.pop_front();
                } else {
                    break;
                }
            }
            let key = (locate, side, qty, price);
            let signed = if side == b'B' { qty } else { -qty };
            let position = self.positions.get(&locate).copied().unwrap_or(0);
            if self.recent.len() >= lim.max_orders_per_s {
                Reject::MsgRate
            } else if matches!(self.last_order.get(&key), Some(&last) if now_ns.saturating_sub(last) < lim.duplicate_window_ns)
            {
                Reject::Duplicate
            } else if (position + signed).abs() > lim.max_position {
                Reject::MaxPosition
            } else if self.open_exposure + self.position_exposure() + notional > lim.credit {
                Reject::Credit
            } else {
                self.recent.push_back(now_ns);
                self.last_order.insert(key, now_ns);
                self.open_exposure += notional;
                return Reject::Ok;
            }
        };
        self.counts[r as usize] += 1;
        r
    }

    pub fn position_exposure(&self) -> i64 {
        self.position_value.values().sum()
    }

    pub fn on_fill(&mut self, locate: u16, side: u8, qty: i64, price: i64) {
        let p = self.positions.entry(locate).or_insert(0);
        *p += if side == b'B' { qty } else { -qty };
        let pos = *p;
        self.position_value.insert(locate, pos.abs() * price);
        self.open_exposure = (self.open_exposure - qty * price).max(0);
    }

    pub fn on_done(&mut self, leaves_qty: i64, price: i64) {
        self.open_exposure = (self.open_exposure - leaves_qty * price).max(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MID: Option<f64> = Some(1_000_000.0);

    #[test]
    fn each_rule_rejects_with_its_code() {
        let mut r = RiskChecker::new(RiskLimits { restricted: vec!["BAD".into()], ..RiskLimits::default() });
        assert_eq!(r.check(1, "BAD", b'B', 100, 1_000_000, MID, 0), Reject::Restricted);
        assert_eq!(r.check(1, "A", b'B', 0, 1_000_000, MID, 0), Reject::MaxQty);
        assert_eq!(r.check(1, "A", b'B', 10_001, 1_000_000, MID, 0), Reject::MaxQty);
        assert_eq!(r.check(1, "A", b'B', 10_000, 60_000_000, Some(60_000_000.0), 0), Reject::MaxNotional);
        assert_eq!(r.check(1, "A", b'B', 100, 1_060_000, MID, 0), Reject::PriceCollar);
        assert_eq!(r.check(1, "A", b'B', 100, 1_000_000, None, 0), Reject::PriceCollar);
        assert_eq!(r.check(1, "A", b'B', 100, 1_000_000, MID, 0), Reject::Ok);
        assert_eq!(r.check(1, "A", b'B', 100, 1_000_000, MID, 1_000_000), Reject::Duplicate);
        assert_eq!(r.check(1, "A", b'B', 100, 1_000_000, MID, 6_000_000), Reject::Ok);
        r.on_fill(1, b'B', 49_950, 1_000_000);
        assert_eq!(r.check(1, "A", b'B', 100, 1_000_100, MID, 7_000_000), Reject::MaxPosition);
        assert_eq!(r.check(1, "A", b'S', 100, 1_000_100, MID, 7_000_000), Reject::Ok);
        r.kill("test");
        assert_eq!(r.check(1, "A", b'S', 100, 1_000_000, MID, 9_000_000), Reject::KillSwitch);
        let names: Vec<_> = (1..10).filter(|&i| r.counts[i] > 0).map(|i| REJECT_NAMES[i]).collect();
        assert_eq!(
            names,
            [
                "KILL_SWITCH",
                "RESTRICTED",
                "MAX_QTY",
                "MAX_NOTIONAL",
                "PRICE_COLLAR",
                "DUPLICATE",
                "MAX_POSITION"
            ]
        );
    }

    #[test]
    fn message_rate_and_credit() {
        let mut r = RiskChecker::new(RiskLimits { max_orders_per_s: 2, ..RiskLimits::default() });
        assert_eq!(r.check(1, "A", b'B', 100, 1_000_000, MID, 0), Reject::Ok);
        assert_eq!(r.check(1, "A", b'B', 101, 1_000_000, MID, 1), Reject::Ok);
        assert_eq!(r.check(1, "A", b'B', 102, 1_000_000, MID, 2), Reject::MsgRate);
        assert_eq!(r.check(1, "A", b'B', 102, 1_000_000, MID, 1_000_000_001), Reject::Ok);
        let mut r = RiskChecker::new(RiskLimits { credit: 150 * 1_000_000, ..RiskLimits::default() });
        assert_eq!(r.check(1, "A", b'B', 100, 1_000_000, MID, 0), Reject::Ok);
        assert_eq!(r.check(1, "A", b'B', 100, 1_000_001, MID, 0), Reject::Credit);
        r.on_done(100, 1_000_000);
        assert_eq!(r.check(1, "A", b'B', 100, 1_000_001, MID, 0), Reject::Ok);
    }
}
