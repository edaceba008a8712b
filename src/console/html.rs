//! The console's pages as HTML: one embedded stylesheet and script, every string escaped.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::view::{
    Filter, Lane, PoolView, RequestDetail, RequestList, RequestRow, RoutesView, Waterfall, ms,
};

/// Text made safe for HTML content and double- or single-quoted attributes.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The requests page's address under `base` (axum's `nest` serves `/_pgscope`, not
/// `/_pgscope/`).
fn home(base: &str) -> String {
    if base.is_empty() {
        "/".to_owned()
    } else {
        escape(base)
    }
}

/// A query-string value: everything but unreserved characters percent-encoded.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = r#"
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#f8f9fb; --accent:#3559c7;
  --wait:#f0a202; --held:#9aa7c7; --idle:#f4c7a1; --stmt:#3559c7; --fail:#d92d20; --warn:#b54708; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { background:#1d2330; color:#fff; padding:10px 24px; display:flex; gap:24px; align-items:center; }
header b { font-size:15px; letter-spacing:.02em; }
header nav a { color:#c9d1e6; text-decoration:none; margin-right:16px; }
header nav a.on { color:#fff; border-bottom:2px solid #7f9cf5; padding-bottom:2px; }
main { padding:18px 24px 40px; max-width:1400px; }
h1 { font-size:18px; margin:4px 0 12px; }
h2 { font-size:15px; margin:22px 0 8px; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#f2f4f7; font-weight:600; font-size:12px; color:#475467; white-space:nowrap; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr:hover td { background:#f5f8ff; }
a { color:var(--accent); }
code, .sql { font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
.muted { color:var(--muted); }
.badge { display:inline-block; padding:1px 7px; border-radius:10px; font-size:11.5px; font-weight:600; margin-right:4px; background:#fef0c7; color:var(--warn); }
.badge.n1 { background:#fee4e2; color:var(--fail); }
.status-err { color:var(--fail); font-weight:600; }
.bar-tools { display:flex; gap:14px; align-items:center; margin-bottom:12px; flex-wrap:wrap; }
.bar-tools form { display:flex; gap:8px; align-items:center; }
button, select { font:inherit; padding:3px 8px; }
.cards { display:flex; gap:12px; flex-wrap:wrap; margin-bottom:14px; }
.card { background:#fff; border:1px solid var(--line); padding:8px 14px; min-width:120px; }
.card .v { font-size:18px; font-weight:600; font-variant-numeric:tabular-nums; }
.card .k { font-size:12px; color:var(--muted); }
.wf { background:#fff; border:1px solid var(--line); padding:8px 12px; }
.wf-row { display:flex; align-items:center; min-height:24px; border-bottom:1px dashed #eef0f4; }
.wf-label { width:38%; padding-right:12px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
.wf-label .times { font:600 12px system-ui,sans-serif; color:var(--fail); margin-left:6px; }
.wf-track { position:relative; flex:1; height:16px; background:repeating-linear-gradient(90deg,transparent 0 calc(25% - 1px),#eef0f4 calc(25% - 1px) 25%); }
.wf-track span { position:absolute; top:2px; height:12px; min-width:2px; border-radius:2px; background:var(--stmt); opacity:.9; }
.lane-wait .wf-track span { background:var(--wait); }
.lane-held .wf-track span { background:var(--held); top:5px; height:6px; }
.lane-held .wf-track span.idle { background:var(--idle); top:3px; height:10px; }
.wf-track span.fail { background:var(--fail); }
.wf-axis { display:flex; justify-content:space-between; margin-left:38%; font-size:11px; color:var(--muted); }
.finding { background:#fff; border:1px solid var(--line); border-left:4px solid var(--fail); padding:10px 14px; margin-bottom:10px; }
.finding.duplicate, .finding.budget, .finding.nested { border-left-color:var(--warn); }
.finding .what { font-weight:600; margin-bottom:4px; }
.finding dl { display:grid; grid-template-columns:max-content 1fr; gap:3px 14px; margin:6px 0 0; }
.finding dt { color:var(--muted); }
.finding dd { margin:0; }
.legend span { display:inline-block; width:10px; height:10px; margin:0 4px 0 12px; vertical-align:middle; }
svg text { font-size:10px; fill:var(--muted); }
"#;

const SCRIPT: &str = r#"
(function () {
  var box = document.getElementById('refresh');
  if (!box) return;
  var key = 'pgscope.console.refresh';
  box.checked = localStorage.getItem(key) !== 'off';
  var timer = null;
  function arm() {
    if (timer) clearTimeout(timer);
    timer = box.checked ? setTimeout(function () { location.reload(); }, 2000) : null;
  }
  box.addEventListener('change', function () {
    localStorage.setItem(key, box.checked ? 'on' : 'off');
    arm();
  });
  arm();
})();
"#;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Requests,
    Routes,
    Pool,
    None,
}

fn layout(base: &str, title: &str, nav: Nav, body: &str) -> String {
    let link = |path: &str, label: &str, this: Nav| {
        let href = if path == "/" {
            home(base)
        } else {
            format!("{}{path}", escape(base))
        };
        format!(
            r#"<a href="{href}"{}>{label}</a>"#,
            if nav == this { r#" class="on""# } else { "" }
        )
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · pgscope</title><style>{STYLE}</style></head><body>\
         <header><b>pgscope console</b><nav>{}{}{}</nav></header><main>{body}</main>\
         <script>{SCRIPT}</script></body></html>",
        link("/", "Requests", Nav::Requests),
        link("/routes", "Routes", Nav::Routes),
        link("/pool", "Pool", Nav::Pool),
        title = escape(title),
    )
}

/// `HH:MM:SS` (UTC).
fn clock(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, (day % 3600) / 60, day % 60)
}

fn fmt_ms(d: Duration) -> String {
    let v = ms(d);
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn badge_html(badges: &[&str]) -> String {
    badges
        .iter()
        .map(|b| {
            format!(
                r#"<span class="badge{}">{}</span>"#,
                if *b == "N+1" { " n1" } else { "" },
                escape(b)
            )
        })
        .collect()
}

fn status_html(status: Option<u16>) -> String {
    match status {
        Some(s) if s >= 500 => format!(r#"<span class="status-err">{s}</span>"#),
        Some(s) => s.to_string(),
        None => r#"<span class="muted">–</span>"#.into(),
    }
}

pub(super) fn not_found(base: &str, what: &str) -> String {
    layout(
        base,
        "Not found",
        Nav::None,
        &format!(
            "<h1>Not found</h1><p>{}</p><p><a href=\"{}\">Back to the requests</a></p>",
            escape(what),
            home(base)
        ),
    )
}

fn request_row(base: &str, row: &RequestRow) -> String {
    format!(
        "<tr data-id=\"{id}\"><td class=\"muted\">{at}</td><td><a href=\"{base}/requests/{id}\">{name}</a></td>\
         <td class=\"n\">{status}</td><td class=\"n\">{elapsed}</td><td class=\"n statements\">{statements}{failed}</td>\
         <td class=\"n\">{db}</td><td class=\"n\">{hold}</td><td class=\"n\">{wait}</td><td class=\"findings\">{badges}</td></tr>",
        id = row.id,
        at = clock(row.at),
        base = escape(base),
        name = escape(&row.name),
        status = status_html(row.status),
        elapsed = fmt_ms(row.elapsed),
        statements = row.statements,
        failed = if row.failed > 0 {
            format!(
                r#" <span class="status-err">({} failed)</span>"#,
                row.failed
            )
        } else {
            String::new()
        },
        db = fmt_ms(row.db),
        hold = measured(row.hold),
        wait = measured(row.wait),
        badges = badge_html(&row.badges),
    )
}

pub(super) fn requests(base: &str, list: &RequestList, filter: &Filter) -> String {
    let mut body = String::new();
    let options: String = list
        .routes
        .iter()
        .map(|r| {
            format!(
                "<option value=\"{v}\"{sel}>{v}</option>",
                v = escape(r),
                sel = if filter.route.as_deref() == Some(r.as_str()) {
                    " selected"
                } else {
                    ""
                }
            )
        })
        .collect();
    let _ = write!(
        body,
        "<h1>Requests <span class=\"muted\">({shown} shown of {kept} kept{evicted})</span></h1>\
         <div class=\"bar-tools\"><form method=\"get\" action=\"{home}\">\
         <select name=\"route\"><option value=\"\">all routes</option>{options}</select>\
         <label><input type=\"checkbox\" name=\"findings\" value=\"1\"{checked}> has findings</label>\
         <button type=\"submit\">Filter</button></form>\
         <label><input type=\"checkbox\" id=\"refresh\"> auto-refresh</label></div>",
        shown = list.rows.len(),
        kept = list.kept,
        evicted = if list.evicted > 0 {
            format!(", {} older dropped", list.evicted)
        } else {
            String::new()
        },
        home = home(base),
        checked = if filter.findings { " checked" } else { "" },
    );
    body.push_str(
        "<table id=\"requests\"><thead><tr><th>time (UTC)</th><th>scope</th><th class=\"n\">status</th>\
         <th class=\"n\">ms</th><th class=\"n\">statements</th><th class=\"n\">db ms</th>\
         <th class=\"n\">hold ms</th><th class=\"n\">pool wait ms</th><th>findings</th></tr></thead><tbody>",
    );
    for row in &list.rows {
        body.push_str(&request_row(base, row));
    }
    if list.rows.is_empty() {
        body.push_str(
            "<tr><td colspan=\"9\" class=\"muted\">No requests yet: pass <code>console.hook()</code> \
             to <code>ScopeLayer::on_report</code> and send one.</td></tr>",
        );
    }
    body.push_str("</tbody></table>");
    layout(base, "Requests", Nav::Requests, &body)
}

fn card(value: &str, key: &str) -> String {
    format!(
        "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
        value,
        escape(key)
    )
}

fn waterfall(w: &Waterfall) -> String {
    let span = w.span.as_secs_f64().max(1e-9);
    let pct = |d: Duration| (d.as_secs_f64() / span * 100.0).clamp(0.0, 100.0);
    let mut out = String::from("<div class=\"wf\" id=\"waterfall\">");
    let _ = write!(out, "<div class=\"wf-axis\">");
    for i in 0..=4 {
        let _ = write!(
            out,
            "<span>{:.1} ms</span>",
            ms(w.span) * f64::from(i) / 4.0
        );
    }
    out.push_str("</div>");
    for row in &w.rows {
        let lane = match row.lane {
            Lane::PoolWait => "lane-wait",
            Lane::Held => "lane-held",
            Lane::Statement => "lane-stmt",
        };
        let times = if row.lane == Lane::Statement && row.bars.len() > 1 {
            format!("<span class=\"times\">×{}</span>", row.bars.len())
        } else {
            String::new()
        };
        let failed = match row.failed() {
            0 => String::new(),
            n => format!("<span class=\"times\">{n} failed</span>"),
        };
        let _ = write!(
            out,
            "<div class=\"wf-row {lane}\" data-count=\"{count}\"{fp}><div class=\"wf-label\" title=\"{label}\">{label}{times}{failed}</div><div class=\"wf-track\">",
            count = row.bars.len(),
            fp = row
                .fingerprint
                .as_ref()
                .map(|f| format!(" data-fingerprint=\"{f}\""))
                .unwrap_or_default(),
            label = escape(&row.label),
        );
        for bar in &row.bars {
            let left = pct(bar.start);
            let width = pct(bar.duration).min(100.0 - left);
            let _ = write!(
                out,
                "<span{cls} style=\"left:{left:.3}%;width:{width:.3}%\" title=\"at {at} ms, {dur} ms{f}\"></span>",
                cls = if bar.failed {
                    " class=\"fail\""
                } else if bar.idle {
                    " class=\"idle\""
                } else {
                    ""
                },
                at = fmt_ms(bar.start),
                dur = fmt_ms(bar.duration),
                f = if bar.failed {
                    ", failed"
                } else if bar.idle {
                    ", idle: no statement on the held connection"
                } else {
                    ""
                },
            );
        }
        out.push_str("</div></div>");
    }
    out.push_str(
        "<div class=\"legend muted\"><span style=\"background:var(--wait)\"></span>waiting for the pool\
         <span style=\"background:var(--held)\"></span>connection held\
         <span style=\"background:var(--idle)\"></span>held idle\
         <span style=\"background:var(--stmt)\"></span>statement\
         <span style=\"background:var(--fail)\"></span>failed</div>",
    );
    if w.dropped > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">… and {} more entries not kept (the first 256 of a scope are).</p>",
            w.dropped
        );
    }
    out.push_str("</div>");
    out
}

pub(super) fn request(base: &str, d: &RequestDetail) -> String {
    let r = &d.row;
    let mut body = format!(
        "<h1><a href=\"{b}\">Requests</a> / <span id=\"scope\">{name}</span> {badges}</h1><div class=\"cards\">{}{}{}{}{}{}{}</div>",
        card(&status_html(r.status), "status"),
        card(&fmt_ms(r.elapsed), "ms in all"),
        card(&r.statements.to_string(), "statements"),
        card(&fmt_ms(r.db), "ms in the database"),
        card(
            &measured(r.hold),
            &if d.max_held > 1 {
                format!(
                    "ms holding connections (summed: up to {} held at once)",
                    d.max_held
                )
            } else if r.hold.is_none() {
                "ms holding connections: not measured (observer)".to_owned()
            } else if r.hold.is_some_and(|h| h > r.elapsed) {
                "ms holding connections (summed over connections held at once)".to_owned()
            } else {
                "ms holding connections".to_owned()
            }
        ),
        card(
            &measured(r.wait),
            if r.wait.is_some() {
                "ms waiting for the pool"
            } else {
                "ms waiting for the pool: not measured (observer)"
            }
        ),
        card(&d.acquires.to_string(), "connections acquired"),
        b = home(base),
        name = escape(&r.name),
        badges = badge_html(&r.badges),
    );
    body.push_str("<h2>Waterfall</h2>");
    match &d.waterfall {
        Some(w) => body.push_str(&waterfall(w)),
        None => body.push_str(
            "<p class=\"muted\">No timeline: this scope started before the console was created.</p>",
        ),
    }
    if !d.findings.is_empty() {
        body.push_str("<h2>Findings</h2>");
    }
    for f in &d.findings {
        let class = match f.kind {
            "N+1" => "n1",
            "duplicate" => "duplicate",
            "budget" => "budget",
            _ => "nested",
        };
        let _ = write!(
            body,
            "<div class=\"finding {class}\"><div class=\"what\">{kind}{count}</div><div>{advice}</div><dl>",
            kind = escape(f.kind),
            count = if f.statement.is_empty() {
                String::new()
            } else {
                format!(": {} ×", f.count)
            },
            advice = escape(&f.advice),
        );
        if !f.statement.is_empty() {
            let _ = write!(
                body,
                "<dt>statement</dt><dd class=\"sql\">{}</dd>",
                escape(&f.statement)
            );
        }
        if !f.call_site.is_empty() {
            let _ = write!(
                body,
                "<dt>call site</dt><dd><code class=\"call-site\">{}</code></dd>",
                escape(&f.call_site)
            );
        }
        if let Some(after) = &f.after {
            let label = if f.kind == "N+1" { "after" } else { "held" };
            let _ = write!(
                body,
                "<dt>{label}</dt><dd class=\"sql\">{}</dd>",
                escape(after)
            );
        }
        if let Some(s) = &f.suggestion {
            let _ = write!(
                body,
                "<dt>batched</dt><dd class=\"sql suggestion\">{}</dd>",
                escape(s)
            );
        }
        body.push_str("</dl></div>");
    }
    body.push_str(
        "<h2>Statements</h2><table id=\"statements\"><thead><tr><th class=\"n\">count</th><th class=\"n\">total ms</th>\
         <th class=\"n\">max ms</th><th class=\"n\">rows</th><th>fingerprint</th><th>statement</th></tr></thead><tbody>",
    );
    for s in &d.statements {
        let _ = write!(
            body,
            "<tr><td class=\"n\">{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td><code>{}</code></td><td class=\"sql\">{}</td></tr>",
            s.count,
            if s.failed > 0 {
                format!(" <span class=\"status-err\">({} failed)</span>", s.failed)
            } else {
                String::new()
            },
            fmt_ms(s.total),
            fmt_ms(s.max),
            s.rows,
            escape(&s.fingerprint),
            escape(&s.statement)
        );
    }
    body.push_str("</tbody></table>");
    if !d.plans.is_empty() {
        body.push_str(
            "<h2>Plans</h2><table id=\"plans\"><thead><tr><th>statement</th><th>size class</th><th>plan shape</th>\
             <th class=\"n\">changes</th></tr></thead><tbody>",
        );
        for p in &d.plans {
            let _ = write!(
                body,
                "<tr><td class=\"sql\">{}</td><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
                escape(&p.statement),
                escape(&p.size_class),
                escape(&p.shape),
                p.changes
            );
        }
        body.push_str("</tbody></table>");
    }
    layout(base, &r.name, Nav::None, &body)
}

/// A time that may not have been measured: `–` then, never a zero that looks measured.
fn measured(d: Option<Duration>) -> String {
    d.map_or_else(|| "<span title=\"not measured\">–</span>".into(), fmt_ms)
}

fn capacity(c: Option<f64>) -> String {
    c.map_or_else(|| "–".into(), |c| format!("{c:.0}"))
}

pub(super) fn routes(base: &str, v: &RoutesView) -> String {
    let mut body = String::from(
        "<h1>Routes <span class=\"muted\">(over the kept requests)</span></h1><table id=\"routes\"><thead><tr>\
         <th>route</th><th class=\"n\">requests</th><th class=\"n\">statements p50</th><th class=\"n\">p99</th>\
         <th class=\"n\">hold ms p50</th><th class=\"n\">p99</th><th class=\"n\">mean hold ms</th>\
         <th class=\"n\">with findings</th><th>findings</th></tr></thead><tbody>",
    );
    for r in &v.routes {
        let _ = write!(
            body,
            "<tr><td><a href=\"{b}?route={q}\">{name}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            r.requests,
            r.statements_p50,
            r.statements_p99,
            fmt_ms(r.hold_p50),
            fmt_ms(r.hold_p99),
            fmt_ms(r.mean_hold),
            r.with_findings,
            badge_html(&r.badges),
            b = home(base),
            q = url_encode(&r.route),
            name = escape(&r.route),
        );
    }
    if v.routes.is_empty() {
        body.push_str("<tr><td colspan=\"9\" class=\"muted\">No requests yet.</td></tr>");
    }
    body.push_str("</tbody></table>");
    for p in &v.pools {
        let _ = write!(
            body,
            "<h2>Pool <code>{name}</code>: what it can serve</h2><p>{max} connections; mean hold {hold} ms per \
             request over {window}: <b>{cap} requests/s</b> before requests queue \
             (<code>pool size / mean hold</code>){starving}.</p>",
            name = escape(&p.name),
            window = match p.window_age {
                None => "the diagnosis window".to_owned(),
                Some(age) => format!(
                    "<span class=\"window-age\">the last window with traffic, {age} s ago</span>"
                ),
            },
            max = p.now.max_connections(),
            hold = p.mean_hold.map_or_else(|| "–".into(), fmt_ms),
            cap = capacity(p.capacity_per_second),
            starving = if p.starving {
                "; <span class=\"status-err\">starving now</span>"
            } else {
                ""
            },
        );
        body.push_str(
            "<table class=\"capacity\"><thead><tr><th>scope</th><th class=\"n\">requests</th>\
             <th class=\"n\">mean hold ms</th><th class=\"n\">requests/s if all were like it</th></tr></thead><tbody>",
        );
        for (name, requests, mean, cap) in &p.scopes {
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(name),
                requests,
                fmt_ms(*mean),
                capacity(*cap)
            );
        }
        body.push_str("</tbody></table>");
    }
    layout(base, "Routes", Nav::Routes, &body)
}

/// A small inline chart: in use and waiters as lines, the pool's maximum dashed, timeouts as
/// red ticks.
fn chart(p: &PoolView) -> String {
    let (w, h) = (720.0_f64, 140.0_f64);
    let n = p.samples.len();
    if n < 2 {
        return "<p class=\"muted\">Collecting samples (one a second while requests come).</p>"
            .into();
    }
    let first = p.samples[0].at;
    let last = p.samples[n - 1].at.max(first + 1);
    let top = p
        .samples
        .iter()
        .map(|s| u64::from(s.stats.max_connections()).max(s.stats.waiters()))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |at: u64| (at - first) as f64 / (last - first) as f64 * (w - 40.0) + 30.0;
    let y = |v: f64| h - 16.0 - v / top * (h - 26.0);
    let line = |value: &dyn Fn(&super::Sample) -> f64| {
        p.samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.at), y(value(s))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"pool over time\">\
         <line x1=\"30\" x2=\"{x2}\" y1=\"{ym:.1}\" y2=\"{ym:.1}\" stroke=\"#98a2b3\" stroke-dasharray=\"4 3\"/>\
         <text x=\"2\" y=\"{yt:.1}\">{max}</text><text x=\"2\" y=\"{y0:.1}\">0</text>\
         <polyline fill=\"none\" stroke=\"#3559c7\" stroke-width=\"2\" points=\"{used}\"/>\
         <polyline fill=\"none\" stroke=\"#f0a202\" stroke-width=\"2\" points=\"{waiters}\"/>",
        x2 = w - 10.0,
        ym = y(f64::from(p.now.max_connections())),
        yt = y(f64::from(p.now.max_connections())) + 4.0,
        y0 = y(0.0) + 4.0,
        max = p.now.max_connections(),
        used = line(&|s| f64::from(s.stats.in_use())),
        waiters = line(&|s| s.stats.waiters() as f64),
    );
    for (i, t) in p.timeouts_per_sample().into_iter().enumerate() {
        if t > 0 {
            let xi = x(p.samples[i + 1].at);
            let _ = write!(
                out,
                "<line x1=\"{xi:.1}\" x2=\"{xi:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#d92d20\" stroke-width=\"3\"><title>{t} timeouts</title></line>",
                h - 16.0,
                h - 30.0
            );
        }
    }
    let _ = write!(
        out,
        "<text x=\"30\" y=\"{h}\">{} s ago</text><text x=\"{}\" y=\"{h}\">now</text></svg>\
         <div class=\"legend muted\"><span style=\"background:#3559c7\"></span>in use\
         <span style=\"background:#f0a202\"></span>waiters<span style=\"background:#d92d20\"></span>acquire timeouts\
         <span style=\"background:#98a2b3\"></span>max connections</div>",
        last - first,
        w - 40.0
    );
    out
}

pub(super) fn pool(base: &str, pools: &[PoolView]) -> String {
    let mut body = String::from(
        "<h1>Pool</h1><div class=\"bar-tools\"><label><input type=\"checkbox\" id=\"refresh\"> auto-refresh</label></div>",
    );
    if pools.is_empty() {
        body.push_str(
            "<p class=\"muted\">No pool watched: call <code>console.watch(&amp;pool)</code>.</p>",
        );
    }
    for p in pools {
        let s = &p.now;
        let _ = write!(
            body,
            "<h2><code>{}</code></h2><div class=\"cards\">{}{}{}{}{}{}</div>{}",
            escape(&p.name),
            card(
                &format!("{} / {}", s.size(), s.max_connections()),
                "open / max"
            ),
            card(&s.in_use().to_string(), "in use"),
            card(&s.idle().to_string(), "idle"),
            card(&s.waiters().to_string(), "waiters"),
            card(&s.acquire_timeouts().to_string(), "acquire timeouts"),
            card(&capacity(p.capacity_per_second), "requests/s it can serve"),
            chart(p)
        );
    }
    layout(base, "Pool", Nav::Pool, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x" + 'y')</script> & co"#),
            "&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39;)&lt;/script&gt; &amp; co"
        );
        assert_eq!(
            url_encode("GET /api/feed?x=1"),
            "GET%20%2Fapi%2Ffeed%3Fx%3D1"
        );
    }

    #[test]
    fn the_clock_is_utc() {
        let at = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 3600 * 13 + 60 * 7 + 9);
        assert_eq!(clock(at), "13:07:09");
    }
}
