//! Detection rules: N+1 (one fingerprint repeated inside one scope), query budgets, and one
//! scope holding several connections at once.
//!
//! The rules run on the query's start path under the scope's lock and cost a few comparisons;
//! everything expensive (a backtrace for the call site, formatting the warning) happens only
//! when a rule fires, once per (scope, fingerprint).

mod call_site;
mod findings;

use crate::fingerprint::Fingerprint;

pub(crate) use self::call_site::{CallSite, call_site_for, resolved_call_site};
pub use self::findings::{Duplicate, Finding, HeldIdle, NPlusOne, NestedAcquire};
pub(crate) use self::findings::{
    Pending, Warning, batched, dispatching, hint_unscoped, nested_acquire, resolve_soon, warn_later,
};

/// What to do when a rule fires.
///
/// By default, [`Mode::Warn`].
///
/// # Examples
/// ```no_run
/// # async fn f() -> Result<(), sqlx::Error> {
/// // In CI: an N+1 fails the query (and so the test) instead of only warning.
/// let pool = pgscope::PoolOptions::new()
///     .n_plus_one_mode(pgscope::Mode::Error)
///     .connect("postgres://postgres@127.0.0.1/test")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Do not check.
    Off,
    /// Record it in the scope's report and emit a `tracing` WARN event.
    #[default]
    Warn,
    /// Like `Warn`, and the query that crosses the threshold fails with
    /// [`Error::NPlusOne`](crate::Error::NPlusOne) instead of running.
    Error,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist {
    pub(crate) fingerprints: Vec<u64>,
    pub(crate) call_sites: Vec<String>,
}

impl Allowlist {
    pub(crate) fn allows_fingerprint(&self, id: u64) -> bool {
        self.fingerprints.contains(&id)
    }

    pub(crate) fn has_call_sites(&self) -> bool {
        !self.call_sites.is_empty()
    }

    pub(crate) fn allows_site(&self, site: &str) -> bool {
        self.call_sites.iter().any(|s| site.contains(s.as_str()))
    }
}

/// Detection settings of a pool (scopes may override them).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) n_plus_one_threshold: u32,
    pub(crate) n_plus_one_mode: Mode,
    pub(crate) n_plus_one_writes: bool,
    pub(crate) query_budget: Option<u32>,
    pub(crate) nested_acquire_mode: Mode,
    /// Report a connection held idle for at least this long (`None`: off).
    pub(crate) held_idle_threshold: Option<std::time::Duration>,
    /// Report an N+1 only once its executions add up to this much database time.
    pub(crate) n_plus_one_min_total: Option<std::time::Duration>,
    /// Count every execution's parameter set (else stop once two differ).
    pub(crate) exact_counts: bool,
    pub(crate) on_finding: OnFinding,
}

/// The `on_finding` callback of a pool or observer.
#[derive(Clone, Default)]
pub(crate) struct OnFinding(Option<std::sync::Arc<FindingHook>>);

type FindingHook = dyn Fn(&Finding<'_>) + Send + Sync;

impl OnFinding {
    pub(crate) fn new(f: impl Fn(&Finding<'_>) + Send + Sync + 'static) -> Self {
        OnFinding(Some(std::sync::Arc::new(f)))
    }

    /// Calls the callback, if there is one.
    pub(crate) fn call(&self, finding: &Finding<'_>) {
        if let Some(f) = &self.0 {
            f(finding);
        }
    }
}

impl std::fmt::Debug for OnFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(<fn>)"
        } else {
            "None"
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            // Five lookups of the same shape in one request is where batching starts to pay
            // and where real N+1s (one per list item) are already unmistakable.
            n_plus_one_threshold: 5,
            n_plus_one_mode: Mode::Warn,
            // Repeated INSERT/UPDATE in a loop is usually a deliberate write path; opt in.
            n_plus_one_writes: false,
            query_budget: None,
            nested_acquire_mode: Mode::Warn,
            // A tenth of a second idle on a held connection is an eternity next to the
            // sub-millisecond statements around it, and well above scheduling noise.
            held_idle_threshold: Some(std::time::Duration::from_millis(100)),
            // Off: in tests every N+1 counts, however fast. In production, 50 ms (as Sentry's
            // N+1 detector) keeps warnings to repetition that costs something.
            n_plus_one_min_total: None,
            exact_counts: true,
            on_finding: OnFinding::default(),
        }
    }
}

/// Settings a scope may override; `None` means "use the pool's".
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub(crate) n_plus_one_threshold: Option<u32>,
    pub(crate) n_plus_one_mode: Option<Mode>,
    pub(crate) query_budget: Option<u32>,
    pub(crate) allow: Allowlist,
}

/// The rules in force for one statement: the pool's settings under the scope's overrides.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) overrides: &'a Overrides,
    /// False for statements that already ran (seen by the observer): nothing can be refused,
    /// so budgets do not apply and [`Mode::Error`] acts as [`Mode::Warn`].
    enforce: bool,
}

