//! Statement tags in the sqlcommenter format: the server sees which route sent a statement.
//!
//! [`PoolOptions::tag_statements`](crate::PoolOptions::tag_statements) appends a comment to each
//! statement sent through the wrapper inside a scope:
//!
//! ```text
//! SELECT name FROM users WHERE id = $1 /*application='shop',route='GET%20%2Fapi%2Ffeed'*/
//! ```
//!
//! so `pg_stat_activity`, the slow-query log, `auto_explain` and lock-wait reports name the
//! endpoint. Keys are sorted, values URL-encoded (every byte but `A–Z a–z 0–9 - _ . ~`, so a
//! `'` or `*/` in a route cannot leave the comment) and quoted, as the
//! [sqlcommenter](https://google.github.io/sqlcommenter/spec/) spec describes.
//!
//! **The prepared-statement cache.** sqlx prepares each distinct statement text once per
//! connection. Route and static tags give each (statement, route) pair one text, so the
//! prepared statements per connection grow by the routes that run a statement: bounded by your
//! routes. The tagged text is built once per (statement, route) and cached (no allocation per
//! execution). [`traceparent`](Tags::traceparent) makes every request's text unique: with it on,
//! tagged statements run unprepared (`persistent(false)`: parsed and planned on every
//! execution; see the README for what that costs), and the text is built per execution.
//!
//! **`pg_stat_statements`** groups by the parse tree, which ignores comments: one row per
//! statement whatever the route. pgscope's fingerprint is computed before tagging (and ignores
//! comments anyway): reports, N+1 detection and metrics are unchanged.
//!
//! **`application_name`** in the connect options (`PgConnectOptions::application_name`) names
//! the application at no cost per statement: `pg_stat_activity` and `log_line_prefix = '%a'` show
//! it. The `application` tag is still worth it where the text is all there is: logs whose prefix
//! does not print `%a`, `auto_explain` output copied around, tools that read only `query`.
//!
//! **Observer mode** cannot tag: it sees sqlx's statements after they ran.

use std::fmt::Write as _;
use std::sync::Arc;

use dashmap::DashMap;

/// Tagged texts cached per pool; past this the cache starts over (a flood of unique SQL cannot
/// grow it without bound).
const CACHE_CAPACITY: usize = 8192;

/// Which tags [`PoolOptions::tag_statements`](crate::PoolOptions::tag_statements) appends.
///
/// # Examples
/// ```
/// let tags = pgscope::Tags::new().route().application("shop").tag("region", "eu-west-1");
/// let options = pgscope::PoolOptions::new().tag_statements(tags);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Tags {
    route: bool,
    application: Option<String>,
    statics: Vec<(String, String)>,
    call_site: bool,
    traceparent: bool,
}

impl Tags {
    /// No tags yet: add them with the methods below.
    pub fn new() -> Self {
        Self::default()
    }

    /// `route='GET%20%2Fapi%2Ffeed'`: the scope's name (for a request, its route).
    pub fn route(mut self) -> Self {
        self.route = true;
        self
    }

    /// `application='shop'` (see the module docs for `application_name`, the cheaper way).
    pub fn application(mut self, name: &str) -> Self {
        self.application = Some(name.to_owned());
        self
    }

    /// A static tag, the same on every statement (`region`, `deployment`, …). A key given twice
    /// keeps the last value.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.statics.retain(|(k, _)| *k != key);
        self.statics.push((key, value.into()));
        self
    }

    /// `file='src%2Ffeed.rs%3A42'`: the statement's call site, when pgscope already resolved it
    /// for this route and statement (an N+1, duplicate or held-idle finding did): never a stack
    /// walk per statement. Off by default.
    pub fn call_site(mut self) -> Self {
        self.call_site = true;
        self
    }

    /// `traceparent='00-…-…-01'`: the W3C trace context of the current span (with feature
    /// `otel`), linking the statement to its trace. Off by default: it makes every request's
    /// statement text unique, so tagged statements run unprepared.
    pub fn traceparent(mut self) -> Self {
        self.traceparent = true;
        self
    }

    /// Whether the statements tagged change per execution (no caching, no preparing).
    pub(crate) fn per_request(&self) -> bool {
        self.traceparent
    }

    /// The comment for a statement of scope `route`, with call site `site` and trace context
    /// `traceparent` when known; `None` when no tag applies.
    pub(crate) fn comment(
        &self,
        route: &str,
        site: Option<&str>,
        traceparent: Option<&str>,
    ) -> Option<String> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(app) = &self.application {
            pairs.push(("application", app));
        }
        if self.route {
            pairs.push(("route", route));
        }
        if let Some(site) = site.filter(|_| self.call_site) {
            pairs.push(("file", site));
        }
        if let Some(tp) = traceparent.filter(|_| self.traceparent) {
            pairs.push(("traceparent", tp));
        }
        for (k, v) in &self.statics {
            if !pairs.iter().any(|(key, _)| key == k) {
                pairs.push((k, v));
            }
        }
        if pairs.is_empty() {
            return None;
        }
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = String::from("/*");
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            encode(&mut out, k);
            out.push_str("='");
            encode(&mut out, v);
            out.push('\'');
        }
        out.push_str("*/");
        Some(out)
    }
}

