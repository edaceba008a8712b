//! SeaORM 2 (which owns its sqlx pool) observed by pgscope's observer layer: the
//! `find_related` loop is an N+1 with its call site; the eager version is clean.
//! Its own binary: it installs the global subscriber.

mod common;

use sea_orm::entity::prelude::*;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, QueryOrder};

mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "posts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub author_id: i64,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::user::Entity",
            from = "Column::AuthorId",
            to = "super::user::Column::Id"
        )]
        Author,
    }

    impl Related<super::user::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Author.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The application's statements in the report: SeaORM also sends `SET search_path` on each
/// connection it opens, which counts where it ran but is not what these tests are about.
fn app_statements(report: &pgscope::Report) -> u64 {
    report
        .fingerprints()
        .iter()
        .filter(|f| !f.normalized().starts_with("SET search_path"))
        .map(|f| f.count())
        .sum()
}

fn observe() {
    common::install_observer();
}

async fn connect(name: &str) -> DatabaseConnection {
    observe();
    let opts = common::schema(name).await;
    common::setup(
        &opts,
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE posts (id bigint PRIMARY KEY, author_id bigint NOT NULL REFERENCES users, title text NOT NULL);
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 10) g;
         INSERT INTO posts SELECT g, 1 + g % 10, 'post ' || g FROM generate_series(1, 12) g;",
    )
    .await;
    let mut options = ConnectOptions::new(common::database_url().await);
    options
        .max_connections(4)
        .set_schema_search_path(format!("t_{name}"));
    Database::connect(options).await.expect("SeaORM connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_find_related_loop_is_an_n_plus_one_with_its_call_site() {
    let db = connect("seaorm_naive").await;
    let (authors, report) = pgscope::capture_named("GET /posts", async {
        let posts = post::Entity::find()
            .order_by_asc(post::Column::Id)
            .all(&db)
            .await
            .expect("posts");
        let mut authors = Vec::new();
        for p in &posts {
            let author = p
                .find_related(user::Entity)
                .one(&db)
                .await
                .expect("author")
                .expect("exists");
            authors.push(author.name);
        }
        authors
    })
    .await;
    assert_eq!(authors.len(), 12);
    assert_eq!(app_statements(&report), 13, "{report}");
    assert_eq!(report.n_plus_one().len(), 1, "{report}");
    let n = &report.n_plus_one()[0];
    assert_eq!(n.count(), 12);
    assert!(
        n.fingerprint().normalized().contains("FROM \"users\"")
            || n.fingerprint().normalized().contains("FROM users"),
        "{}",
        n.fingerprint().normalized()
    );
    assert!(
        n.call_site().starts_with("tests/seaorm.rs:"),
        "{}",
        n.call_site()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eager_version_runs_one_statement() {
    let db = connect("seaorm_eager").await;
    let (rows, report) = pgscope::capture_named("GET /posts", async {
        post::Entity::find()
            .find_also_related(user::Entity)
            .order_by_asc(post::Column::Id)
            .all(&db)
            .await
            .expect("posts with authors")
    })
    .await;
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|(_, author)| author.is_some()));
    assert_eq!(app_statements(&report), 1, "{report}");
    report.assert_no_n_plus_one();
}
