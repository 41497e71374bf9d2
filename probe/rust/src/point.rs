use crate::clock::ClockDomain;
use crate::error::Error;
use crate::layout;

/// A declared probe point, as Python's `Point`: `stage` names the span that ends here (default:
/// the point's own name), `clock` the domain of its stamps (default: the writer's own clock),
/// `trade` marks where tick-to-trade ends when that is not the last point, `leg` the fan-out (this
/// point and every point after it are stamped once per leg of the trace).
///
/// ```
/// use tickscope_probe::{ClockDomain, Point};
///
/// let rx = Point::new("md.rx").clock(ClockDomain::Realtime); // a kernel receive stamp
/// let tx = Point::new("order.tx").stage("send").trade();
/// assert_eq!((rx.name, tx.stage, tx.trade), ("md.rx", "send", true));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point<'a> {
    /// Dotted `component.event`, unique in the ring.
    pub name: &'a str,
    /// The stage that ends here ("": the point's name).
    pub stage: &'a str,
    /// The clock of its stamps (None: the writer's).
    pub clock: Option<ClockDomain>,
    /// Tick-to-trade ends here.
    pub trade: bool,
    /// The fan-out point.
    pub leg: bool,
}

impl<'a> Point<'a> {
    /// A point named `name`, its stage named after it, on the writer's clock.
    ///
    /// ```
    /// assert_eq!(tickscope_probe::Point::new("md.rx").stage, "");
    /// ```
    pub const fn new(name: &'a str) -> Self {
        Point { name, stage: "", clock: None, trade: false, leg: false }
    }

    /// Names the stage that ends at this point.
    ///
    /// ```
    /// assert_eq!(tickscope_probe::Point::new("md.decoded").stage("feed").stage, "feed");
    /// ```
    pub const fn stage(self, stage: &'a str) -> Self {
        Point { stage, ..self }
    }

    /// Stamps of this point come from another clock, e.g. `Realtime` for a kernel receive stamp
    /// passed to `record_ts`.
    ///
    /// ```
    /// use tickscope_probe::{ClockDomain, Point};
    /// assert_eq!(Point::new("md.rx").clock(ClockDomain::Realtime).clock, Some(ClockDomain::Realtime));
    /// ```
    pub const fn clock(self, clock: ClockDomain) -> Self {
        Point { clock: Some(clock), ..self }
    }

    /// Tick-to-trade ends at this point (default: the last declared point).
    ///
    /// ```
    /// assert!(tickscope_probe::Point::new("order.tx").trade().trade);
    /// ```
    pub const fn trade(self) -> Self {
        Point { trade: true, ..self }
    }

    /// The fan-out point: records of it and of the points after it name their leg.
    ///
    /// ```
    /// assert!(tickscope_probe::Point::new("order.tx").leg().leg);
    /// ```
    pub const fn leg(self) -> Self {
        Point { leg: true, ..self }
    }

    pub(crate) const fn flags(&self) -> u32 {
        (if self.trade { layout::POINT_TRADE } else { 0 }) | (if self.leg { layout::POINT_LEG } else { 0 })
    }
}

impl<'a> From<&'a str> for Point<'a> {
    fn from(name: &'a str) -> Self {
        Point::new(name)
    }
}

/// The same rules as Python's `_as_points`, with the same wording.
pub(crate) fn validate(points: &[Point<'_>]) -> Result<(), Error> {
    if points.is_empty() {
        return Err(Error::Points("a ring needs at least one probe point".into()));
    }
    if points.len() > layout::MAX_POINTS {
        return Err(Error::Points(format!(
            "at most {} probe points per ring: got {}",
            layout::MAX_POINTS,
            points.len()
        )));
    }
    for (i, p) in points.iter().enumerate() {
        if p.name.is_empty() || p.name.len() > layout::POINT_NAME_SIZE {
            return Err(Error::Points(format!(
                "probe point name must be 1..{} bytes: {:?}",
                layout::POINT_NAME_SIZE,
                p.name
            )));
        }
        if p.stage.len() > layout::POINT_STAGE_SIZE {
            return Err(Error::Points(format!(
                "stage name must be at most {} bytes: {:?}",
                layout::POINT_STAGE_SIZE,
                p.stage
            )));
        }
        if points[..i].iter().any(|q| q.name == p.name) {
            return Err(Error::Points(format!("probe point names must be unique: {:?} twice", p.name)));
        }
    }
    Ok(())
}

/// The same rules as Python's `_as_dims`, with the same wording.
pub(crate) fn validate_dims(dims: &[&str]) -> Result<(), Error> {
    if dims.len() > layout::MAX_DIMS {
        return Err(Error::Points(format!(
            "at most {} dimensions per ring: got {} ({:?})",
            layout::MAX_DIMS,
            dims.len(),
            dims
        )));
    }
    for (i, d) in dims.iter().enumerate() {
        if d.is_empty() || d.len() > layout::DIM_NAME_SIZE {
            return Err(Error::Points(format!(
                "dimension name must be 1..{} bytes: {:?}",
                layout::DIM_NAME_SIZE,
                d
            )));
        }
        if dims[..i].contains(d) {
            return Err(Error::Points(format!("dimension names must be unique: {:?} twice", d)));
        }
    }
    Ok(())
}

pub(crate) fn validate_capacity(capacity: u64) -> Result<(), Error> {
    if capacity < 2 || !capacity.is_power_of_two() {
        return Err(Error::Capacity(capacity));
    }
    Ok(())
}

pub(crate) fn to_points<'a, P: Clone + Into<Point<'a>>>(points: &[P]) -> Result<Vec<Point<'a>>, Error> {
    let out: Vec<Point<'a>> = points.iter().cloned().map(Into::into).collect();
    validate(&out)?;
    Ok(out)
}