/// Percent-encodes everything but unreserved characters: nothing in a value can close the
/// quote or the comment.
fn encode(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A pool's tags and its cache of tagged texts.
#[derive(Debug)]
pub(crate) struct Tagger {
    pub(crate) tags: Tags,
    cache: DashMap<u64, Arc<str>>,
}

impl Tagger {
    pub(crate) fn new(tags: Tags) -> Self {
        Tagger {
            tags,
            cache: DashMap::new(),
        }
    }

    /// `sql` with the comment for `route` appended (`None`: no tag applies). Cached per
    /// (text, route, site) unless the tags change per request.
    pub(crate) fn tag(
        &self,
        sql: &str,
        text_hash: u64,
        route: &str,
        site: Option<&str>,
        traceparent: impl FnOnce() -> Option<String>,
    ) -> Option<Arc<str>> {
        if self.tags.per_request() {
            let tp = traceparent();
            let comment = self.tags.comment(route, site, tp.as_deref())?;
            return Some(join(sql, &comment).into());
        }
        let mut key = xxhash_rust::xxh3::xxh3_64_with_seed(route.as_bytes(), text_hash);
        if let Some(site) = site.filter(|_| self.tags.call_site) {
            key = xxhash_rust::xxh3::xxh3_64_with_seed(site.as_bytes(), key);
        }
        if let Some(hit) = self.cache.get(&key)
            && hit.starts_with(sql)
        {
            return Some(Arc::clone(&hit));
        }
        let comment = self.tags.comment(route, site, None)?;
        let tagged: Arc<str> = join(sql, &comment).into();
        if self.cache.len() >= CACHE_CAPACITY {
            self.cache.clear();
        }
        self.cache.insert(key, Arc::clone(&tagged));
        Some(tagged)
    }

    /// Whether the call site tag is asked for.
    pub(crate) fn wants_call_site(&self) -> bool {
        self.tags.call_site
    }
}

/// The statement with its comment after it (after any trailing whitespace).
fn join(sql: &str, comment: &str) -> String {
    let body = sql.trim_end();
    let mut out = String::with_capacity(body.len() + comment.len() + 1);
    out.push_str(body);
    out.push(' ');
    out.push_str(comment);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_values_encoded() {
        let tags = Tags::new().route().application("shop");
        assert_eq!(
            tags.comment("GET /api/feed", None, None).as_deref(),
            Some("/*application='shop',route='GET%20%2Fapi%2Ffeed'*/")
        );
        let tags = Tags::new().tag("z", "1").tag("a", "x y").route();
        assert_eq!(
            tags.comment("r", None, None).as_deref(),
            Some("/*a='x%20y',route='r',z='1'*/")
        );
        assert_eq!(Tags::new().comment("r", None, None), None);
    }

    #[test]
    fn a_route_cannot_break_out_of_the_comment() {
        let tags = Tags::new().route();
        let comment = tags
            .comment("GET /x'*/; DROP TABLE users; --", None, None)
            .expect("comment");
        assert_eq!(
            comment,
            "/*route='GET%20%2Fx%27%2A%2F%3B%20DROP%20TABLE%20users%3B%20--'*/"
        );
        assert_eq!(comment.matches("*/").count(), 1);
        assert_eq!(comment.matches('\'').count(), 2);
    }

    #[test]
    fn tagged_texts_are_cached_per_statement_and_route() {
        let tagger = Tagger::new(Tags::new().route());
        let a = tagger
            .tag("SELECT 1", 7, "GET /a", None, || None)
            .expect("tag");
        let again = tagger
            .tag("SELECT 1", 7, "GET /a", None, || None)
            .expect("tag");
        assert!(Arc::ptr_eq(&a, &again), "built once");
        let b = tagger
            .tag("SELECT 1", 7, "GET /b", None, || None)
            .expect("tag");
        assert_eq!(&*a, "SELECT 1 /*route='GET%20%2Fa'*/");
        assert_eq!(&*b, "SELECT 1 /*route='GET%20%2Fb'*/");
    }
}
