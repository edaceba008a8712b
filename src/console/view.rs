//! What the console shows, computed once and rendered twice: as JSON and as HTML.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{Kept, Watched};
use crate::report::{TimelineEntry, TimelineKind};
use crate::{FingerprintStats, Report};

/// An estimate of what a kept report costs in memory, for the console's byte bound.
pub(super) fn estimated_bytes(report: &Report) -> usize {
    let rows: usize = report
        .fingerprints()
        .iter()
        .map(|r| std::mem::size_of::<FingerprintStats>() + r.normalized().len() + 64)
        .sum();
    let findings =
        (report.n_plus_one().len() + report.duplicates().len() + report.nested_acquires().len())
            * 256;
    let timeline = report
        .timeline()
        .map_or(0, |t| std::mem::size_of_val(t.entries()));
    std::mem::size_of::<Report>() + report.name().len() + rows + findings + timeline
}

/// The requests page's filter: `route=…` and `findings=1`.
#[derive(Debug, Default, Clone)]
pub(super) struct Filter {
    pub(super) route: Option<String>,
    pub(super) findings: bool,
}

impl Filter {
    pub(super) fn parse(query: &str) -> Self {
        let mut filter = Filter::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "route" if !value.is_empty() => filter.route = Some(percent_decode(value)),
                "findings" => filter.findings = matches!(value, "1" | "on" | "true"),
                _ => {}
            }
        }
        filter
    }

    fn keeps(&self, report: &Report) -> bool {
        self.route.as_deref().is_none_or(|r| report.name() == r)
            && (!self.findings || !badges(report).is_empty())
    }
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space); invalid escapes stay as
/// they are, invalid UTF-8 is replaced.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The finding badges of a report: what the requests page marks.
pub(super) fn badges(report: &Report) -> Vec<&'static str> {
    let mut out = Vec::new();
    if !report.n_plus_one().is_empty() {
        out.push("N+1");
    }
    if !report.duplicates().is_empty() {
        out.push("duplicate");
    }
    if report.rejected_queries() > 0 {
        out.push("budget");
    }
    if !report.nested_acquires().is_empty() {
        out.push("nested acquire");
    }
    if !report.held_idle().is_empty() {
        out.push("held idle");
    }
    out
}

pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

pub(super) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One row of the requests page.
pub(super) struct RequestRow {
    pub(super) id: u64,
    pub(super) at: SystemTime,
    pub(super) name: String,
    pub(super) status: Option<u16>,
    pub(super) elapsed: Duration,
    pub(super) statements: u64,
    pub(super) failed: u64,
    pub(super) db: Duration,
    /// `None`: not measured (the observer's statements).
    pub(super) hold: Option<Duration>,
    pub(super) wait: Option<Duration>,
    pub(super) badges: Vec<&'static str>,
}

impl RequestRow {
    fn new(id: u64, at: SystemTime, report: &Report) -> Self {
        RequestRow {
            id,
            at,
            name: report.name().to_owned(),
            status: report.status(),
            elapsed: report.elapsed(),
            statements: report.queries(),
            failed: report.failed_queries(),
            db: report.db_time(),
            hold: report
                .connections_measured()
                .then(|| report.connection_hold_time()),
            wait: report
                .connections_measured()
                .then(|| report.pool_wait_time()),
            badges: badges(report),
        }
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "at_unix_ms": unix_ms(self.at),
            "scope": self.name,
            "status": self.status,
            "elapsed_ms": ms(self.elapsed),
            "statements": self.statements,
            "failed": self.failed,
            "db_ms": ms(self.db),
            "hold_ms": self.hold.map(ms),
            "pool_wait_ms": self.wait.map(ms),
            "findings": self.badges,
        })
    }
}

/// The requests page: kept reports newest first, filtered.
pub(super) struct RequestList {
    pub(super) rows: Vec<RequestRow>,
    pub(super) routes: Vec<String>,
    pub(super) kept: usize,
    pub(super) evicted: u64,
}

