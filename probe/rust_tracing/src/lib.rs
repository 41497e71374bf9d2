//! A [`tracing-subscriber`](tracing_subscriber) layer that turns spans and events carrying a
//! `point` field into tickscope probe records, so a service already instrumented with `tracing`
//! (`#[instrument]`, `info_span!`, `event!`) gets tickscope stages without new calls.
//!
//! - A **span** with `point = "name"` records that point when it closes (the stage that ends at
//!   the point ends when the span's work is done), and with `begin = "name"` records that point
//!   when it is first entered.
//! - An **event** with `point = "name"` records that point at the event.
//! - The trace id is the `trace_id` field (an integer) of the span or event, else of the
//!   nearest enclosing span that has one. A span may `record("trace_id", id)` after creation.
//! - A name that is not one of the probe's points, or a point without a trace id, is counted in
//!   [`ProbeLayer::unmatched`], never guessed.
//!
//! ```
//! use tickscope_probe::{points, Point, Probe};
//! use tickscope_probe_tracing::ProbeLayer;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! points! {
//!     enum Tick {
//!         Rx = "md.rx",
//!         Decoded = Point::new("md.decoded").stage("feed"),
//!         Sent = Point::new("order.tx").stage("send").trade(),
//!     }
//! }
//!
//! #[tracing::instrument(fields(begin = "md.rx", point = "md.decoded"))]
//! fn decode(trace_id: u64) {}
//!
//! # let dir = std::env::temp_dir().join(format!("tsp-tracing-doc-{}", std::process::id()));
//! let probe = Probe::<Tick>::builder("service").dir(&dir).build()?;
//! let layer = ProbeLayer::new(probe.clone());
//! let subscriber = tracing_subscriber::registry().with(layer);
//! tracing::subscriber::with_default(subscriber, || {
//!     decode(42); // md.rx on entry, md.decoded on close, trace 42 (the argument)
//!     tracing::info!(point = "order.tx", trace_id = 42u64);
//! });
//! # drop(probe); let _ = std::fs::remove_dir_all(&dir);
//! # Ok::<(), tickscope_probe::Error>(())
//! ```

#![deny(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tickscope_probe::{Points, Probe};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The layer: records the probe's points named by spans and events (see the [crate docs](crate)).
pub struct ProbeLayer<S: Points> {
    probe: Probe<S>,
    names: Vec<&'static str>,
    unmatched: Unmatched,
    /// Whether some callsite declares a `begin` field: a span can only carry the fields its
    /// callsite declares, so until one does, entering a span has nothing to stamp and skips the
    /// registry lookup (~45 ns of a span's cost here).
    begins: AtomicBool,
}

/// How many spans and events named a point the probe does not declare or had no trace id: a
/// handle that stays readable after the layer moved into its subscriber.
#[derive(Clone, Debug, Default)]
pub struct Unmatched(Arc<AtomicU64>);

impl Unmatched {
    /// The count so far.
    ///
    /// ```
    /// assert_eq!(tickscope_probe_tracing::Unmatched::default().get(), 0);
    /// ```
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl<S: Points> ProbeLayer<S> {
    /// A layer recording into `probe`.
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// use tickscope_probe_tracing::ProbeLayer;
    ///
    /// points! { enum P { Rx = "md.rx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-tracing-new-{}", std::process::id()));
    /// let layer = ProbeLayer::new(Probe::<P>::builder("svc").dir(&dir).build()?);
    /// assert_eq!(layer.unmatched().get(), 0);
    /// # drop(layer); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    pub fn new(probe: Probe<S>) -> Self {
        let names = S::declared().iter().map(|p| p.name).collect();
        ProbeLayer { probe, names, unmatched: Unmatched::default(), begins: AtomicBool::new(false) }
    }

    /// Spans and events that named a point the probe does not declare, or had no trace id.
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// use tickscope_probe_tracing::ProbeLayer;
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// points! { enum P { Rx = "md.rx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-tracing-unmatched-{}", std::process::id()));
    /// let layer = ProbeLayer::new(Probe::<P>::builder("svc").dir(&dir).build()?);
    /// let unmatched = layer.unmatched();
    /// let subscriber = tracing_subscriber::registry().with(layer);
    /// tracing::subscriber::with_default(subscriber, || {
    ///     tracing::info!(point = "md.typo", trace_id = 1u64);
    ///     tracing::info!(point = "md.rx"); // no trace id
    /// });
    /// assert_eq!(unmatched.get(), 2);
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    pub fn unmatched(&self) -> Unmatched {
        self.unmatched.clone()
    }

    fn fields(&self) -> Fields<'_, S> {
        Fields { names: &self.names, point: None, begin: None, trace_id: None, unknown: false }
    }

    fn record(&self, point: S, trace_id: Option<u64>) {
        match trace_id {
            Some(trace) => {
                self.probe.record(point, trace);
            }
            None => {
                self.unmatched.add();
            }
        }
    }
}

/// What a span carries: its points and its trace id, in the span's extensions, stored once when
/// the span is created (or recorded) and only read after: enter and close take the extensions'
/// read lock, and `begin` is stamped once by whichever enter swaps `entered` first.
struct Tagged<S> {
    point: Option<S>,
    begin: Option<S>,
    trace_id: Option<u64>,
    entered: AtomicBool,
}

struct Fields<'a, S> {
    names: &'a [&'static str],
    point: Option<S>,
    begin: Option<S>,
    trace_id: Option<u64>,
    unknown: bool,
}

