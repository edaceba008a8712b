//! Statement spans, scope summaries and N+1 span events.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::semconv::ErrorAttributes;
use super::server::shared_str;
use super::{SCHEMA_URL, attr};
use crate::fingerprint::Fingerprint;
use crate::report::Report;

/// The attributes of one fingerprint, built on its first statement: the span name
/// (`db.query.summary`), the statement-specific span attributes, the normalized
/// `db.query.text`, and the full attribute set of a successful `db.client.operation.duration`
/// measurement.
pub(crate) struct FingerprintAttributes {
    pub(super) name: Cow<'static, str>,
    pub(super) attributes: Vec<KeyValue>,
    pub(super) text: KeyValue,
    pub(super) ok_metric: Arc<[KeyValue]>,
    pub(super) fingerprint: u64,
}

impl FingerprintAttributes {
    pub(super) fn new(fp: &Fingerprint, ok_metric: Arc<[KeyValue]>) -> Self {
        let summary = fp.summary();
        // No `db.operation.name` / `db.collection.name`: the PostgreSQL conventions say they
        // SHOULD NOT be extracted from the query text; the summary carries both.
        let mut attributes = Vec::with_capacity(2);
        if !summary.is_empty() {
            attributes.push(KeyValue::new(attr::DB_QUERY_SUMMARY, shared_str(summary)));
        }
        attributes.push(KeyValue::new(attr::PGSCOPE_FINGERPRINT, fp.hex()));
        FingerprintAttributes {
            // Semantic conventions: the span name is `db.query.summary` when there is one, else
            // the system.
            name: if summary.is_empty() {
                Cow::Borrowed("postgresql")
            } else {
                Cow::Owned(summary.to_owned())
            },
            attributes,
            text: KeyValue::new(attr::DB_QUERY_TEXT, shared_str(fp.normalized())),
            ok_metric,
            fingerprint: fp.id(),
        }
    }
}

/// Instrumentation scope of pgscope's statement spans.
fn instrumentation_scope() -> &'static InstrumentationScope {
    static SCOPE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE.get_or_init(|| {
        InstrumentationScope::builder("pgscope")
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(SCHEMA_URL)
            .build()
    })
}

/// The CLIENT span of one statement, built with the OpenTelemetry API from the global tracer
/// provider (as OpenTelemetry instrumentation libraries do), as a child of the current
/// `tracing` span's OpenTelemetry context (or of the current OpenTelemetry context outside
/// any `tracing` span). Non-recording, and nearly free, when no provider is installed or the
/// sampler drops the trace. With span compression, the span is not built when the statement
/// starts: its parent and start are kept, and the scope merges it with the statements next to
/// it ([`Compressed`]).
pub(crate) enum StatementSpan {
    /// No span (statement spans turned off for the pool).
    None,
    Live(BoxedSpan),
    Deferred(Box<Deferred>),
}

/// A statement whose span is built later, maybe as part of a compressed span.
pub(crate) struct Deferred {
    parent: opentelemetry::Context,
    parent_id: opentelemetry::trace::SpanId,
    fingerprint: u64,
    start: SystemTime,
    /// Built when the span is: a merged statement never pays for them.
    server: Arc<[KeyValue]>,
    own: Arc<FingerprintAttributes>,
    raw_sql: Option<String>,
    end: SystemTime,
    elapsed: std::time::Duration,
    rows: u64,
    error: Option<ErrorAttributes>,
}

/// The parent a statement starting now hangs under: the current `tracing` span's
/// OpenTelemetry context, or the current OpenTelemetry context.
fn current_parent() -> opentelemetry::Context {
    let current = tracing::Span::current();
    let parent = if current.is_none() {
        opentelemetry::Context::current()
    } else {
        current.context()
    };
    if parent.has_active_span() {
        parent
    } else {
        // The current `tracing` span is not exported (filtered out of the OpenTelemetry
        // layer): the nearest exported one is the active OpenTelemetry context.
        opentelemetry::Context::current()
    }
}

fn statement_attributes(
    server: &[KeyValue],
    own: &FingerprintAttributes,
    raw_sql: Option<&str>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(server.len() + own.attributes.len() + 5);
    attributes.extend_from_slice(server);
    attributes.extend_from_slice(&own.attributes);
    attributes.push(match raw_sql {
        Some(sql) => KeyValue::new(attr::DB_QUERY_TEXT, sql.to_owned()),
        None => own.text.clone(),
    });
    attributes
}

/// Sets the row count and, on failure, `error.type`, `db.response.status_code` and status
/// Error.
fn finish_span(span: &mut BoxedSpan, rows: u64, error: Option<&ErrorAttributes>) {
    if !span.is_recording() {
        return;
    }
    span.set_attribute(KeyValue::new(
        attr::DB_RESPONSE_RETURNED_ROWS,
        i64::try_from(rows).unwrap_or(i64::MAX),
    ));
    if let Some((kind, code)) = error {
        span.set_attribute(KeyValue::new(attr::ERROR_TYPE, kind.clone()));
        if let Some(code) = code {
            span.set_attribute(KeyValue::new(attr::DB_RESPONSE_STATUS_CODE, code.clone()));
        }
        // The description is the error class, never the server's message (which can quote
        // values).
        span.set_status(Status::error(kind.clone()));
    }
}

