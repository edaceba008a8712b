//! Findings made while a statement is admitted, recorded in its scope and reported.

use std::sync::Arc;

use super::state::{ScopeInner, with_state};
use crate::detect::{
    self, CallSite, Crossing, Duplicate, Finding, NPlusOne, Repeat, Settings, Warning,
};
use crate::fingerprint::Fingerprint;
use crate::telemetry;

/// The slow path of a statement crossing the N+1 threshold, taken once per (scope,
/// fingerprint) in warn mode: capture the call site, record, warn (from pgscope's reporter
/// thread, once the call site is resolved); in error mode also take the statement back (it
/// will not be sent). Returns whether the statement may run.
///
/// On the statement's path this costs a stack walk the first time a route crosses on a
/// statement and a map lookup after that; symbols are resolved elsewhere (see
/// [`detect::warn_later`]), except for scopes that allow call sites, which must read the
/// site to decide.
#[cold]
pub(crate) fn n_plus_one(
    scope: Option<&Arc<ScopeInner>>,
    unscoped: &ScopeInner,
    fingerprint: &Fingerprint,
    crossing: Crossing,
    settings: &Settings,
) -> bool {
    let owner = scope.map_or(unscoped, |s| &**s);
    if crossing.kind == Repeat::Duplicate {
        duplicate(scope, unscoped, owner, fingerprint, crossing, settings);
        return true;
    }
    let refuses = crossing.refuses();
    let item = if crossing.reported {
        None
    } else {
        let call_site: CallSite = detect::call_site_for(&owner.name, fingerprint.id(), 1);
        if owner.overrides.allow.has_call_sites()
            && owner.overrides.allow.allows_site(call_site.get())
        {
            return true;
        }
        Some(NPlusOne {
            scope: owner.name.to_string(),
            fingerprint: fingerprint.clone(),
            count: crossing.count,
            threshold: crossing.threshold,
            call_site,
            parent: None,
        })
    };
    let (item, new) = with_state(scope, unscoped, |state| {
        if refuses {
            state.refuse(fingerprint);
        }
        let mut item = item;
        let new = match &mut item {
            Some(item) => {
                item.parent = state.parent_of(fingerprint);
                state.add_n_plus_one(item)
            }
            None => false,
        };
        (item, new)
    });
    if let Some(item) = item.filter(|_| new) {
        telemetry::n_plus_one(&item);
        settings.on_finding.call(&Finding::NPlusOne(&item));
        owner.warn(Warning::NPlusOne(item));
    }
    !refuses
}

/// A statement repeated with the same parameters: recorded and reported once per (scope,
/// fingerprint), never refused.
#[cold]
fn duplicate(
    scope: Option<&Arc<ScopeInner>>,
    unscoped: &ScopeInner,
    owner: &ScopeInner,
    fingerprint: &Fingerprint,
    crossing: Crossing,
    settings: &Settings,
) {
    let call_site = detect::call_site_for(&owner.name, fingerprint.id(), 2);
    if owner.overrides.allow.has_call_sites() && owner.overrides.allow.allows_site(call_site.get())
    {
        return;
    }
    let item = Duplicate {
        scope: owner.name.to_string(),
        fingerprint: fingerprint.clone(),
        count: crossing.count,
        threshold: crossing.threshold,
        call_site,
    };
    if with_state(scope, unscoped, |state| state.add_duplicate(&item)) {
        telemetry::duplicate(&item);
        settings.on_finding.call(&Finding::Duplicate(&item));
        owner.warn(Warning::Duplicate(item));
    }
}
