//! Order-level books from ITCH events, aggregated into L2 price levels (pipeline/book.py).
//! Levels are a sorted Vec per side (the touch is an index, a new level one binary search and a
//! short memmove); unknown order references are counted, never fatal.

use crate::itch::Msg;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiplicative hash for integer keys: SipHash costs more than the book update it guards.
#[derive(Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(n as u64)
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64)
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64)
    }
}

pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub price: u32,
    pub shares: i64,
    pub orders: i64,
}

#[derive(Debug, Default)]
pub struct Side {
    levels: Vec<Level>, // ascending price: the best bid is the last, the best ask the first
    descending: bool,
}

impl Side {
    fn new(descending: bool) -> Self {
        Side { levels: Vec::with_capacity(64), descending }
    }

    fn add(&mut self, price: u32, shares: u32) {
        match self.levels.binary_search_by_key(&price, |l| l.price) {
            Ok(i) => {
                self.levels[i].shares += shares as i64;
                self.levels[i].orders += 1;
            }
            Err(i) => self.levels.insert(i, Level { price, shares: shares as i64, orders: 1 }),
        }
    }

    fn reduce(&mut self, price: u32, shares: u32, removes_order: bool) {
        if let Ok(i) = self.levels.binary_search_by_key(&price, |l| l.price) {
            let l = &mut self.levels[i];
            l.shares -= shares as i64;
            if removes_order {
                l.orders -= 1;
            }
            if l.orders <= 0 || l.shares <= 0 {
                self.levels.remove(i);
            }
        } // else emptied already (a hostile feed's zero-share adds or reused refs)
    }

    pub fn best(&self) -> Option<&Level> {
        if self.descending {
            self.levels.last()
        } else {
            self.levels.first()
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.levels.len()
    }
}

#[derive(Debug)]
pub struct Book {
    pub locate: u16,
    pub symbol: String,
    pub bids: Side,
    pub asks: Side,
    orders: IntMap<u64, (u8, u32, u32)>, // ref -> (side, price, shares)
}

impl Book {
    pub fn new(locate: u16, symbol: String) -> Self {
        Book { locate, symbol, bids: Side::new(true), asks: Side::new(false), orders: IntMap::default() }
    }

    fn side(&mut self, side: u8) -> &mut Side {
        if side == b'B' {
            &mut self.bids
        } else {
            &mut self.asks
        }
    }

    pub fn add(&mut self, ref_: u64, side: u8, price: u32, shares: u32) {
        self.orders.insert(ref_, (side, price, shares));
        self.side(side).add(price, shares);
    }

    pub fn cancel(&mut self, ref_: u64, shares: u32) -> bool {
        let (side, price, gone, cut) = match self.orders.get_mut(&ref_) {
            None => return false,
            Some(o) => {
                let cut = shares.min(o.2);
                o.2 -= cut;
                (o.0, o.1, o.2 == 0, cut)
            }
        };
        self.side(side).reduce(price, cut, gone);
        if gone {
            self.orders.remove(&ref_);
        }
        true
    }

    pub fn delete(&mut self, ref_: u64) -> bool {
        match self.orders.remove(&ref_) {
            None => false,
            Some((side, price, shares)) => {
                self.side(side).reduce(price, shares, true);
                true
            }
        }
    }

    pub fn replace(&mut self, old: u64, new: u64, shares: u32, price: u32) -> bool {
        let side = match self.orders.get(&old) {
            None => return false,
            Some(o) => o.0,
        };
        self.delete(old);
        self.add(new, side, price, shares);
        true
    }

    pub fn mid(&self) -> Option<f64> {
        match (self.bids.best(), self.asks.best()) {
            (Some(b), Some(a)) => Some((a.price as f64 + b.price as f64) / 2.0),
            _ => None,
        }
    }
}

/// Books by ITCH stock locate.
#[derive(Default)]
pub struct BookSet {
    books: IntMap<u16, Book>,
    symbols: IntMap<u16, String>,
    pub unknown_refs: u64,
}

fn symbol_text(stock: &[u8]) -> String {
    String::from_utf8_lossy(stock).trim().to_string()
}

impl BookSet {
    fn book(&mut self, locate: u16) -> &mut Book {
        let symbols = &self.symbols;
        self.books.entry(locate).or_insert_with(|| {
            Book::new(locate, symbols.get(&locate).cloned().unwrap_or_else(|| locate.to_string()))
        })
    }