impl<S: Points> Fields<'_, S> {
    fn name(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "point" => &mut self.point,
            "begin" => &mut self.begin,
            _ => return,
        };
        match self.names.iter().position(|n| *n == value).and_then(|i| S::from_id(i as u32)) {
            Some(p) => *slot = Some(p),
            None => self.unknown = true,
        }
    }
}

impl<S: Points> Visit for Fields<'_, S> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "trace_id" {
            self.trace_id = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "trace_id" && value >= 0 {
            self.trace_id = Some(value as u64);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `point = %name` or `?name`: formatted only for the two fields this layer reads.
        if matches!(field.name(), "point" | "begin") {
            let text = format!("{value:?}");
            self.name(field, text.trim_matches('"'));
        }
    }
}

impl<S, Sub> Layer<Sub> for ProbeLayer<S>
where
    S: Points,
    Sub: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.is_span() && metadata.fields().field("begin").is_some() {
            self.begins.store(true, Ordering::Relaxed);
        }
        Interest::always()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, Sub>) {
        let mut f = self.fields();
        attrs.record(&mut f);
        if f.unknown {
            self.unmatched.add();
        }
        let stamps = f.point.is_some() || f.begin.is_some();
        if !stamps && f.trace_id.is_none() {
            // Nothing to keep: a descendant looking for its trace id searches the whole scope.
            return;
        }
        let span = match ctx.span(id) {
            Some(v) => v,
            None => return,
        };
        let trace_id = f.trace_id.or_else(|| {
            span.scope().skip(1).find_map(|s| s.extensions().get::<Tagged<S>>().and_then(|t| t.trace_id))
        });
        let entered = AtomicBool::new(false);
        span.extensions_mut().insert(Tagged { point: f.point, begin: f.begin, trace_id, entered });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, Sub>) {
        let mut f = self.fields();
        values.record(&mut f);
        let span = match ctx.span(id) {
            Some(v) => v,
            None => return,
        };
        let mut ext = span.extensions_mut();
        match ext.get_mut::<Tagged<S>>() {
            Some(t) => {
                t.point = f.point.or(t.point);
                t.begin = f.begin.or(t.begin);
                t.trace_id = f.trace_id.or(t.trace_id);
            }
            None => ext.insert(Tagged {
                point: f.point,
                begin: f.begin,
                trace_id: f.trace_id,
                entered: AtomicBool::new(false),
            }),
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, Sub>) {
        if !self.begins.load(Ordering::Relaxed) {
            return;
        }
        let span = match ctx.span(id) {
            Some(v) => v,
            None => return,
        };
        let ext = span.extensions();
        if let Some(Tagged { begin: Some(begin), trace_id, entered, .. }) = ext.get::<Tagged<S>>() {
            if !entered.swap(true, Ordering::Relaxed) {
                let (begin, trace_id) = (*begin, *trace_id);
                drop(ext);
                self.record(begin, trace_id);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, Sub>) {
        let span = match ctx.span(&id) {
            Some(v) => v,
            None => return,
        };
        let tagged = span.extensions().get::<Tagged<S>>().and_then(|t| Some((t.point?, t.trace_id)));
        if let Some((point, trace_id)) = tagged {
            self.record(point, trace_id);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, Sub>) {
        let mut f = self.fields();
        event.record(&mut f);
        if f.unknown {
            self.unmatched.add();
        }
        let point = match f.point {
            Some(v) => v,
            None => return,
        };
        let trace_id = f.trace_id.or_else(|| {
            ctx.event_scope(event)?.find_map(|s| s.extensions().get::<Tagged<S>>().and_then(|t| t.trace_id))
        });
        self.record(point, trace_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickscope_probe::layout as L;
    use tickscope_probe::points;
    use tracing_subscriber::layer::SubscriberExt;

    points! { enum P { Rx = "md.rx", Decoded = "md.decoded" } }

    /// Records written so far to the rings in `dir`.
    fn written(dir: &std::path::Path) -> u64 {
        use std::os::unix::fs::FileExt;
        let mut total = 0;
        for entry in std::fs::read_dir(dir).expect("ring dir").flatten() {
            let f = std::fs::File::open(entry.path()).expect("ring");
            let mut head = [0u8; 8];
            f.read_exact_at(&mut head, L::OFF_HEAD as u64).expect("head");
            total += u64::from_le_bytes(head);
        }
        total
    }

    #[test]
    fn a_span_entered_again_and_again_stamps_its_begin_once_and_its_point_at_close() {
        let dir = std::env::temp_dir().join(format!("tsp-tracing-reenter-{}", std::process::id()));
        let probe = Probe::<P>::builder("reenter").dir(&dir).build().expect("probe");
        let layer = ProbeLayer::new(probe.clone());
        let unmatched = layer.unmatched();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            // As an instrumented future is entered at every poll, on whichever thread polls it.
            let span = tracing::info_span!("decode", begin = "md.rx", point = "md.decoded", trace_id = 7u64);
            for _ in 0..3 {
                let _polled = span.enter();
            }
            assert_eq!(written(&dir), 1, "md.rx at the first enter only");
            drop(span);
            assert_eq!(written(&dir), 2, "md.decoded at close");
            // A span with no point and no trace id of its own, inside one that has a trace id:
            // nothing stored for it, and an event inside still finds the trace id.
            let tick = tracing::info_span!("tick", trace_id = 8u64).entered();
            let inner = tracing::info_span!("inner").entered();
            tracing::info!(point = "md.rx");
            drop((inner, tick));
            assert_eq!(written(&dir), 3);
        });
        assert_eq!(unmatched.get(), 0);
        drop(probe);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