/// What the scope has seen before the statement being admitted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    /// Statements the scope has sent.
    pub(crate) queries: u64,
    /// Executions of this statement's fingerprint, this one included.
    pub(crate) count: u64,
    /// Time in the database of the executions that finished so far.
    pub(crate) total: std::time::Duration,
    /// Whether its executions so far are certainly an N+1: two or more distinct parameter sets,
    /// or parameters not seen (observer) on a statement that is not a locking read. Only an
    /// N+1 is refused in [`Mode::Error`]; its class is settled when the scope ends.
    pub(crate) varied: bool,
    /// Whether the repetition's call site was already taken in the scope.
    pub(crate) reported: bool,
    /// Whether the statement runs inside [`allow_repetition`](crate::allow_repetition).
    pub(crate) allowed_repetition: bool,
}

/// The rules' decision on one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it.
    Run,
    /// Refuse it before PostgreSQL sees it: the scope's query budget is spent.
    OverBudget {
        /// The budget in force.
        budget: u32,
    },
    /// It crosses the N+1 threshold: find the call site, report it (unless already reported
    /// or its call site is allowed), and in [`Mode::Error`] refuse it.
    NPlusOne(Crossing),
}

/// A statement that crossed the repetition threshold. Whether it is an N+1, a duplicate or
/// both is decided from all its executions when the scope ends; at the crossing, only an N+1
/// that is already certain (two distinct parameter sets) can be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Crossing {
    /// Certainly an N+1 already (see [`Seen::varied`]).
    pub(crate) varied: bool,
    pub(crate) count: u64,
    pub(crate) threshold: u32,
    pub(crate) mode: Mode,
    /// Already reported in this scope: nothing new to record or emit.
    pub(crate) reported: bool,
}

impl Crossing {
    /// Whether the statement must not be sent: an N+1 in [`Mode::Error`] (a duplicate is
    /// only reported).
    pub(crate) fn refuses(&self) -> bool {
        self.mode == Mode::Error && self.varied
    }
}

impl<'a> Rules<'a> {
    /// The pool's `settings` under a scope's `overrides`.
    pub(crate) fn new(settings: &'a Settings, overrides: &'a Overrides) -> Self {
        Rules {
            settings,
            overrides,
            enforce: true,
        }
    }

    /// Rules for a statement that already ran (the observer's): see [`Rules::enforce`].
    pub(crate) fn observed(settings: &'a Settings, overrides: &'a Overrides) -> Self {
        Rules {
            settings,
            overrides,
            enforce: false,
        }
    }

    /// The budget check comes before counting (a refused statement is not counted as a query);
    /// `seen.count` already includes the statement for the N+1 check.
    pub(crate) fn budget(&self, queries: u64) -> Option<u32> {
        if !self.enforce {
            return None;
        }
        self.overrides
            .query_budget
            .or(self.settings.query_budget)
            .filter(|budget| queries >= u64::from(*budget))
    }

    /// Whether every execution's parameter set is counted (see
    /// [`PoolOptions::exact_repetition_counts`](crate::PoolOptions::exact_repetition_counts)).
    pub(crate) fn exact_counts(&self) -> bool {
        self.settings.exact_counts
    }

    /// Whether repetitions of `fp` are checked at all (so worth knowing their parameters).
    pub(crate) fn checks(&self, fp: &Fingerprint, allowed_repetition: bool) -> bool {
        let mode = self
            .overrides
            .n_plus_one_mode
            .unwrap_or(self.settings.n_plus_one_mode);
        mode != Mode::Off
            && !allowed_repetition
            && (self.settings.n_plus_one_writes || fp.operation() == "SELECT")
    }

