//! Faults under load, on real PostgreSQL: 256 concurrent scopes on a pool of 16 running reads,
//! writes and transactions while the server restarts, or while backends are killed every few
//! milliseconds. Every statement either succeeds or returns an error to its caller; each
//! scope's report equals what its caller saw; nothing leaks (connections in use, waiters); the
//! pool serves again; pgscope does not flood the log. Its own binary: it installs the global
//! subscriber that counts pgscope's log lines.

mod common;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::events::Events;
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;

const SCOPES: usize = 256;
const OPS_PER_SCOPE: usize = 24;

/// What a scope's caller saw.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    ok: u64,
    failed: u64,
    /// Acquires that failed: no statement was sent.
    not_sent: u64,
}

impl Seen {
    fn note<T, E>(&mut self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.ok += 1,
            Err(_) => self.failed += 1,
        }
    }
}

/// One scope: reads, writes and transactions in turn, each on an explicitly acquired
/// connection, so that a failed acquire (nothing sent) is told apart from a failed statement.
async fn scope_work(pool: pgscope::Pool, i: usize, progress: Arc<AtomicUsize>) -> Seen {
    let mut seen = Seen::default();
    for op in 0..OPS_PER_SCOPE {
        progress.fetch_add(1, Ordering::Relaxed);
        match (i + op) % 3 {
            0 => {
                let Ok(mut conn) = pool.acquire().await else {
                    seen.not_sent += 1;
                    continue;
                };
                let r = sqlx::query("SELECT $1::int + 0 AS read, pg_sleep(0.001)")
                    .bind(op as i32)
                    .fetch_one(&mut *conn)
                    .await;
                seen.note(&r);
            }
            1 => {
                let Ok(mut conn) = pool.acquire().await else {
                    seen.not_sent += 1;
                    continue;
                };
                let r = sqlx::query("INSERT INTO fault_events (scope, op) VALUES ($1, $2)")
                    .bind(i as i32)
                    .bind(op as i32)
                    .execute(&mut *conn)
                    .await;
                seen.note(&r);
            }
            _ => {
                // BEGIN and COMMIT are transaction statements, counted apart; the two
                // statements inside are the ones a caller sees.
                let Ok(mut tx) = pool.begin().await else {
                    seen.not_sent += 1;
                    continue;
                };
                let r = sqlx::query("INSERT INTO fault_events (scope, op) VALUES ($1, $2)")
                    .bind(i as i32)
                    .bind(op as i32)
                    .execute(&mut *tx)
                    .await;
                seen.note(&r);
                if r.is_ok() {
                    let r = sqlx::query("SELECT count(*) FROM fault_events WHERE scope = $1")
                        .bind(i as i32)
                        .fetch_one(&mut *tx)
                        .await;
                    seen.note(&r);
                }
                let _ = tx.commit().await;
            }
        }
    }
    seen
}