impl StatementSpan {
    /// No span (statement spans turned off for the pool).
    pub(crate) fn none() -> Self {
        StatementSpan::None
    }

    pub(crate) fn start(
        server: &Arc<[KeyValue]>,
        own: &Arc<FingerprintAttributes>,
        raw_sql: Option<&str>,
        start_time: Option<SystemTime>,
        compress: bool,
    ) -> Self {
        let parent = current_parent();
        if compress {
            let parent_id = parent.span().span_context().span_id();
            let start = start_time.unwrap_or_else(SystemTime::now);
            return StatementSpan::Deferred(Box::new(Deferred {
                parent,
                parent_id,
                fingerprint: own.fingerprint,
                start,
                server: Arc::clone(server),
                own: Arc::clone(own),
                raw_sql: raw_sql.map(str::to_owned),
                end: start,
                elapsed: std::time::Duration::ZERO,
                rows: 0,
                error: None,
            }));
        }
        let tracer = opentelemetry::global::tracer_with_scope(instrumentation_scope().clone());
        let span = tracer
            .span_builder(own.name.clone())
            .with_kind(SpanKind::Client)
            .with_attributes(statement_attributes(server, own, raw_sql));
        let span = match start_time {
            Some(at) => span.with_start_time(at),
            None => span,
        }
        .start_with_context(&tracer, &parent);
        StatementSpan::Live(span)
    }

    /// Ends the span with the row count, and on failure `error.type`,
    /// `db.response.status_code` and status Error. A deferred span only notes how it ended.
    pub(crate) fn end(
        &mut self,
        rows: u64,
        elapsed: std::time::Duration,
        error: Option<&ErrorAttributes>,
    ) {
        match self {
            StatementSpan::None => {}
            StatementSpan::Deferred(deferred) => {
                deferred.end = deferred.start + elapsed;
                deferred.elapsed = elapsed;
                deferred.rows = rows;
                deferred.error = error.cloned();
            }
            StatementSpan::Live(_) => {
                if let StatementSpan::Live(mut span) = std::mem::replace(self, StatementSpan::None)
                {
                    finish_span(&mut span, rows, error);
                    span.end();
                }
            }
        }
    }

