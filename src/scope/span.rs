//! Finding a scope through `tracing` spans: a span created inside a scope carries a weak
//! reference to it in its registry extensions, so work `.instrument(span)`-ed into another task
//! still counts for the scope. Needs a `tracing_subscriber::Registry`-based subscriber.

use std::sync::{Arc, Weak};

use tracing_subscriber::registry::LookupSpan;

/// A newtype so the span extension cannot collide with anyone else's `Weak<…>`.
struct Carried<T>(Weak<T>);

/// Makes `span` carry `scope` (checked and set under the span's extension lock), unless a
/// scope has used it before: a span carries at most one scope's summary. False also when the
/// span is not in a `Registry` (nothing could find the scope through it).
pub(super) fn claim<T: Send + Sync + 'static>(span: &tracing::Span, scope: &Weak<T>) -> bool {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = registry.span(id)?;
        let mut ext = data.extensions_mut();
        if ext.get_mut::<Carried<T>>().is_some() {
            return Some(false);
        }
        ext.insert(Carried(scope.clone()));
        Some(true)
    })
    .flatten()
        == Some(true)
}

/// The current span, when the scope may use it: reusing the request span puts the scope's
/// summary on it (where people look in Jaeger) and spares a second span entered on every poll.
pub(super) fn claim_current<T: Send + Sync + 'static>(scope: &Weak<T>) -> Option<tracing::Span> {
    let span = tracing::Span::current();
    // A span the OpenTelemetry layer filters out (a DEBUG request span logged but not
    // exported) cannot carry the summary to the trace: open a `pgscope.scope` span instead.
    if !crate::telemetry::is_exported(&span) {
        return None;
    }
    claim(&span, scope).then_some(span)
}

/// Takes `scope` off `span`, leaving a marker that the span has had its scope: statements
/// under the span after the scope ends no longer count for it, and no later scope reuses it.
pub(super) fn detach<T: Send + Sync + 'static>(span: &tracing::Span, scope: &Arc<T>) {
    span.with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        if let Some(span) = registry.span(id) {
            let mut ext = span.extensions_mut();
            if ext
                .get_mut::<Carried<T>>()
                .is_some_and(|w| std::ptr::eq(w.0.as_ptr(), Arc::as_ptr(scope)))
            {
                ext.replace(Carried::<T>(Weak::new()));
            }
        }
    });
}

/// The scope carried by the current span or its nearest ancestor that carries one.
pub(super) fn find<T: Send + Sync + 'static>() -> Option<Arc<T>> {
    let span = tracing::Span::current();
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(id)?;
        span.scope().find_map(|s| {
            s.extensions()
                .get::<Carried<T>>()
                .and_then(|w| w.0.upgrade())
        })
    })
    .flatten()
}
