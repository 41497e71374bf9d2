//! Orders on the wire awaiting their first answer: what ends the session with exit 3 when some
//! are left, and what an order-session stall is measured against.

use crate::book::IntMap;

/// Orders on the wire awaiting their first answer, by ClOrdID number and by MsgSeqNum (a
/// session-level Reject and a GapFill name the number, an ExecutionReport the ClOrdID).
#[derive(Default)]
pub struct InFlight {
    by_id: IntMap<u64, u64>,         // ClOrdID number -> MsgSeqNum
    by_seq: IntMap<u64, (u64, u64)>, // MsgSeqNum -> (ClOrdID number, monotonic ns sent)
    stalled: bool,                   // warned about the current stall; cleared once every order is answered
}

impl InFlight {
    pub fn sent(&mut self, id: u64, msg_seq: u64, now_ns: u64) {
        self.by_id.insert(id, msg_seq);
        self.by_seq.insert(msg_seq, (id, now_ns));
    }

    /// Its MsgSeqNum, if the order was awaiting an answer.
    pub fn answered(&mut self, id: u64) -> Option<u64> {
        let msg_seq = self.by_id.remove(&id)?;
        self.by_seq.remove(&msg_seq);
        Some(msg_seq)
    }

    /// The ClOrdID number of the order sent as `msg_seq`, if it was awaiting an answer.
    pub fn rejected(&mut self, msg_seq: u64) -> Option<u64> {
        let (id, _) = self.by_seq.remove(&msg_seq)?;
        self.by_id.remove(&id).map(|_| id)
    }

    /// (MsgSeqNum, ClOrdID number) of the orders sent under numbers in `ranges` ([first, next)),
    /// in number order, no longer awaited.
    pub fn lost_in(&mut self, ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let covered = |s: u64| ranges.iter().any(|&(a, b)| a <= s && s < b);
        let mut lost: Vec<(u64, u64)> =
            self.by_seq.iter().filter(|(s, _)| covered(**s)).map(|(s, v)| (*s, v.0)).collect();
        lost.sort_unstable();
        for &(seq, id) in &lost {
            self.by_seq.remove(&seq);
            self.by_id.remove(&id);
        }
        lost
    }

    /// True once per stall: the oldest order has waited more than `wait_s` and the venue has
    /// sent something since it went out.
    pub fn newly_stalled(&mut self, now_s: f64, wait_s: f64, last_rx_s: f64) -> bool {
        if self.by_seq.is_empty() {
            self.stalled = false;
            return false;
        }
        if self.stalled {
            return false;
        }
        let oldest_sent = match self.by_seq.iter().min_by_key(|(s, _)| **s) {
            Some((_, v)) => v.1,
            None => return false,
        };
        let sent_s = oldest_sent as f64 / 1e9;
        self.stalled = now_s - sent_s > wait_s && last_rx_s > sent_s;
        self.stalled
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_answered_once_by_its_clordid_or_its_msg_seq_num() {
        let mut f = InFlight::default();
        f.sent(1, 10, 0);
        f.sent(2, 11, 0);
        f.sent(3, 12, 0);
        assert_eq!((f.answered(1), f.answered(1)), (Some(10), None));
        assert_eq!((f.rejected(11), f.rejected(11), f.answered(2)), (Some(2), None, None));
        assert_eq!((f.rejected(99), f.len()), (None, 1));
    }

    #[test]
    fn a_gap_fill_takes_the_orders_under_its_numbers_in_number_order() {
        let mut f = InFlight::default();
        for (id, seq) in [(1, 10), (2, 11), (3, 12), (4, 14), (5, 20)] {
            f.sent(id, seq, 0);
        }
        assert_eq!(f.lost_in(&[(14, 21), (11, 13)]), vec![(11, 2), (12, 3), (14, 4), (20, 5)]);
        assert_eq!((f.len(), f.answered(1)), (1, Some(10)));
        assert!(f.is_empty() && f.lost_in(&[(0, 100)]).is_empty());
    }

    #[test]
    fn a_stall_is_reported_once_and_only_while_the_venue_is_still_sending() {
        let mut f = InFlight::default();
        f.sent(1, 10, 1_000_000_000); // sent at 1 s
        assert!(!f.newly_stalled(2.0, 2.0, 1.5)); // waited 1 s of 2
        assert!(!f.newly_stalled(4.0, 2.0, 0.5)); // the venue has been silent since before the order
        assert!(f.newly_stalled(4.0, 2.0, 3.0));
        assert!(!f.newly_stalled(5.0, 2.0, 4.5)); // the same stall
        f.answered(1);
        assert!(!f.newly_stalled(6.0, 2.0, 5.5));
        f.sent(2, 11, 6_000_000_000);
        assert!(f.newly_stalled(9.0, 2.0, 8.0)); // a new stall, a new warning
    }
}