impl RequestList {
    pub(super) fn new(kept: &VecDeque<Kept>, evicted: u64, filter: &Filter) -> Self {
        let rows = kept
            .iter()
            .rev()
            .filter(|k| filter.keeps(&k.report))
            .map(|k| RequestRow::new(k.id, k.at, &k.report))
            .collect();
        let mut routes: Vec<String> = kept.iter().map(|k| k.report.name().to_owned()).collect();
        routes.sort();
        routes.dedup();
        RequestList {
            rows,
            routes,
            kept: kept.len(),
            evicted,
        }
    }

    pub(super) fn json(&self) -> Value {
        json!({
            "kept": self.kept,
            "evicted": self.evicted,
            "requests": self.rows.iter().map(RequestRow::json).collect::<Vec<_>>(),
        })
    }
}

/// One bar of the waterfall.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bar {
    pub(super) start: Duration,
    pub(super) duration: Duration,
    pub(super) failed: bool,
    /// An idle gap drawn on its connection's row (no statement ran on the held connection).
    pub(super) idle: bool,
}

/// What a waterfall row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    PoolWait,
    Held,
    Statement,
}

/// One waterfall row: the pool waits, the connection holds, or all executions of one
/// statement.
pub(super) struct Row {
    pub(super) lane: Lane,
    pub(super) label: String,
    pub(super) fingerprint: Option<String>,
    pub(super) bars: Vec<Bar>,
}

impl Row {
    pub(super) fn failed(&self) -> usize {
        self.bars.iter().filter(|b| b.failed).count()
    }
}

/// A request's waterfall.
pub(super) struct Waterfall {
    pub(super) span: Duration,
    pub(super) rows: Vec<Row>,
    pub(super) dropped: u64,
}

impl Waterfall {
    fn new(report: &Report) -> Option<Self> {
        let timeline = report.timeline()?;
        let names: HashMap<u64, &FingerprintStats> = report
            .fingerprints()
            .iter()
            .filter_map(|r| Some((r.fingerprint()?.id(), r)))
            .collect();
        let mut waits = Vec::new();
        let mut holds = Vec::new();
        let mut idles = Vec::new();
        let mut statements: Vec<(u64, Vec<Bar>)> = Vec::new();
        let mut entries: Vec<&TimelineEntry> = timeline.entries().iter().collect();
        entries.sort_by_key(|e| e.start);
        let mut span = report.elapsed();
        for entry in entries {
            span = span.max(entry.start + entry.duration);
            let bar = |failed| Bar {
                start: entry.start,
                duration: entry.duration,
                failed,
                idle: false,
            };
            match entry.kind {
                TimelineKind::PoolWait => waits.push(bar(false)),
                TimelineKind::Held { connection } => holds.push((connection, bar(false))),
                TimelineKind::Idle { connection } => idles.push((
                    connection,
                    Bar {
                        idle: true,
                        ..bar(false)
                    },
                )),
                TimelineKind::Statement {
                    fingerprint,
                    failed,
                } => match statements.iter_mut().find(|(id, _)| *id == fingerprint) {
                    Some((_, bars)) => bars.push(bar(failed)),
                    None => statements.push((fingerprint, vec![bar(failed)])),
                },
            }
        }
        let mut rows = Vec::new();
        if !waits.is_empty() {
            rows.push(Row {
                lane: Lane::PoolWait,
                label: "waiting for the pool".into(),
                fingerprint: None,
                bars: waits,
            });
        }
        // One row per connection: each connection the scope held (`acquire`, `begin`) gets its
        // own, with its idle gaps drawn on it; the connections of statements on `&Pool` share
        // rows, one per connection held at the same time.
        let mut held_rows: Vec<(u64, Vec<Bar>)> = Vec::new();
        for (connection, hold) in holds {
            let row = if connection != 0 {
                held_rows.iter_mut().find(|(c, _)| *c == connection)
            } else {
                held_rows.iter_mut().find(|(c, bars)| {
                    *c == 0
                        && bars
                            .last()
                            .is_some_and(|b| b.start + b.duration <= hold.start)
                })
            };
            match row {
                Some((_, bars)) => bars.push(hold),
                None => held_rows.push((connection, vec![hold])),
            }
        }
        for (connection, gap) in idles {
            if let Some((_, bars)) = held_rows.iter_mut().find(|(c, _)| *c == connection) {
                bars.push(gap);
            }
        }
        let many = held_rows.len() > 1;
        for (i, (_, bars)) in held_rows.into_iter().enumerate() {
            rows.push(Row {
                lane: Lane::Held,
                label: if many {
                    format!("connection {} held", i + 1)
                } else {
                    "connection held".into()
                },
                fingerprint: None,
                bars,
            });
        }
        for (id, bars) in statements {
            let (label, fingerprint) = match names.get(&id) {
                Some(row) => (row.normalized().to_owned(), Some(format!("{id:016x}"))),
                None => ("(other statements)".to_owned(), None),
            };
            rows.push(Row {
                lane: Lane::Statement,
                label,
                fingerprint,
                bars,
            });
        }
        Some(Waterfall {
            span,
            rows,
            dropped: timeline.dropped(),
        })
    }

