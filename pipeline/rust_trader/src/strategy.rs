//! The imbalance strategy (pipeline/strategy.py): the signal that turns a book update into an
//! order intent. Time is passed in, never read here.

use crate::book::{Book, IntMap};

/// Top-of-book imbalance -> a marketable IOC limit order, with a cooldown per symbol and a soft
/// position limit of its own (risk stays the backstop, not the steady state).
pub struct ImbalanceStrategy {
    pub threshold: f64,
    pub qty: i64,
    pub cooldown_ns: u64,
    last: IntMap<u16, u64>,
    pub signals: u64,
    pub soft_position: i64,
    pub held_back: u64,
}

impl ImbalanceStrategy {
    pub fn new(threshold: f64, qty: i64, soft_position: i64) -> Self {
        ImbalanceStrategy {
            threshold,
            qty,
            cooldown_ns: 5_000_000,
            last: IntMap::default(),
            signals: 0,
            soft_position,
            held_back: 0,
        }
    }

    /// (side, qty, limit price) to send, or None.
    #[inline]
    pub fn on_book(
        &mut self,
        book: &Book,
        positions: &IntMap<u16, i64>,
        now_ns: u64,
    ) -> Option<(u8, i64, i64)> {
        let (bid, ask) = (book.bids.best()?, book.asks.best()?);
        let (bsz, asz) = (bid.shares, ask.shares);
        if bsz + asz <= 0 {
            return None; // zero-share adds from a hostile feed: no imbalance to read
        }
        let imbalance = (bsz - asz) as f64 / (bsz + asz) as f64;
        if -self.threshold < imbalance && imbalance < self.threshold {
            return None;
        }
        if let Some(&last) = self.last.get(&book.locate) {
            if now_ns.saturating_sub(last) < self.cooldown_ns {
                return None;
            }
        }
        let buy = imbalance > 0.0;
        if self.soft_position != 0 {
            let after =
                positions.get(&book.locate).copied().unwrap_or(0) + if buy { self.qty } else { -self.qty };
            if after.abs() > self.soft_position {
                self.held_back += 1;
                return None;
            }
        }
        self.last.insert(book.locate, now_ns);
        self.signals += 1;
        Some(if buy { (b'B', self.qty, ask.price as i64) } else { (b'S', self.qty, bid.price as i64) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_follows_the_imbalance_with_a_cooldown() {
        let mut b = Book::new(1, "AAPL".into());
        b.add(1, b'B', 1_000_000, 900);
        b.add(2, b'S', 1_000_100, 100);
        let mut s = ImbalanceStrategy::new(0.6, 100, 40_000);
        let pos = IntMap::default();
        assert_eq!(s.on_book(&b, &pos, 0), Some((b'B', 100, 1_000_100)));
        assert_eq!(s.on_book(&b, &pos, 1_000_000), None); // cooldown
        b.add(3, b'S', 1_000_100, 5_000);
        assert_eq!(s.on_book(&b, &pos, 10_000_000), Some((b'S', 100, 1_000_000)));
        b.add(4, b'B', 1_000_000, 4_200);
        assert_eq!(s.on_book(&b, &pos, 20_000_000), None); // balanced
        let mut full = IntMap::default();
        full.insert(1u16, -39_950i64);
        b.add(5, b'S', 1_000_100, 100_000);
        assert_eq!(s.on_book(&b, &full, 30_000_000), None);
        assert_eq!(s.held_back, 1);
    }
}
