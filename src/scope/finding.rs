//! Findings made while a statement is admitted, recorded in its scope and reported.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::state::{ScopeInner, with_state};
use crate::detect::{self, Crossing, NPlusOne};
use crate::fingerprint::Fingerprint;
use crate::telemetry;

/// The slow path of a statement crossing the N+1 threshold, taken once per (scope,
/// fingerprint) in warn mode: find the call site, record, warn; in error mode also take the
/// statement back (it will not be sent). Returns whether the statement may run.
#[cold]
pub(crate) fn n_plus_one(
    scope: Option<&Arc<ScopeInner>>,
    unscoped: &ScopeInner,
    fingerprint: &Fingerprint,
    crossing: Crossing,
) -> bool {
    let owner = scope.map_or(unscoped, |s| &**s);
    let refuses = crossing.refuses();
    let item = if crossing.reported {
        None
    } else {
        let call_site = detect::call_site();
        if owner.overrides.allow.allows_site(&call_site) {
            return true;
        }
        Some(NPlusOne {
            scope: owner.name.to_string(),
            fingerprint: fingerprint.clone(),
            count: crossing.count,
            threshold: crossing.threshold,
            call_site,
        })
    };
    let new = with_state(scope, unscoped, |state| {
        if refuses {
            state.refuse(fingerprint);
        }
        item.as_ref().is_some_and(|item| state.add_n_plus_one(item))
    });
    if let Some(item) = item.filter(|_| new) {
        telemetry::n_plus_one(&item);
        if DEFERRING.get() {
            PENDING.with_borrow_mut(|pending| pending.push(item));
        } else {
            detect::emit_n_plus_one(&item);
        }
    }
    !refuses
}

thread_local! {
    /// Set while the observer handles a `tracing` event.
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// Findings made meanwhile, to be reported once that event's dispatch is over.
    static PENDING: RefCell<Vec<NPlusOne>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` (the observer's handling of one `tracing` event) with finding reports deferred:
/// a `tracing` event emitted while another is being dispatched corrupts the per-layer filter
/// state of the layers that come after (tokio-rs/tracing#2704), so the observer's WARNs wait
/// for [`flush`].
pub(crate) fn deferring<R>(f: impl FnOnce() -> R) -> R {
    let outer = DEFERRING.replace(true);
    let result = f();
    DEFERRING.set(outer);
    result
}

/// Reports the findings deferred on this thread: called after each poll of a scope's future
/// (still inside the scope's span, outside any event dispatch) and when a scope ends.
pub(crate) fn flush() {
    if DEFERRING.get() {
        return;
    }
    let pending = PENDING.with_borrow_mut(std::mem::take);
    for item in &pending {
        detect::emit_n_plus_one(item);
    }
}