    fn json(&self) -> Value {
        json!({
            "span_ms": ms(self.span),
            "dropped": self.dropped,
            "rows": self.rows.iter().map(|row| json!({
                "lane": match row.lane {
                    Lane::PoolWait => "pool_wait",
                    Lane::Held => "held",
                    Lane::Statement => "statement",
                },
                "label": row.label,
                "fingerprint": row.fingerprint,
                "count": row.bars.len(),
                "failed": row.failed(),
                "bars": row.bars.iter().map(|b| json!({
                    "start_ms": ms(b.start),
                    "duration_ms": ms(b.duration),
                    "failed": b.failed,
                    "idle": b.idle,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// One finding as the request page lists it.
pub(super) struct FindingView {
    pub(super) kind: &'static str,
    pub(super) statement: String,
    pub(super) count: u64,
    pub(super) call_site: String,
    pub(super) after: Option<String>,
    pub(super) suggestion: Option<String>,
    pub(super) advice: String,
}

impl FindingView {
    fn all(report: &Report) -> Vec<FindingView> {
        let mut out = Vec::new();
        for n in report.n_plus_one() {
            out.push(FindingView {
                kind: "N+1",
                statement: n.fingerprint().normalized().to_owned(),
                count: n.count(),
                call_site: n.call_site().to_owned(),
                after: n.parent().map(|p| p.normalized().to_owned()),
                suggestion: n.suggestion(),
                advice: match n.distinct_values() {
                    0 => "load the rows in one statement: the batched one below with an array \
                          of the values, or a JOIN with the statement before the loop"
                        .into(),
                    d => format!(
                        "{d} distinct values: load the rows in one statement, the batched one \
                         below with an array of the {d} values, or a JOIN with the statement \
                         before the loop"
                    ),
                },
            });
        }
        for d in report.duplicates() {
            out.push(FindingView {
                kind: "duplicate",
                statement: d.fingerprint().normalized().to_owned(),
                count: d.count(),
                call_site: d.call_site().to_owned(),
                after: None,
                suggestion: None,
                advice: if d.part_of_n_plus_one() {
                    format!(
                        "{} of its {} executions had the same parameters: batching the N+1 \
                         with its distinct values fetches them once",
                        d.count(),
                        d.executions()
                    )
                } else {
                    "the same rows fetched again and again, with no write between: load them \
                     once and pass them down, or cache them"
                        .into()
                },
            });
        }
        for n in report.nested_acquires() {
            out.push(FindingView {
                kind: "nested acquire",
                statement: String::new(),
                count: 1,
                call_site: n.acquired_at().to_owned(),
                after: Some(format!("connection held since {}", n.held_at())),
                suggestion: None,
                advice: "a second connection acquired while one is held: under load every \
                         request can hold one and wait for another"
                    .into(),
            });
        }
        for h in report.held_idle() {
            out.push(FindingView {
                kind: "held idle",
                statement: format!("{} … {}", h.from_statement(), h.to_statement()),
                count: 1,
                call_site: format!("{} → {}", h.from(), h.to()),
                after: None,
                suggestion: None,
                advice: format!(
                    "a connection held {:.0} ms with nothing running on it{}: {}",
                    h.idle().as_secs_f64() * 1000.0,
                    if h.in_transaction() {
                        ", in a transaction"
                    } else {
                        ""
                    },
                    if h.in_transaction() {
                        "move the work between them outside the transaction"
                    } else {
                        "release the connection before the work between them, or acquire it after"
                    }
                ),
            });
        }
        if report.rejected_queries() > 0 {
            out.push(FindingView {
                kind: "budget",
                statement: String::new(),
                count: report.rejected_queries(),
                call_site: String::new(),
                after: None,
                suggestion: None,
                advice: "statements refused before reaching PostgreSQL (query budget or N+1 in \
                         error mode)"
                    .into(),
            });
        }
        out
    }

    fn json(&self) -> Value {
        json!({
            "kind": self.kind,
            "statement": self.statement,
            "count": self.count,
            "call_site": self.call_site,
            "after": self.after,
            "suggestion": self.suggestion,
            "advice": self.advice,
        })
    }
}

/// A plan explained for one of a request's statements.
pub(super) struct PlanView {
    pub(super) statement: String,
    pub(super) size_class: String,
    pub(super) shape: String,
    pub(super) changes: u64,
}

pub(super) fn plans_for(report: &Report, pools: &[Watched]) -> Vec<PlanView> {
    let ids: Vec<u64> = report
        .fingerprints()
        .iter()
        .filter_map(|r| Some(r.fingerprint()?.id()))
        .collect();
    let mut out = Vec::new();
    for watched in pools {
        let plans = watched.pool.plans();
        for statement in plans.statements() {
            if !ids.contains(&statement.fingerprint()) {
                continue;
            }
            for plan in statement.plans() {
                out.push(PlanView {
                    statement: statement.statement().to_owned(),
                    size_class: plan.size_class().to_string(),
                    shape: plan.shape().to_string(),
                    changes: statement.changes(),
                });
            }
        }
    }
    out
}

/// One statement row of the request page's table.
pub(super) struct StatementView {
    pub(super) fingerprint: String,
    pub(super) statement: String,
    pub(super) count: u64,
    pub(super) failed: u64,
    pub(super) rows: u64,
    pub(super) total: Duration,
    pub(super) max: Duration,
}

/// The request page.
pub(super) struct RequestDetail {
    pub(super) row: RequestRow,
    pub(super) statements: Vec<StatementView>,
    pub(super) waterfall: Option<Waterfall>,
    pub(super) findings: Vec<FindingView>,
    pub(super) plans: Vec<PlanView>,
    pub(super) acquires: u64,
    /// The most connections the scope held at once.
    pub(super) max_held: u64,
    pub(super) rejected: u64,
}

impl RequestDetail {
    pub(super) fn new(id: u64, at: SystemTime, report: Report, plans: Vec<PlanView>) -> Self {
        let statements = report
            .fingerprints()
            .iter()
            .map(|r| StatementView {
                fingerprint: r.fingerprint().map_or_else(|| "-".repeat(16), |f| f.hex()),
                statement: r.normalized().to_owned(),
                count: r.count(),
                failed: r.failed(),
                rows: r.rows(),
                total: r.total_time(),
                max: r.max_time(),
            })
            .collect();
        RequestDetail {
            row: RequestRow::new(id, at, &report),
            statements,
            waterfall: Waterfall::new(&report),
            findings: FindingView::all(&report),
            plans,
            acquires: report.connections_acquired(),
            max_held: report.max_connections_held(),
            rejected: report.rejected_queries(),
        }
    }

    pub(super) fn json(&self) -> Value {
        let mut value = self.row.json();
        let extra = json!({
            "connections_acquired": self.acquires,
            "rejected": self.rejected,
            "statement_rows": self.statements.iter().map(|s| json!({
                "fingerprint": s.fingerprint,
                "statement": s.statement,
                "count": s.count,
                "failed": s.failed,
                "rows": s.rows,
                "total_ms": ms(s.total),
                "max_ms": ms(s.max),
            })).collect::<Vec<_>>(),
            "waterfall": self.waterfall.as_ref().map(Waterfall::json),
            "finding_details": self.findings.iter().map(FindingView::json).collect::<Vec<_>>(),
            "plans": self.plans.iter().map(|p| json!({
                "statement": p.statement,
                "size_class": p.size_class,
                "shape": p.shape,
                "changes": p.changes,
            })).collect::<Vec<_>>(),
        });
        if let (Value::Object(map), Value::Object(extra)) = (&mut value, extra) {
            map.extend(extra);
        }
        value
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One route of the routes page, over the kept reports.
pub(super) struct RouteStats {
    pub(super) route: String,
    pub(super) requests: usize,
    pub(super) statements_p50: u64,
    pub(super) statements_p99: u64,
    pub(super) hold_p50: Duration,
    pub(super) hold_p99: Duration,
    pub(super) mean_hold: Duration,
    pub(super) with_findings: usize,
    pub(super) badges: Vec<&'static str>,
}

impl RouteStats {
    pub(super) fn all(kept: &VecDeque<Kept>) -> Vec<RouteStats> {
        let mut by_route: Vec<(&str, Vec<&Report>)> = Vec::new();
        for k in kept {
            match by_route.iter_mut().find(|(r, _)| *r == k.report.name()) {
                Some((_, reports)) => reports.push(&k.report),
                None => by_route.push((k.report.name(), vec![&k.report])),
            }
        }
        let mut out: Vec<RouteStats> = by_route
            .into_iter()
            .map(|(route, reports)| {
                let mut statements: Vec<u64> = reports.iter().map(|r| r.queries()).collect();
                statements.sort_unstable();
                let mut holds: Vec<Duration> =
                    reports.iter().map(|r| r.connection_hold_time()).collect();
                holds.sort_unstable();
                let total: Duration = holds.iter().sum();
                let mut badges_seen: Vec<&'static str> = Vec::new();
                let mut with_findings = 0;
                for r in &reports {
                    let b = badges(r);
                    with_findings += usize::from(!b.is_empty());
                    for badge in b {
                        if !badges_seen.contains(&badge) {
                            badges_seen.push(badge);
                        }
                    }
                }
                RouteStats {
                    route: route.to_owned(),
                    requests: reports.len(),
                    statements_p50: percentile(&statements, 0.5),
                    statements_p99: percentile(&statements, 0.99),
                    hold_p50: percentile(&holds, 0.5),
                    hold_p99: percentile(&holds, 0.99),
                    mean_hold: total / u32::try_from(reports.len().max(1)).unwrap_or(u32::MAX),
                    with_findings,
                    badges: badges_seen,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (b.mean_hold * b.requests as u32)
                .cmp(&(a.mean_hold * a.requests as u32))
                .then_with(|| a.route.cmp(&b.route))
        });
        out
    }

    fn json(&self) -> Value {
        json!({
            "route": self.route,
            "requests": self.requests,
            "statements_p50": self.statements_p50,
            "statements_p99": self.statements_p99,
            "hold_p50_ms": ms(self.hold_p50),
            "hold_p99_ms": ms(self.hold_p99),
            "mean_hold_ms": ms(self.mean_hold),
            "requests_with_findings": self.with_findings,
            "findings": self.badges,
        })
    }
}

/// A watched pool: its stats now, recent samples, and its starvation diagnosis.
pub(super) struct PoolView {
    pub(super) name: String,
    pub(super) now: crate::PoolStats,
    pub(super) samples: Vec<super::Sample>,
    pub(super) mean_hold: Option<Duration>,
    pub(super) capacity_per_second: Option<f64>,
    pub(super) starving: bool,
    /// Per scope in the diagnosis window: name, requests, mean hold, and the requests per
    /// second the pool could serve if every request held as long.
    pub(super) scopes: Vec<(String, u64, Duration, Option<f64>)>,
    /// Seconds since the diagnosis shown was taken: `None` when it is the current window,
    /// `Some` when traffic stopped and the last window that had traffic is shown instead.
    pub(super) window_age: Option<u64>,
}

impl PoolView {
    pub(super) fn new(watched: &Watched) -> Self {
        let now = watched.pool.stats();
        let current = watched.pool.diagnose();
        // Traffic stopped: the last window that had some, with its age, rather than nothing.
        let (diagnosis, window_age) = match &watched.last_busy {
            Some((at, busy)) if current.scopes().is_empty() => {
                (busy.clone(), Some(super::now_secs().saturating_sub(*at)))
            }
            _ => (current, None),
        };
        let max = f64::from(now.max_connections());
        let scopes = diagnosis
            .scopes()
            .iter()
            .map(|s| {
                let mean = s.mean_hold_time();
                let capacity = (!mean.is_zero()).then(|| max / mean.as_secs_f64());
                (s.scope().to_owned(), s.requests(), mean, capacity)
            })
            .collect();
        PoolView {
            name: watched.pool.name().to_owned(),
            now,
            samples: watched.samples.iter().copied().collect(),
            mean_hold: diagnosis.mean_hold_time(),
            capacity_per_second: diagnosis.capacity_per_second(),
            starving: diagnosis.is_starving(),
            scopes,
            window_age,
        }
    }

    /// Acquire timeouts between consecutive samples.
    pub(super) fn timeouts_per_sample(&self) -> Vec<u64> {
        self.samples
            .windows(2)
            .map(|w| {
                w[1].stats
                    .acquire_timeouts()
                    .saturating_sub(w[0].stats.acquire_timeouts())
            })
            .collect()
    }

    pub(super) fn json(&self) -> Value {
        json!({
            "name": self.name,
            "size": self.now.size(),
            "in_use": self.now.in_use(),
            "idle": self.now.idle(),
            "max_connections": self.now.max_connections(),
            "waiters": self.now.waiters(),
            "acquire_timeouts": self.now.acquire_timeouts(),
            "acquires": self.now.acquires(),
            "starving": self.starving,
            "mean_hold_ms": self.mean_hold.map(ms),
            "capacity_per_second": self.capacity_per_second,
            "window_age_s": self.window_age,
            "scopes": self.scopes.iter().map(|(name, requests, mean, capacity)| json!({
                "scope": name,
                "requests": requests,
                "mean_hold_ms": ms(*mean),
                "capacity_per_second": capacity,
            })).collect::<Vec<_>>(),
            "samples": self.samples.iter().map(|s| json!({
                "at_unix_s": s.at,
                "size": s.stats.size(),
                "in_use": s.stats.in_use(),
                "idle": s.stats.idle(),
                "waiters": s.stats.waiters(),
                "acquire_timeouts": s.stats.acquire_timeouts(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// The routes page.
pub(super) struct RoutesView {
    pub(super) routes: Vec<RouteStats>,
    pub(super) pools: Vec<PoolView>,
}

impl RoutesView {
    pub(super) fn json(&self) -> Value {
        json!({
            "routes": self.routes.iter().map(RouteStats::json).collect::<Vec<_>>(),
            "pools": self.pools.iter().map(|p| json!({
                "name": p.name,
                "max_connections": p.now.max_connections(),
                "mean_hold_ms": p.mean_hold.map(ms),
                "capacity_per_second": p.capacity_per_second,
                "window_age_s": p.window_age,
                "scopes": p.scopes.iter().map(|(name, requests, mean, capacity)| json!({
                    "scope": name,
                    "requests": requests,
                    "mean_hold_ms": ms(*mean),
                    "capacity_per_second": capacity,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_form_decoded() {
        assert_eq!(percent_decode("GET%20%2Fapi%2Ffeed"), "GET /api/feed");
        assert_eq!(percent_decode("GET+%2Fx"), "GET /x");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%é%"), "%é%");
        let f = Filter::parse("route=GET+%2Fa&findings=1");
        assert_eq!(f.route.as_deref(), Some("GET /a"));
        assert!(f.findings);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[7_u64], 0.99), 7);
        assert_eq!(percentile::<u64>(&[], 0.5), 0);
    }
}