    /// Decides on a statement with fingerprint `fp`.
    pub(crate) fn admit(&self, fp: &Fingerprint, seen: Seen) -> Verdict {
        if let Some(budget) = self.budget(seen.queries) {
            return Verdict::OverBudget { budget };
        }
        let o = self.overrides;
        let threshold = o
            .n_plus_one_threshold
            .unwrap_or(self.settings.n_plus_one_threshold);
        let mode = match o.n_plus_one_mode.unwrap_or(self.settings.n_plus_one_mode) {
            Mode::Error if !self.enforce => Mode::Warn,
            mode => mode,
        };
        let checked = (self.settings.n_plus_one_writes || fp.operation() == "SELECT")
            && !seen.allowed_repetition;
        // In error mode every execution past the threshold is refused; otherwise the first
        // one past it (and past the time gate, if any) is reported.
        let weighty = self
            .settings
            .n_plus_one_min_total
            .is_none_or(|min| seen.total >= min);
        let refusing = mode == Mode::Error && seen.varied;
        let crossing = seen.count > u64::from(threshold) && weighty && (refusing || !seen.reported);
        if mode == Mode::Off || !checked || !crossing || o.allow.allows_fingerprint(fp.id()) {
            return Verdict::Run;
        }
        Verdict::NPlusOne(Crossing {
            varied: seen.varied,
            count: seen.count,
            threshold,
            mode,
            reported: seen.reported,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(queries: u64, count: u64) -> Seen {
        Seen {
            queries,
            count,
            total: std::time::Duration::ZERO,
            varied: true,
            reported: false,
            allowed_repetition: false,
        }
    }

    #[test]
    fn n_plus_one_fires_once_on_the_crossing_execution_in_warn_mode() {
        let settings = Settings::default();
        let overrides = Overrides::default();
        let rules = Rules::new(&settings, &overrides);
        let fp = crate::fingerprint("SELECT * FROM users WHERE id = $1");
        let mut reported = false;
        let verdicts: Vec<bool> = (1..=8)
            .map(|n| {
                let crossed = matches!(
                    rules.admit(
                        &fp,
                        Seen {
                            reported,
                            ..seen(n, n)
                        }
                    ),
                    Verdict::NPlusOne(_)
                );
                reported |= crossed;
                crossed
            })
            .collect();
        assert_eq!(
            verdicts,
            [false, false, false, false, false, true, false, false]
        );
    }

    #[test]
    fn error_mode_refuses_every_execution_past_the_threshold() {
        let settings = Settings {
            n_plus_one_mode: Mode::Error,
            n_plus_one_threshold: 2,
            ..Settings::default()
        };
        let overrides = Overrides::default();
        let rules = Rules::new(&settings, &overrides);
        let fp = crate::fingerprint("SELECT 1 FROM t WHERE a = $1");
        for n in 3..6 {
            let Verdict::NPlusOne(c) = rules.admit(&fp, seen(n, n)) else {
                panic!("execution {n} must cross");
            };
            assert!(c.refuses());
        }
        assert_eq!(rules.admit(&fp, seen(2, 2)), Verdict::Run);
    }

    #[test]
    fn statements_that_already_ran_are_never_refused() {
        let settings = Settings {
            n_plus_one_mode: Mode::Error,
            query_budget: Some(1),
            ..Settings::default()
        };
        let overrides = Overrides::default();
        let rules = Rules::observed(&settings, &overrides);
        let fp = crate::fingerprint("SELECT * FROM users WHERE id = $1");
        assert_eq!(rules.admit(&fp, seen(5, 5)), Verdict::Run);
        let Verdict::NPlusOne(c) = rules.admit(&fp, seen(6, 6)) else {
            panic!("the N+1 is still found");
        };
        assert!(!c.refuses());
        let after = Seen {
            reported: true,
            ..seen(7, 7)
        };
        assert_eq!(rules.admit(&fp, after), Verdict::Run, "reported once");
    }

    #[test]
    fn the_time_gate_waits_until_the_repeats_cost_enough() {
        let settings = Settings {
            n_plus_one_min_total: Some(std::time::Duration::from_millis(50)),
            ..Settings::default()
        };
        let overrides = Overrides::default();
        let rules = Rules::new(&settings, &overrides);
        let fp = crate::fingerprint("SELECT * FROM users WHERE id = $1");
        let at = |count: u64, ms: u64| Seen {
            total: std::time::Duration::from_millis(ms),
            ..seen(count, count)
        };
        assert_eq!(
            rules.admit(&fp, at(6, 10)),
            Verdict::Run,
            "fast repeats: no finding yet"
        );
        assert_eq!(rules.admit(&fp, at(40, 49)), Verdict::Run);
        assert!(matches!(rules.admit(&fp, at(41, 50)), Verdict::NPlusOne(c) if c.count == 41));
    }

    #[test]
    fn budget_comes_first_and_scope_overrides_the_pool() {
        let settings = Settings {
            query_budget: Some(10),
            ..Settings::default()
        };
        let overrides = Overrides {
            query_budget: Some(3),
            ..Overrides::default()
        };
        let rules = Rules::new(&settings, &overrides);
        let fp = crate::fingerprint("SELECT 1");
        assert_eq!(rules.admit(&fp, seen(2, 1)), Verdict::Run);
        assert_eq!(
            rules.admit(&fp, seen(3, 1)),
            Verdict::OverBudget { budget: 3 }
        );
    }

    #[test]
    fn writes_allowlists_and_deliberate_repetition_are_not_checked() {
        let settings = Settings::default();
        let fp = crate::fingerprint("SELECT * FROM users WHERE id = $1");
        let overrides = Overrides {
            allow: Allowlist {
                fingerprints: vec![fp.id()],
                call_sites: vec![],
            },
            ..Overrides::default()
        };
        let allowing = Rules::new(&settings, &overrides);
        assert_eq!(allowing.admit(&fp, seen(6, 6)), Verdict::Run);
        let none = Overrides::default();
        let rules = Rules::new(&settings, &none);
        let insert = crate::fingerprint("INSERT INTO t VALUES ($1)");
        assert_eq!(rules.admit(&insert, seen(6, 6)), Verdict::Run);
        let mut deliberate = seen(6, 6);
        deliberate.allowed_repetition = true;
        assert_eq!(rules.admit(&fp, deliberate), Verdict::Run);
        assert!(matches!(rules.admit(&fp, seen(6, 6)), Verdict::NPlusOne(_)));
    }
}
