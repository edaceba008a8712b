//! Statements the wrapper runs itself, marked so the observer does not count them twice.
//!
//! sqlx emits its `sqlx::query` event synchronously, inside the poll (or drop) that ends the
//! statement, on the polling thread. The wrapper polls its own statements inside [`run`],
//! which sets a thread-local mark; the observer, seeing the event under the mark, records that
//! it saw it and skips it. A statement that ends under the mark with no event seen tells the
//! wrapper that sqlx does not log this connection's statements (or a filter hides them): the
//! observer would miss statements run outside the wrapper.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

thread_local! {
    /// `None`: not inside the wrapper; `Some(seen)`: inside, and whether an event came.
    static MARK: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether an observer layer has been installed in this process.
static OBSERVER: AtomicBool = AtomicBool::new(false);

pub(crate) fn observer_installed() -> bool {
    OBSERVER.load(Ordering::Relaxed)
}

pub(crate) fn set_observer_installed() {
    OBSERVER.store(true, Ordering::Relaxed);
}

/// A statement of the wrapper's ended with no `sqlx::query` event while an observer is
/// installed: sqlx does not log this connection's statements, or a filter hides them from
/// every layer. Warns once per process, with the fix.
pub(crate) fn unlogged_statement() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "pgscope::observe",
            "pgscope's observer saw no `sqlx::query` event for a statement: statements run outside \
             pgscope::Pool (migrations, PgListener, as_sqlx()) are not counted. Fix: keep sqlx's \
             statement logging on (do not call `log_statements(LevelFilter::Off)`), and let the \
             `sqlx::query` target through any global filter (e.g. EnvFilter \
             `info,sqlx::query=debug`), or install filters per layer with `.with_filter(..)`"
        );
    }
}

/// Whether the current subscriber lets `sqlx::query` events at sqlx's default level (DEBUG)
/// through to some layer. Asked through callsite registration rather than `enabled!`: an
/// `enabled` query that is not followed by an event leaves per-layer filter state behind that
/// silences the next event on the thread (tokio-rs/tracing#2704).
pub(crate) fn statement_events_visible() -> bool {
    use tracing::callsite::{Callsite, Identifier};
    use tracing::metadata::{Kind, Metadata};
    use tracing::subscriber::Interest;

    struct Probe;
    static PROBE: Probe = Probe;
    static META: Metadata<'static> = Metadata::new(
        "pgscope: sqlx statement event probe",
        "sqlx::query",
        tracing::Level::DEBUG,
        None,
        None,
        None,
        tracing::field::FieldSet::new(&[], Identifier(&PROBE)),
        Kind::EVENT,
    );
    impl Callsite for Probe {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            &META
        }
    }
    tracing::dispatcher::get_default(|d| !d.register_callsite(&META).is_never())
}

/// Once per process, when a scope ends with an observer installed: warns when a filter hides
/// sqlx's statement events (at sqlx's default level, DEBUG) from every layer, so the observer
/// sees nothing.
pub(crate) fn check_events_visible() {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    if !observer_installed() {
        return;
    }
    CHECKED.call_once(|| {
        if !statement_events_visible() {
            tracing::warn!(
                target: "pgscope::observe",
                "a global filter hides `sqlx::query` events from pgscope's observer, so it counts no \
                 statement run outside pgscope::Pool. Fix: let them through (e.g. EnvFilter \
                 `info,sqlx::query=debug`), or give your layers per-layer filters \
                 (`.with_filter(..)`) instead of a global one"
            );
        }
    });
}

/// Runs `f` (a poll or a drop of the wrapper's own sqlx future) under the mark; returns its
/// result and whether the observer saw a statement event meanwhile.
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> (R, bool) {
    let outer = MARK.with(|m| m.replace(Some(false)));
    let result = f();
    let seen = MARK.with(|m| m.replace(outer)) == Some(true);
    (result, seen)
}

/// Called by the observer for each statement event: true when the wrapper is running the
/// statement (the event is then recorded as seen, and must not be counted again).
pub(crate) fn claim_event() -> bool {
    MARK.with(|m| match m.get() {
        Some(_) => {
            m.set(Some(true));
            true
        }
        None => false,
    })
}

/// A future or stream of the wrapper's, polled and dropped under the mark. `seen` says
/// whether the observer saw the statement's event.
pub(crate) struct Wrapped<T: Unpin> {
    inner: Option<T>,
    pub(crate) seen: bool,
}

impl<T: Unpin> Wrapped<T> {
    pub(crate) fn new(inner: T) -> Self {
        Wrapped {
            inner: Some(inner),
            seen: false,
        }
    }

    fn poll_with<R>(&mut self, f: impl FnOnce(&mut T) -> Poll<R>) -> Poll<R> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Pending;
        };
        let (poll, seen) = run(|| f(inner));
        self.seen |= seen;
        poll
    }
}

impl<T: Unpin> Drop for Wrapped<T> {
    fn drop(&mut self) {
        // A statement dropped unfinished logs its event from the drop.
        let inner = self.inner.take();
        run(|| drop(inner));
    }
}

impl<F: Future + Unpin> Future for Wrapped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.poll_with(|f| Pin::new(f).poll(cx))
    }
}

#[cfg(feature = "pool")]
impl<S: futures_core::Stream + Unpin> futures_core::Stream for Wrapped<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.poll_with(|s| Pin::new(s).poll_next(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_under_the_mark_are_claimed_and_reported_seen() {
        assert!(!claim_event(), "outside the wrapper nothing is claimed");
        let ((), seen) = run(|| {});
        assert!(!seen);
        let (claimed, seen) = run(claim_event);
        assert!(claimed && seen);
        // Nested marks keep the outer state.
        let ((inner_seen, after), outer_seen) = run(|| {
            let ((), inner) = run(|| assert!(claim_event()));
            (inner, claim_event())
        });
        assert!(inner_seen && after && outer_seen);
        assert!(!claim_event());
    }
}