    /// The ended statement, when its span waits for the scope to merge it.
    pub(crate) fn take_deferred(&mut self) -> Option<Box<Deferred>> {
        match std::mem::replace(self, StatementSpan::None) {
            StatementSpan::Deferred(deferred) => Some(deferred),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// Consecutive statements of one scope with the same fingerprint under the same parent,
/// exported as one span: the first statement's start and attributes, the last one's end,
/// `pgscope.composite.count` and `pgscope.composite.duration_sum_ms`, the rows summed.
pub(crate) struct Compressed {
    first: Box<Deferred>,
    count: u64,
    sum: std::time::Duration,
    rows: u64,
    end: SystemTime,
}

impl Compressed {
    fn new(first: Box<Deferred>) -> Self {
        Compressed {
            count: 1,
            sum: first.elapsed,
            rows: first.rows,
            end: first.end,
            first,
        }
    }

    /// Adds `next` to the run if it continues it; else hands it back.
    fn extend(&mut self, next: Box<Deferred>) -> Result<(), Box<Deferred>> {
        if next.error.is_some()
            || next.fingerprint != self.first.fingerprint
            || next.parent_id != self.first.parent_id
        {
            return Err(next);
        }
        self.count += 1;
        self.sum += next.elapsed;
        self.rows += next.rows;
        self.end = self.end.max(next.end);
        Ok(())
    }

    /// Builds and ends the span.
    pub(crate) fn export(self) {
        let Compressed {
            first,
            count,
            sum,
            rows,
            end,
        } = self;
        let Deferred {
            parent,
            start,
            server,
            own,
            raw_sql,
            error,
            ..
        } = *first;
        let mut attributes = statement_attributes(&server, &own, raw_sql.as_deref());
        if count > 1 {
            attributes.push(KeyValue::new(attr::PGSCOPE_COMPOSITE_COUNT, count as i64));
            attributes.push(KeyValue::new(
                attr::PGSCOPE_COMPOSITE_DURATION_SUM_MS,
                sum.as_secs_f64() * 1000.0,
            ));
        }
        let tracer = opentelemetry::global::tracer_with_scope(instrumentation_scope().clone());
        let mut span = tracer
            .span_builder(own.name.clone())
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        finish_span(&mut span, rows, error.as_ref());
        span.end_with_timestamp(end);
    }
}

/// A scope's run of statements waiting to be exported as one span.
#[derive(Default)]
pub(crate) struct PendingRun(Option<Compressed>);

impl PendingRun {
    /// Adds an ended statement: extends the run, or ends it (returned, to export outside any
    /// lock) and starts a new one. A failed statement is never merged: it is exported alone.
    pub(crate) fn add(&mut self, next: Box<Deferred>) -> Vec<Compressed> {
        let next = match &mut self.0 {
            Some(run) => match run.extend(next) {
                Ok(()) => return Vec::new(),
                Err(next) => next,
            },
            None => next,
        };
        let mut done: Vec<Compressed> = self.0.take().into_iter().collect();
        if next.error.is_some() {
            done.push(Compressed::new(next));
        } else {
            self.0 = Some(Compressed::new(next));
        }
        done
    }

    /// Ends the run (the scope ended).
    pub(crate) fn take(&mut self) -> Option<Compressed> {
        self.0.take()
    }
}

/// Whether `span` is exported as an OpenTelemetry span (seen by a `tracing-opentelemetry`
/// layer), so attributes set on it reach the trace.
/// The W3C `traceparent` of the current span, when it has a valid (exported) context.
pub(crate) fn traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

pub(crate) fn is_exported(span: &tracing::Span) -> bool {
    !span.is_none() && span.context().span().span_context().is_valid()
}

/// Scope summary on the scope's span, and one span event per N+1 found.
/// `named`: whether the span still needs the `pgscope.scope` attribute (a span pgscope opened
/// got it as a field at creation; a request span the scope used did not).
pub(crate) fn summarize_scope(span: &tracing::Span, report: &Report, named: bool) {
    if !span.is_disabled() {
        if !named {
            span.set_attribute(attr::PGSCOPE_SCOPE, report.name().to_owned());
        }
        span.set_attribute(attr::PGSCOPE_QUERIES, report.queries() as i64);
        span.set_attribute(
            attr::PGSCOPE_DB_TIME_MS,
            report.db_time().as_secs_f64() * 1000.0,
        );
        span.set_attribute(
            attr::PGSCOPE_CONNECTION_HOLD_MS,
            report.connection_hold_time().as_secs_f64() * 1000.0,
        );
        span.set_attribute(
            attr::PGSCOPE_POOL_WAIT_MS,
            report.pool_wait_time().as_secs_f64() * 1000.0,
        );
        span.set_attribute(attr::PGSCOPE_N_PLUS_ONE, report.n_plus_one().len() as i64);
        for item in report.n_plus_one() {
            let mut attributes = finding_attributes(
                item.fingerprint(),
                item.count(),
                item.threshold(),
                item.call_site(),
                item.scope(),
            );
            if let Some(batched) = item.suggestion() {
                attributes.push(KeyValue::new(attr::PGSCOPE_SUGGESTION, batched));
            }
            span.add_event(attr::PGSCOPE_N_PLUS_ONE, attributes);
        }
        for item in report.duplicates() {
            let attributes = finding_attributes(
                item.fingerprint(),
                item.count(),
                item.threshold(),
                item.call_site(),
                item.scope(),
            );
            span.add_event(attr::PGSCOPE_DUPLICATE, attributes);
        }
    }
}

/// The attributes of a finding's span event.
fn finding_attributes(
    fp: &Fingerprint,
    count: u64,
    threshold: u32,
    call_site: &str,
    scope: &str,
) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new(attr::PGSCOPE_FINGERPRINT, fp.hex()),
        KeyValue::new(attr::DB_QUERY_TEXT, fp.normalized().to_owned()),
        KeyValue::new(
            attr::PGSCOPE_COUNT,
            i64::try_from(count).unwrap_or(i64::MAX),
        ),
        KeyValue::new(attr::PGSCOPE_THRESHOLD, i64::from(threshold)),
        KeyValue::new(attr::CODE_LOCATION, call_site.to_owned()),
        KeyValue::new(attr::PGSCOPE_ROUTE, scope.to_owned()),
    ];
    // The semantic-convention code attributes, when the call site is `file:line`.
    if let Some((file, line)) = call_site.rsplit_once(':')
        && let Ok(line) = line.parse::<i64>()
    {
        attributes.push(KeyValue::new(attr::CODE_FILE_PATH, file.to_owned()));
        attributes.push(KeyValue::new(attr::CODE_LINE_NUMBER, line));
    }
    attributes
}

/// A plan change as an event on `span` (the request's span while it is open): `shapes` and
/// `sizes` are (from, to).
pub(crate) fn plan_change_event(
    span: &tracing::Span,
    fingerprint: u64,
    statement: &str,
    shapes: [&str; 2],
    sizes: [String; 2],
    call_site: &str,
) {
    if span.is_disabled() {
        return;
    }
    let [from_size, to_size] = sizes;
    span.add_event(
        attr::PGSCOPE_PLAN_CHANGE,
        vec![
            KeyValue::new(attr::PGSCOPE_FINGERPRINT, format!("{fingerprint:016x}")),
            KeyValue::new(attr::DB_QUERY_TEXT, statement.to_owned()),
            KeyValue::new(attr::PGSCOPE_PLAN_FROM, shapes[0].to_owned()),
            KeyValue::new(attr::PGSCOPE_PLAN_TO, shapes[1].to_owned()),
            KeyValue::new(attr::PGSCOPE_PLAN_FROM_SIZE, from_size),
            KeyValue::new(attr::PGSCOPE_PLAN_TO_SIZE, to_size),
            KeyValue::new(attr::CODE_LOCATION, call_site.to_owned()),
        ],
    );
}
