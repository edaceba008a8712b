//! [`Capture`]: the future that runs work inside a scope.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::state::{CURRENT, ScopeInner, current};
use super::{OnReport, span};
use crate::detect::Overrides;
use crate::report::Report;

pin_project! {
    /// The future returned by [`Scope::capture`], [`capture`](crate::capture) and
    /// [`capture_named`](crate::capture_named): runs the inner future in the scope and yields
    /// its output with the scope's [`Report`].
    ///
    /// The scope starts at the first poll (so [`Scope::use_current_span`] sees the span the
    /// future is polled in) and ends when the inner future completes. Dropped before that (a
    /// cancelled request), the scope still ends: its summary is recorded and statements still
    /// in flight count as unscoped.
    #[must_use = "futures do nothing unless polled"]
    pub struct Capture<F> {
        #[pin]
        fut: F,
        pending: Option<Pending>,
        running: Option<Arc<ScopeInner>>,
        on_report: Option<OnReport>,
        // The caller calls the hook when the future completes (it adds the response status),
        // this future only when dropped unfinished.
        defer_hook: bool,
    }

    impl<F> PinnedDrop for Capture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(scope) = this.running.take() {
                end(&scope, this.on_report.as_ref());
            }
        }
    }
}

/// The scope to start at the first poll.
struct Pending {
    name: Cow<'static, str>,
    overrides: Overrides,
    use_current_span: bool,
}

impl<F> Capture<F> {
    pub(super) fn new(
        name: Cow<'static, str>,
        overrides: Overrides,
        use_current_span: bool,
        on_report: Option<OnReport>,
        fut: F,
    ) -> Self {
        Capture {
            fut,
            pending: Some(Pending {
                name,
                overrides,
                use_current_span,
            }),
            running: None,
            on_report,
            defer_hook: false,
        }
    }

    /// Leaves the report hook to the caller when the future completes (it is still called here
    /// when the future is dropped unfinished): see [`take_hook`](Self::take_hook).
    #[cfg_attr(not(any(feature = "tower", feature = "actix")), allow(dead_code))]
    pub(crate) fn defer_hook(mut self) -> Self {
        self.defer_hook = true;
        self
    }

    /// The report hook, for a caller that deferred it, once the future completed.
    #[cfg_attr(not(any(feature = "tower", feature = "actix")), allow(dead_code))]
    pub(crate) fn take_hook(self: Pin<&mut Self>) -> Option<OnReport> {
        self.project().on_report.take()
    }
}

impl<F> std::fmt::Debug for Capture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("scope", &self.running.as_ref().map(|s| &s.name))
            .finish_non_exhaustive()
    }
}

/// Ends the scope: its final report, the span released, the summary recorded, the hook told.
fn end(scope: &Arc<ScopeInner>, on_report: Option<&OnReport>) -> Report {
    crate::wrapped::check_events_visible();
    let report = scope.close();
    // Before the span is released: a warning the reporter thread has not emitted yet would
    // otherwise hold the span open past the scope, and an exporter shut down right after the
    // scope would never see it.
    scope.emit_warnings();
    span::detach(&scope.span, scope);
    crate::telemetry::scope_ended(&scope.span, &report, scope.owns_span);
    if let Some(f) = on_report {
        f(&report);
    }
    report
}

impl<F: Future> Future for Capture<F> {
    type Output = (F::Output, Report);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(pending) = this.pending.take() {
            *this.running = Some(ScopeInner::new(
                pending.name,
                pending.overrides,
                current(),
                pending.use_current_span,
            ));
        }
        let Some(scope) = this.running.as_ref() else {
            panic!("`Capture` polled after completion");
        };
        // A span the scope opened is entered around each poll; a span it took over is the
        // caller's, already entered.
        let _entered = scope.owns_span.then(|| scope.span.enter());
        let fut = this.fut;
        let poll = CURRENT.sync_scope(Arc::clone(scope), || fut.poll(cx));
        let output = match poll {
            Poll::Ready(output) => output,
            Poll::Pending => return Poll::Pending,
        };
        drop(_entered);
        let scope = this.running.take().expect("set above");
        let hook = this.on_report.as_ref().filter(|_| !*this.defer_hook);
        Poll::Ready((output, end(&scope, hook)))
    }
}
