//! Findings made while a statement is admitted, recorded in its scope and reported.

use std::sync::Arc;

use super::state::{Repetition, ScopeInner, with_state};
use crate::detect::{self, CallSite, Crossing, Settings};
use crate::fingerprint::Fingerprint;

/// The slow path of a statement crossing the repetition threshold, taken once per (scope,
/// fingerprint) in warn mode: capture the call site and record the crossing; in error mode,
/// when the executions are already certainly an N+1, also take the statement back (it will not
/// be sent). Returns whether the statement may run.
///
/// Whether the repetition is an N+1, a duplicate, both or neither is decided when the scope
/// ends, from all its executions; the warning, the OpenTelemetry event and `on_finding` follow
/// then, with the report's counts. On the statement's path this costs a stack walk the first
/// time a route crosses on a statement and a map lookup after that; the site is resolved on
/// pgscope's reporter thread meanwhile (see [`detect::resolve_soon`]), except for scopes that
/// allow call sites, which must read the site to decide.
#[cold]
pub(crate) fn n_plus_one(
    scope: Option<&Arc<ScopeInner>>,
    unscoped: &ScopeInner,
    fingerprint: &Fingerprint,
    crossing: Crossing,
    settings: &Settings,
) -> bool {
    let owner = scope.map_or(unscoped, |s| &**s);
    let mut refuses = crossing.refuses();
    let item = if crossing.reported {
        None
    } else {
        // Kept apart by what the executions looked like at the crossing, as the cache of sites
        // by route has always been (a route that repeats one statement from two places).
        let kind = if crossing.varied { 1 } else { 2 };
        let call_site: CallSite = detect::call_site_for(&owner.name, fingerprint.id(), kind);
        let allowed = owner.overrides.allow.has_call_sites()
            && owner.overrides.allow.allows_site(call_site.get());
        refuses &= !allowed;
        if !allowed {
            detect::resolve_soon(&call_site);
        }
        Some(Repetition::new(
            fingerprint,
            call_site,
            crossing.threshold,
            allowed,
            settings,
        ))
    };
    with_state(scope, unscoped, |state| {
        if let Some(item) = item {
            refuses &= !item.allowed();
            state.add_repetition(item);
        } else if refuses {
            refuses &= !state.allowed(fingerprint);
        }
        if refuses {
            state.refuse(fingerprint);
        }
    });
    !refuses
}
