//! Typed probe points: an enum declared once with [`points!`](crate::points), whose variants are
//! the point ids, so a point of another enum or a bare number does not compile.

use crate::point::Point;

/// The probe points of a [`Probe`](crate::Probe): implemented by the enum [`points!`](crate::points)
/// generates (variant `k` is point id `k`).
///
/// ```
/// use tickscope_probe::{points, Points};
///
/// points! {
///     /// The feed's points.
///     pub enum Feed { Rx = "md.rx", Decoded = tickscope_probe::Point::new("md.decoded").stage("feed") }
/// }
/// assert_eq!(Feed::Decoded.id(), 1);
/// assert_eq!(Feed::Decoded.name(), "md.decoded");
/// assert_eq!(Feed::from_name("md.decoded"), Some(Feed::Decoded));
/// assert_eq!(Feed::from_id(2), None);
/// assert_eq!(Feed::declared()[1].stage, "feed");
/// ```
pub trait Points: Copy + Send + Sync + 'static {
    /// Every point, in id order: what the ring's point table declares.
    fn declared() -> Vec<Point<'static>>;
    /// The point id: the variant's position.
    fn id(self) -> u32;
    /// The point of id `id`, if declared.
    fn from_id(id: u32) -> Option<Self>;
    /// The point named `name`, if declared (a scan of the declarations: call it off the hot path).
    fn from_name(name: &str) -> Option<Self> {
        let position = Self::declared().iter().position(|p| p.name == name)?;
        Self::from_id(position as u32)
    }
    /// The point's name as declared.
    fn name(self) -> &'static str {
        Self::declared()[self.id() as usize].name
    }
}

/// Declares probe points as an enum: each variant is `Name = point`, where `point` is a name
/// (`"md.rx"`) or a [`Point`](crate::Point) built with its stage, clock, trade and leg. The enum
/// implements [`Points`](crate::Points); a [`Probe`](crate::Probe) of it records only its variants.
///
/// ```
/// use tickscope_probe::{points, Point};
///
/// points! {
///     /// Where a tick goes in the trader.
///     pub enum Stage {
///         Rx = "md.rx",
///         Decoded = Point::new("md.decoded").stage("feed"),
///         Sent = Point::new("order.tx").stage("send").trade(),
///     }
/// }
/// assert_eq!(Stage::Sent as u32, 2);
/// ```
///
/// A point of another enum, or a bare id, is refused at compile time:
///
/// ```compile_fail
/// use tickscope_probe::{points, Probe};
///
/// points! { enum Feed { Rx = "md.rx" } }
/// points! { enum Orders { Tx = "order.tx" } }
/// let probe = Probe::<Feed>::new("feed").unwrap();
/// probe.record(Orders::Tx, 42); // error: expected `Feed`, found `Orders`
/// ```
///
/// ```compile_fail
/// use tickscope_probe::{points, Probe};
///
/// points! { enum Feed { Rx = "md.rx" } }
/// let probe = Probe::<Feed>::new("feed").unwrap();
/// probe.record(7, 42); // error: expected `Feed`, found integer
/// ```
#[macro_export]
macro_rules! points {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $point:expr),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $crate::Points for $name {
            fn declared() -> ::std::vec::Vec<$crate::Point<'static>> {
                ::std::vec![$(::core::convert::Into::<$crate::Point<'static>>::into($point)),+]
            }

            #[inline(always)]
            fn id(self) -> u32 {
                self as u32
            }

            fn from_id(id: u32) -> ::core::option::Option<Self> {
                [$($name::$variant),+].get(id as usize).copied()
            }
        }
    };
}
