//! pgscope's own errors.

/// Errors pgscope itself raises. They reach callers inside a [`sqlx::Error`] (so code written
/// against sqlx keeps its error type): use [`Error::from_sqlx`] to recognise them.
///
/// # Examples
/// ```
/// # fn handle(err: sqlx::Error) {
/// match pgscope::Error::from_sqlx(&err) {
///     Some(pgscope::Error::QueryBudgetExceeded { budget, .. }) => eprintln!("over budget ({budget})"),
///     Some(other) => eprintln!("pgscope refused the query: {other}"),
///     None => eprintln!("database error: {err}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The scope already ran as many statements as its query budget allows; this one was not
    /// sent to PostgreSQL.
    #[error(
        "query budget of {budget} statements exceeded in scope `{scope}`; the statement was not sent"
    )]
    #[non_exhaustive]
    QueryBudgetExceeded {
        /// The scope (route) whose budget ran out.
        scope: String,
        /// The budget in force.
        budget: u32,
    },
    /// N+1 detection is in [`Mode::Error`](crate::Mode::Error) and this statement would have been
    /// the repetition that crosses the threshold; it was not sent to PostgreSQL.
    #[error(
        "N+1 query refused in scope `{scope}`: `{statement}` would run {count} times (threshold {threshold})"
    )]
    #[non_exhaustive]
    NPlusOne {
        /// The scope (route).
        scope: String,
        /// The normalized statement.
        statement: String,
        /// The count this execution would have reached.
        count: u64,
        /// The threshold in force.
        threshold: u32,
    },
}

#[cfg(feature = "pool")]
impl Error {
    /// The pgscope error inside a [`sqlx::Error`] returned by a pgscope pool, if it is one.
    ///
    /// pgscope errors travel as `sqlx::Error::Configuration` (the pool's configuration refused
    /// the statement); this looks inside so callers need not know that.
    pub fn from_sqlx(err: &sqlx::Error) -> Option<&Error> {
        match err {
            sqlx::Error::Configuration(inner) => inner.downcast_ref::<Error>(),
            _ => None,
        }
    }

    pub(crate) fn into_sqlx(self) -> sqlx::Error {
        sqlx::Error::Configuration(Box::new(self))
    }
}

/// `Result` with pgscope's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