    pub fn get(&self, locate: u16) -> Option<&Book> {
        self.books.get(&locate)
    }

    /// Applies one message; the locate of the book it changed, if any.
    pub fn apply(&mut self, m: &Msg<'_>) -> Option<u16> {
        let (locate, ok) = match *m {
            Msg::AddOrder { locate, ref_, side, shares, price, .. } => {
                self.book(locate).add(ref_, side, price, shares);
                return Some(locate);
            }
            Msg::StockDirectory { locate, stock } => {
                let symbol = symbol_text(stock);
                self.symbols.insert(locate, symbol.clone());
                self.book(locate).symbol = symbol;
                return None;
            }
            Msg::Executed { locate, ref_, shares } | Msg::Cancel { locate, ref_, shares } => {
                (locate, self.books.get_mut(&locate).map(|b| b.cancel(ref_, shares)))
            }
            Msg::Delete { locate, ref_ } => (locate, self.books.get_mut(&locate).map(|b| b.delete(ref_))),
            Msg::Replace { locate, old_ref, new_ref, shares, price } => {
                (locate, self.books.get_mut(&locate).map(|b| b.replace(old_ref, new_ref, shares, price)))
            }
            _ => return None,
        };
        match ok {
            Some(true) => Some(locate),
            _ => {
                self.unknown_refs += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(ref_: u64, side: u8, shares: u32, price: u32) -> Msg<'static> {
        Msg::AddOrder { locate: 1, ref_, side, shares, stock: b"AAPL    ", price }
    }

    #[test]
    fn levels_aggregate_and_the_touch_follows() {
        let mut s = BookSet::default();
        s.apply(&Msg::StockDirectory { locate: 1, stock: b"AAPL    " });
        assert_eq!(s.apply(&add(1, b'B', 100, 1_000_000)), Some(1));
        s.apply(&add(2, b'B', 50, 1_000_000));
        s.apply(&add(3, b'B', 70, 999_900));
        s.apply(&add(4, b'S', 30, 1_000_200));
        s.apply(&add(5, b'S', 40, 1_000_100));
        let b = s.get(1).unwrap();
        assert_eq!(b.symbol, "AAPL");
        assert_eq!(b.bids.best(), Some(&Level { price: 1_000_000, shares: 150, orders: 2 }));
        assert_eq!(b.asks.best().unwrap().price, 1_000_100);
        assert_eq!(b.mid(), Some(1_000_050.0));
        s.apply(&Msg::Executed { locate: 1, ref_: 1, shares: 100 });
        s.apply(&Msg::Cancel { locate: 1, ref_: 2, shares: 20 });
        assert_eq!(s.get(1).unwrap().bids.best(), Some(&Level { price: 1_000_000, shares: 30, orders: 1 }));
        s.apply(&Msg::Delete { locate: 1, ref_: 2 });
        assert_eq!(s.get(1).unwrap().bids.best().unwrap().price, 999_900);
        s.apply(&Msg::Replace { locate: 1, old_ref: 5, new_ref: 6, shares: 10, price: 1_000_300 });
        let b = s.get(1).unwrap();
        assert_eq!(b.asks.best(), Some(&Level { price: 1_000_200, shares: 30, orders: 1 }));
        assert_eq!(b.asks.len(), 2);
    }

    #[test]
    fn unknown_refs_and_books_are_counted() {
        let mut s = BookSet::default();
        assert_eq!(s.apply(&Msg::Delete { locate: 9, ref_: 1 }), None);
        s.apply(&add(1, b'B', 100, 1_000_000));
        assert_eq!(s.apply(&Msg::Cancel { locate: 1, ref_: 42, shares: 1 }), None);
        assert_eq!(s.unknown_refs, 2);
        // a zero-share add leaves no level behind once deleted
        s.apply(&add(2, b'S', 0, 1_000_100));
        s.apply(&Msg::Delete { locate: 1, ref_: 2 });
        assert_eq!(s.get(1).unwrap().asks.len(), 0);
    }
}
