//! Order state machine (pipeline/oms.py): what the trader believes about each order it sent.

use crate::book::IntMap;
use crate::risk::RiskChecker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    PendingNew,
    New,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
    PendingCancel,
}

fn exec_state(exec_type: &[u8]) -> Option<State> {
    Some(match exec_type {
        b"0" => State::New,
        b"F" | b"2" => State::Filled,
        b"1" => State::PartiallyFilled,
        b"4" | b"C" => State::Cancelled,
        b"8" => State::Rejected,
        b"6" => State::PendingCancel,
        _ => return None,
    })
}

fn allowed(from: State, to: State) -> bool {
    use State::*;
    match from {
        PendingNew => matches!(to, New | Rejected | Cancelled | PartiallyFilled | Filled),
        New => matches!(to, PartiallyFilled | Filled | Cancelled | PendingCancel),
        PartiallyFilled => matches!(to, PartiallyFilled | Filled | Cancelled | PendingCancel),
        PendingCancel => matches!(to, Cancelled | Filled | PartiallyFilled),
        _ => false,
    }
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: u64,
    pub locate: u16,
    symbol: [u8; 16], // inline: no allocation per order
    symbol_len: u8,
    pub side: u8,
    pub qty: i64,
    pub price: i64,
    pub state: State,
    pub filled: i64,
    pub trace_id: u64,
    /// The leg of its tick (0 bid or taker, 1 ask, 2 hedge) and the venue (gateway index) it went to.
    pub leg: u16,
    pub venue: u8,
}

/// Which tick an order belongs to, as which leg, sent to which venue (gateway index).
#[derive(Debug, Clone, Copy)]
pub struct LegOf {
    pub trace_id: u64,
    pub leg: u16,
    pub venue: u8,
}

impl Order {
    pub fn symbol(&self) -> &[u8] {
        &self.symbol[..self.symbol_len as usize]
    }
}

#[derive(Default)]
pub struct OrderManager {
    pub orders: IntMap<u64, Order>,
    next: u64,
    pub invalid_transitions: u64,
    pub unknown_reports: u64,
    pub fills: u64,
}

/// "TS<trace id>.<leg>-<n>" (or "TS<trace id>-<n>", "TS<n>") -> n: ClOrdIDs are numbered, so the
/// map is keyed by the number. Trace id and leg are for the wire (`tickscope wire`, `profile
/// --capture` read them from tag 11).
pub fn clordid_number(c: &[u8]) -> Option<u64> {
    let d = c.strip_prefix(b"TS")?;
    let d = match d.iter().rposition(|&x| x == b'-') {
        Some(dash) if dash > 0 && d[..dash].iter().all(|x| x.is_ascii_digit() || *x == b'.') => {
            &d[dash + 1..]
        }
        _ => d,
    };
    if d.is_empty() || d.len() > 18 || !d.iter().all(|x| x.is_ascii_digit()) {
        return None;
    }
    Some(d.iter().fold(0u64, |v, &x| v * 10 + (x - b'0') as u64))
}

impl OrderManager {
    pub fn new_order(&mut self, locate: u16, symbol: &str, side: u8, qty: i64, price: i64, of: LegOf) -> u64 {
        self.next += 1;
        let id = self.next;
        let mut sym = [0u8; 16];
        let n = symbol.len().min(16);
        sym[..n].copy_from_slice(&symbol.as_bytes()[..n]);
        let o = Order {
            id,
            locate,
            symbol: sym,
            symbol_len: n as u8,
            side,
            qty,
            price,
            state: State::PendingNew,
            filled: 0,
            trace_id: of.trace_id,
            leg: of.leg,
            venue: of.venue,
        };
        self.orders.insert(id, o);
        id
    }

    pub fn on_execution(
        &mut self,
        risk: &mut RiskChecker,
        clordid: &[u8],
        exec_type: &[u8],
        last_qty: i64,
        last_px: i64,
    ) {
        let o = match clordid_number(clordid).and_then(|n| self.orders.get_mut(&n)) {
            None => {
                self.unknown_reports += 1;
                if self.unknown_reports == 1 {
                    eprintln!(
                        "oms: execution report for unknown ClOrdID {} (counted)",
                        crate::fix::brepr(clordid)
                    );
                }
                return;
            }
            Some(o) => o,
        };
        let mut new_state = match exec_state(exec_type) {
            None => return,
            Some(s) => s,
        };
        if new_state == State::Filled && o.filled + last_qty < o.qty {
            new_state = State::PartiallyFilled;
        }
        if !allowed(o.state, new_state) {
            self.invalid_transitions += 1;
            if self.invalid_transitions == 1 {
                eprintln!("oms: invalid transition {:?} -> {:?} (counted)", o.state, new_state);
            }
            return;
        }
        if last_qty != 0 {
            o.filled += last_qty;
            self.fills += 1;
            risk.on_fill(o.locate, o.side, last_qty, if last_px != 0 { last_px } else { o.price });
        }
        o.state = new_state;
        if matches!(new_state, State::Filled | State::Cancelled | State::Rejected) {
            risk.on_done(o.qty - o.filled, o.price);
            let id = o.id;
            self.orders.remove(&id);
        }
    }

    /// Kill switch: every open order to cancel.
    pub fn cancel_all(&mut self) -> Vec<Order> {
        let mut out = vec![];
        for o in self.orders.values_mut() {
            if o.state != State::PendingNew {
                o.state = State::PendingCancel;
            }
            out.push(o.clone());
        }
        out
    }
}

#[cfg(test)]
mod clordid_tests {
    use super::clordid_number;

    #[test]
    fn the_order_number_is_read_after_the_trace_id() {
        assert_eq!(clordid_number(b"TS123456-7"), Some(7));
        assert_eq!(clordid_number(b"TS123456.2-7"), Some(7));
        assert_eq!(clordid_number(b"TS7"), Some(7));
        assert_eq!(clordid_number(b"TS12-"), None);
        assert_eq!(clordid_number(b"TSx-7"), None);
        assert_eq!(clordid_number(b"TS-7"), None);
    }
}