/// Runs the load with `fault` started 300 ms in; checks every guarantee; returns the totals
/// and how long the pool took to serve again after the fault ended.
async fn load_with_fault(
    pool: &pgscope::Pool,
    fault: impl std::future::Future<Output = ()>,
) -> (Seen, Duration) {
    let events = Events::global();
    let warns_before = pgscope_warnings(events);
    let progress = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..SCOPES)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(pgscope::capture_named(
                format!("scope {i}"),
                scope_work(pool, i, progress.clone()),
            ))
        })
        .collect();
    // The fault starts a fifth of the way through the load, however fast the machine: it must
    // hit the load, not follow it.
    let started = Instant::now();
    while progress.load(Ordering::Relaxed) < SCOPES * OPS_PER_SCOPE / 5
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    fault.await;
    let fault_ended = Instant::now();
    // The pool serves again within seconds.
    let recovered = loop {
        if sqlx::query("SELECT 1").execute(pool).await.is_ok() {
            break fault_ended.elapsed();
        }
        assert!(
            fault_ended.elapsed() < Duration::from_secs(15),
            "the pool does not serve again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut total = Seen::default();
    for task in tasks {
        // A panic anywhere (pgscope's or the test's) fails here.
        let (seen, report) = task.await.expect("no panic");
        assert_eq!(
            report.queries(),
            seen.ok + seen.failed,
            "{}: pgscope counted what the caller sent ({seen:?})",
            report.name()
        );
        assert_eq!(
            report.failed_queries(),
            seen.failed,
            "{}: and the failures the caller saw ({seen:?})",
            report.name()
        );
        assert_eq!(report.rejected_queries(), 0);
        total.ok += seen.ok;
        total.failed += seen.failed;
        total.not_sent += seen.not_sent;
    }
    // No connection, hold or waiter leaks.
    common::eventually(|| {
        let stats = pool.stats();
        (stats.in_use() == 0 && stats.waiters() == 0).then_some(())
    })
    .await;
    let warns = pgscope_warnings(events) - warns_before;
    assert!(
        warns <= 10,
        "{warns} WARN lines from pgscope under one fault: a storm"
    );
    (total, recovered)
}

fn pgscope_warnings(events: &Events) -> usize {
    events
        .all()
        .iter()
        .filter(|e| e.level <= tracing::Level::WARN && e.target.starts_with("pgscope"))
        .count()
}

fn pool_options() -> pgscope::PoolOptions {
    pgscope::PoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        // The load repeats its statements on purpose: no N+1 findings in the way.
        .n_plus_one_threshold(10_000)
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS fault_events (id bigserial PRIMARY KEY, scope int NOT NULL, op int NOT NULL)";

/// A cluster of the test's own, so it can be restarted.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn start(port: u16) -> Cluster {
        let dir = std::env::temp_dir().join(format!("pgscope-faults-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres", dir.to_str().unwrap_or_default()])
            .output();
        let data = dir.join("data");
        let out = common::initdb(&data);
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { dir, port };
        cluster.pg_ctl(&["start"]);
        cluster
    }

    fn pg_ctl(&self, action: &[&str]) {
        let opts = format!(
            "-p {} -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=100",
            self.port
        );
        let out = common::pg_ctl(&self.dir.join("data"), &self.dir.join("log"), &opts, action);
        assert!(
            out.status.success(),
            "pg_ctl {action:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = common::pg_ctl(
            &self.dir.join("data"),
            &self.dir.join("log"),
            "",
            &["-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_load_loses_no_count_and_leaks_nothing() {
    Events::global();
    let cluster = Cluster::start(54341);
    let opts = PgConnectOptions::from_str(&cluster.url()).expect("url");
    common::setup(&opts, SCHEMA).await;
    let pool = pool_options().connect_with(opts).await.expect("connect");
    let restart = async {
        let started = Instant::now();
        tokio::task::block_in_place(|| cluster.pg_ctl(&["-m", "fast", "restart"]));
        eprintln!("restart took {:.2} s", started.elapsed().as_secs_f64());
    };
    let (seen, recovered) = load_with_fault(&pool, restart).await;
    eprintln!(
        "restart: {} statements ok, {} failed, {} acquires failed; serving again {:.0} ms after the restart",
        seen.ok,
        seen.failed,
        seen.not_sent,
        recovered.as_secs_f64() * 1000.0
    );
    assert!(seen.ok > 0);
    assert!(
        seen.failed + seen.not_sent > 0,
        "the restart hit the load (else the test proves nothing)"
    );
    // Everything counted in the scopes is in the pool's totals too: nothing went unscoped.
    assert_eq!(
        pool.unscoped_report().queries(),
        1 + recovered_probes(&pool)
    );
}

/// Probes `load_with_fault` ran outside any scope (one `SELECT 1` per attempt).
fn recovered_probes(pool: &pgscope::Pool) -> u64 {
    pool.unscoped_report()
        .fingerprints()
        .iter()
        .find(|f| f.normalized() == "SELECT $1")
        .map_or(0, |f| f.count())
        .saturating_sub(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_killed_every_few_milliseconds_lose_no_count_and_leak_nothing() {
    Events::global();
    let opts = common::schema("faults_kill")
        .await
        .application_name("pgscope-faults-kill");
    common::setup(&opts, SCHEMA).await;
    let pool = pool_options()
        .connect_with(opts.clone())
        .await
        .expect("connect");
    let stop = Arc::new(AtomicBool::new(false));
    let killer = tokio::spawn({
        let (stop, opts) = (stop.clone(), opts.clone());
        async move {
            let mut admin = opts
                .application_name("pgscope-faults-admin")
                .connect()
                .await
                .expect("admin");
            let mut killed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE application_name = 'pgscope-faults-kill' ORDER BY random() LIMIT 1) k",
                )
                .fetch_one(&mut admin)
                .await
                .expect("terminate");
                killed += n as u64;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            killed
        }
    });
    let storm = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
    };
    let (seen, recovered) = load_with_fault(&pool, storm).await;
    let killed = killer.await.expect("killer");
    eprintln!(
        "kill storm: {killed} backends killed; {} statements ok, {} failed, {} acquires failed; serving again {:.0} ms after",
        seen.ok,
        seen.failed,
        seen.not_sent,
        recovered.as_secs_f64() * 1000.0
    );
    assert!(killed > 10, "the storm killed backends");
    assert!(seen.ok > 0);
    assert!(seen.failed > 0, "the storm hit statements");
}

/// A TCP proxy between pool and server that can freeze: while frozen, no byte crosses in
/// either direction (new connections are accepted and then wait too).
struct Proxy {
    addr: std::net::SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, flag) = (upstream.clone(), flag.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, flag.clone()), pump(sr, cw, flag));
                });
            }
        });
        Proxy { addr, frozen }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while frozen.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_stall_gives_typed_acquire_timeouts_at_the_timeout_and_then_recovers() {
    Events::global();
    let direct = common::schema("faults_stall").await;
    common::setup(&direct, SCHEMA).await;
    let proxy = Proxy::start(format!("{}:{}", direct.get_host(), direct.get_port())).await;
    let opts = direct.clone().host("127.0.0.1").port(proxy.addr.port());
    let acquire_timeout = Duration::from_secs(1);
    let pool = pgscope::PoolOptions::new()
        .max_connections(4)
        .acquire_timeout(acquire_timeout)
        .n_plus_one_threshold(10_000)
        .connect_with(opts)
        .await
        .expect("connect through the proxy");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..32)
        .map(|i| {
            let (pool, stop) = (pool.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut timeouts, mut other) = (0u64, 0u64, 0u64);
                let mut slowest_timeout = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let ((), report) = pgscope::capture_named(format!("worker {i}"), async {
                        match sqlx::query("SELECT $1::int AS stalled, pg_sleep(0.001)")
                            .bind(i)
                            .fetch_one(&pool)
                            .await
                        {
                            Ok(_) => ok += 1,
                            Err(sqlx::Error::PoolTimedOut) => {
                                timeouts += 1;
                                slowest_timeout = slowest_timeout.max(started.elapsed());
                            }
                            Err(_) => other += 1,
                        }
                    })
                    .await;
                    assert!(report.queries() <= 1);
                }
                (ok, timeouts, other, slowest_timeout)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = pool.stats().acquire_timeouts();
    proxy.frozen.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = pool.stats().acquire_timeouts() - before;
    proxy.frozen.store(false, Ordering::Relaxed);
    let resumed = Instant::now();
    let recovered = loop {
        if sqlx::query("SELECT 1").execute(&pool).await.is_ok() {
            break resumed.elapsed();
        }
        assert!(resumed.elapsed() < Duration::from_secs(10), "no recovery");
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut timeouts, mut other, mut slowest) = (0, 0, 0, Duration::ZERO);
    for w in workers {
        let (o, t, x, s) = w.await.expect("no panic");
        (ok, timeouts, other, slowest) = (ok + o, timeouts + t, other + x, slowest.max(s));
    }
    eprintln!(
        "stall: {ok} ok, {timeouts} acquire timeouts ({during} during the 5 s stall, slowest after {:.2} s), {other} other errors; serving {:.0} ms after the stall",
        slowest.as_secs_f64(),
        recovered.as_secs_f64() * 1000.0
    );
    assert!(during > 0, "callers waiting through the stall time out");
    assert_eq!(
        pool.stats().acquire_timeouts() - before,
        timeouts,
        "every timeout a caller saw is counted, and no other"
    );
    assert!(
        slowest < acquire_timeout + Duration::from_millis(700),
        "a waiting caller gets its error at its timeout, not at the end of the stall: {slowest:?}"
    );
    assert_eq!(
        other, 0,
        "the stall delays statements; it does not break them"
    );
    common::eventually(|| {
        let stats = pool.stats();
        (stats.in_use() == 0 && stats.waiters() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_storm_keeps_counts_exact_and_reuses_no_interrupted_connection() {
    Events::global();
    let opts = common::schema("faults_cancel").await;
    common::setup(&opts, SCHEMA).await;
    let pool = pool_options().connect_with(opts).await.expect("connect");
    let tasks: Vec<_> = (0..SCOPES)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut cancelled = 0u64;
                let mut rng = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let (seen, report) = pgscope::capture_named(format!("scope {i}"), async {
                    let mut seen = Seen::default();
                    for _ in 0..OPS_PER_SCOPE {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        // Dropped somewhere: mid-acquire, mid-query or mid-transaction.
                        let deadline = Duration::from_micros(rng % 1_000_000);
                        // What the caller saw, noted the moment each statement returns (a
                        // cancelled op's statement, if it was sent, is pgscope's to count as
                        // failed).
                        let done = Arc::new(std::sync::Mutex::new(Seen::default()));
                        let sink = done.clone();
                        let note = move |r: &Result<(), sqlx::Error>| {
                            sink.lock().expect("lock").note(r);
                        };
                        let op = async {
                            if rng.is_multiple_of(2) {
                                let r = sqlx::query("SELECT $1::int AS echoed, pg_sleep(0.002)")
                                    .bind(7)
                                    .fetch_one(&pool)
                                    .await
                                    .map(drop);
                                note(&r);
                            } else if let Ok(mut tx) = pool.begin().await {
                                let r = sqlx::query(
                                    "INSERT INTO fault_events (scope, op) VALUES ($1, 0)",
                                )
                                .bind(i as i32)
                                .execute(&mut *tx)
                                .await
                                .map(drop);
                                note(&r);
                                let _ = tx.commit().await;
                            }
                        };
                        if tokio::time::timeout(deadline, op).await.is_err() {
                            cancelled += 1;
                        }
                        let local = *done.lock().expect("lock");
                        seen.ok += local.ok;
                        seen.failed += local.failed;
                    }
                    seen
                })
                .await;
                (seen, cancelled, report)
            })
        })
        .collect();
    let (mut total, mut cancelled_total, mut cut) = (Seen::default(), 0, 0);
    for task in tasks {
        let (seen, cancelled, report) = task.await.expect("no panic");
        // Every statement that completed was seen as completed by its caller, and the other way
        // round; statements cut off by a cancellation are counted as failed, at most one per
        // cancelled operation.
        assert_eq!(
            report.queries() - report.failed_queries(),
            seen.ok,
            "{}: {seen:?}",
            report.name()
        );
        assert!(
            report.failed_queries() <= seen.failed + cancelled,
            "{}: {} failed vs {seen:?} and {cancelled} cancelled",
            report.name(),
            report.failed_queries()
        );
        total.ok += seen.ok;
        total.failed += seen.failed;
        cancelled_total += cancelled;
        cut += report.failed_queries() - seen.failed;
    }
    eprintln!(
        "cancellation storm: {} ops cancelled ({cut} of them mid-statement, counted as failed), {} statements completed, {} failed",
        cancelled_total, total.ok, total.failed
    );
    assert!(
        cancelled_total > 100 && total.ok > 100,
        "the storm was a storm"
    );
    common::eventually(|| {
        let stats = pool.stats();
        (stats.in_use() == 0 && stats.waiters() == 0).then_some(())
    })
    .await;
    // A connection left mid-protocol and reused would answer the next statement with the
    // previous one's rows, or a protocol error: every answer here must be its own.
    for n in 0..200_i32 {
        let echoed: i32 = sqlx::query_scalar("SELECT $1::int AS echoed")
            .bind(n)
            .fetch_one(&pool)
            .await
            .expect("a clean connection");
        assert_eq!(echoed, n);
    }
}
