//! What is known about the server at connect time: the attributes every statement shares.

use std::sync::Arc;

use opentelemetry::KeyValue;

use super::attr;

/// Server facts known at connect time, for span and metric attributes.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// `db.system.name`, `db.namespace`, `server.address`, `server.port` (when not 5432): the
    /// attributes every statement of a pool shares (reference-counted strings, cloned without
    /// copying).
    pub(crate) attributes: Arc<[KeyValue]>,
}

impl Server {
    /// A server known only as PostgreSQL (statements seen by the observer, which does not
    /// know the connection they ran on).
    pub(crate) fn unknown() -> Self {
        Server {
            attributes: Arc::from([KeyValue::new(attr::DB_SYSTEM_NAME, "postgresql")]),
        }
    }

    /// `schema` is the first `search_path` entry given at connect time, if any.
    pub(crate) fn new(address: &str, port: u16, database: &str, schema: Option<&str>) -> Self {
        // Semantic conventions: `{database}|{schema}`, or the one that is known.
        let namespace = match schema {
            Some(schema) => format!("{database}|{schema}"),
            None => database.to_owned(),
        };
        let mut attributes = vec![
            KeyValue::new(attr::DB_SYSTEM_NAME, "postgresql"),
            KeyValue::new(attr::DB_NAMESPACE, shared_str(&namespace)),
            KeyValue::new(attr::SERVER_ADDRESS, shared_str(address)),
        ];
        // Conditionally required only when it is not PostgreSQL's default.
        if port != 5432 {
            attributes.push(KeyValue::new(attr::SERVER_PORT, i64::from(port)));
        }
        Server {
            attributes: attributes.into(),
        }
    }
}

/// The schema a connection starts in when the connect options set `search_path` (as
/// `PgConnectOptions::options([("search_path", …)])` or `?options=-c search_path=…` do): its
/// first entry, with `$user` resolved to `user`. `None` when no `search_path` is given.
pub(crate) fn connect_schema(options: Option<&str>, user: &str) -> Option<String> {
    // Split on unescaped whitespace, undoing sqlx's `\ ` / `\\` escaping.
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options?.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut path = None;
    let mut iter = words.iter().map(String::as_str);
    while let Some(w) = iter.next() {
        let setting = match w {
            "-c" => iter.next(),
            w => w.strip_prefix("--").or_else(|| w.strip_prefix("-c")),
        };
        if let Some(value) = setting.and_then(|s| s.strip_prefix("search_path=")) {
            path = Some(value);
        }
    }
    let first = path?.split(',').next()?.trim().trim_matches('"');
    match first {
        "" => None,
        "$user" => Some(user.to_owned()),
        schema => Some(schema.to_owned()),
    }
}

pub(super) fn shared_str(s: &str) -> opentelemetry::StringValue {
    opentelemetry::StringValue::from(std::sync::Arc::<str>::from(s))
}

#[cfg(all(test, feature = "pool"))]
mod tests {
    use super::*;

    #[test]
    fn schema_comes_from_the_search_path_given_at_connect_time() {
        let opts = |o: sqlx::postgres::PgConnectOptions| connect_schema(o.get_options(), "app");
        let base = sqlx::postgres::PgConnectOptions::new;
        assert_eq!(opts(base()), None);
        assert_eq!(
            opts(base().options([("search_path", "tenant_1,public")])),
            Some("tenant_1".to_owned())
        );
        assert_eq!(
            opts(base().options([
                ("statement_timeout", "5s"),
                ("search_path", "\"$user\", public")
            ])),
            Some("app".to_owned())
        );
        assert_eq!(
            opts(base().options([("search_path", "my schema")])),
            Some("my schema".to_owned())
        );
        assert_eq!(
            connect_schema(Some("-csearch_path=a --work_mem=4MB"), "u"),
            Some("a".to_owned())
        );
        assert_eq!(
            connect_schema(Some("--search_path=b"), "u"),
            Some("b".to_owned())
        );
        assert_eq!(connect_schema(Some("-c work_mem=4MB"), "u"), None);
    }
}
