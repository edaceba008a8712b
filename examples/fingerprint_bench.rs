//! Fingerprinting speed: cached lookups and cold fingerprinting of short, typical and large SQL.
//!
//! ```text
//! cargo run --release --example fingerprint_bench
//! ```
//! Targets: cached < 100 ns per lookup; cold ≥ 200 MB/s of SQL text.
//!
//! Then the `pgscope fingerprint` command as a whole process (built here with `cargo build
//! --release --bin pgscope`) over a generated log of 38 000 statements and over ten times that,
//! beside the library's single-thread cold throughput on the same statements.

use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn short() -> String {
    "SELECT * FROM users WHERE id = 42 AND active".to_owned() // ~45 B
}

fn typical() -> String {
    "SELECT p.id, p.title, p.created_at, u.id AS author_id, u.name, u.avatar_url, count(c.id) AS comments \
     FROM posts p JOIN users u ON u.id = p.author_id LEFT JOIN comments c ON c.post_id = p.id \
     WHERE p.published = true AND p.created_at > '2024-01-01' AND u.country = 'NL' \
     GROUP BY p.id, u.id ORDER BY p.created_at DESC LIMIT 20 OFFSET 40"
        .to_owned()
}

fn large() -> String {
    let mut s = String::from("INSERT INTO events (id, kind, payload, created_at) VALUES ");
    let mut i = 0;
    while s.len() < 20_000 {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!(
            "({i}, 'click', '{{\"x\": {i}, \"y\": \"abc\"}}', '2024-05-01 12:00:00')"
        ));
        i += 1;
    }
    s.push_str(" ON CONFLICT (id) DO NOTHING");
    s
}

/// Runs `f` repeatedly for about `budget`, returns nanoseconds per call (best of 5 batches).
fn measure(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget / 5 {
            for _ in 0..64 {
                f();
            }
            n += 64;
        }
        best = best.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    best
}

fn main() {
    // `--write-logs DIR`: write the generated logs there (for `callgrind`, a shell of your own)
    // and stop.
    if let Some(dir) = std::env::args().skip_while(|a| a != "--write-logs").nth(1) {
        std::fs::create_dir_all(&dir).expect("create the directory");
        for (name, text) in [
            ("log-38000.sql", log(38_000)),
            ("log-380000.sql", log(380_000)),
            ("mixed-380000.sql", mixed_log(380_000)),
        ] {
            let path = std::path::Path::new(&dir).join(name);
            std::fs::write(&path, text).expect("write the log");
            println!("{}", path.display());
        }
        return;
    }
    // `--cli`: only the whole-process table.
    if !std::env::args().any(|a| a == "--cli") {
        library();
    }
    cli();
}

fn library() {
    let budget = Duration::from_millis(1500);
    let statements = [
        ("short", short()),
        ("typical", typical()),
        ("large", large()),
    ];
    let cache = pgscope::FingerprintCache::new(10_000);
    println!(
        "| statement | bytes | cached ns/lookup | cold ns/statement | cold MB/s | cold + summary ns | cold + summary MB/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, sql) in &statements {
        cache.get(sql);
        let cached = measure(budget, || {
            black_box(cache.get(black_box(sql)));
        });
        let cold = measure(budget, || {
            black_box(pgscope::fingerprint(black_box(sql)));
        });
        // The summary (db.query.summary) is computed on first use; the pool's cold path asks
        // for it (N+1 rules look at the operation), so show that cost too.
        let with_summary = measure(budget, || {
            let fp = pgscope::fingerprint(black_box(sql));
            black_box(fp.summary().len());
        });
        let mbps = |ns: f64| sql.len() as f64 / ns * 1e9 / 1e6;
        println!(
            "| {name} | {} | {cached:.0} | {cold:.0} | {:.0} | {with_summary:.0} | {:.0} |",
            sql.len(),
            mbps(cold),
            mbps(with_summary)
        );
    }
}

/// A log-like mix of statements (about 90 bytes each), deterministic.
fn log(statements: usize) -> String {
    const TABLES: [&str; 6] = ["users", "posts", "comments", "orders", "sessions", "events"];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut out = String::new();
    for i in 0..statements {
        let t = TABLES[next(6) as usize];
        let line = match next(10) {
            0..=2 => format!(
                "SELECT id, name, email, created_at FROM {t} WHERE id = {}",
                next(1_000_000)
            ),
            3 | 4 => format!(
                "select * from {t} where author_id in ({}, {}, {}) and status = 'published-{i}'",
                next(999),
                next(999),
                next(999)
            ),
            5 => format!(
                "INSERT INTO {t} (user_id, kind, created_at) VALUES ({i}, 'click', '2024-01-{:02}')",
                i % 28 + 1
            ),
            6 | 7 => format!(
                "UPDATE {t} SET score = score + {}, updated_at = now() WHERE id = $1 -- request {i}",
                i % 7
            ),
            8 => format!(
                "SELECT count(*) FROM {t} t JOIN users u ON u.id = t.user_id WHERE t.created_at > '2024-05-01' GROUP BY u.id"
            ),
            _ => format!("DELETE FROM {t} WHERE id = {i} AND deleted_at IS NULL"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A log of mixed shapes, as a user's would be (about 97 bytes a statement on average): short
/// lookups, IN-lists of 1 to 60 values, quoted strings with doubled quotes and `E''` escapes,
/// `/* … */` and `--` comments, multi-row VALUES, jsonb literals and long reporting queries of
/// one to two kilobytes. Deterministic.
fn mixed_log(statements: usize) -> String {
    const TABLES: [&str; 8] = [
        "users",
        "posts",
        "comments",
        "orders",
        "sessions",
        "events",
        "\"user\"",
        "line_items",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut out = String::with_capacity(statements * 100);
    for i in 0..statements {
        let t = TABLES[next(8) as usize];
        let line = match next(100) {
            0..=29 => format!("SELECT id, name FROM {t} WHERE id = {}", next(10_000_000)),
            30..=41 => {
                let n = 1 + next(30) as usize;
                let list: Vec<String> = (0..n).map(|_| next(100_000).to_string()).collect();
                format!(
                    "select * from {t} where author_id in ({}) and state = 'published'",
                    list.join(", ")
                )
            }
            42..=53 => format!(
                "/* app:web,route:GET /api/{t}/:id,request:{i} */ SELECT u.id, u.email FROM {t} u \
                 WHERE u.email = 'o''brien+{i}@example.com' AND u.note <> E'line\\n{}' LIMIT 1",
                next(1000)
            ),
            54..=63 => format!(
                "UPDATE {t} SET profile = '{{\"theme\": \"dark\", \"n\": {}}}'::jsonb, \
                 updated_at = now() WHERE id = $1 -- request {i}",
                next(99)
            ),
            64..=73 => {
                let rows: Vec<String> = (0..1 + next(6))
                    .map(|r| format!("({i}, {r}, 'click', '2024-01-{:02} 10:00:00')", r % 28 + 1))
                    .collect();
                format!(
                    "INSERT INTO {t} (user_id, seq, kind, created_at) VALUES {}",
                    rows.join(", ")
                )
            }
            74..=98 => format!("DELETE FROM {t} WHERE id = {i} AND deleted_at IS NULL"),
            _ => {
                // A long reporting query: a CTE, joins, CASE, a window, 1–2 KB.
                let mut q = format!(
                    "WITH recent AS (SELECT o.id, o.user_id, o.total, o.created_at FROM orders o \
                     WHERE o.created_at > '2024-05-{:02}' AND o.state IN ('paid', 'shipped', \
                     'refunded')) SELECT u.id, u.name, count(r.id) AS orders, sum(r.total) AS \
                     revenue, CASE WHEN sum(r.total) > {} THEN 'gold' WHEN sum(r.total) > {} \
                     THEN 'silver' ELSE 'bronze' END AS tier, row_number() OVER (PARTITION BY \
                     u.country ORDER BY sum(r.total) DESC) AS rank FROM users u JOIN recent r ON \
                     r.user_id = u.id LEFT JOIN line_items li ON li.order_id = r.id",
                    i % 28 + 1,
                    next(10_000),
                    next(1_000)
                );
                for k in 0..1 + next(4) {
                    q.push_str(&format!(
                        " LEFT JOIN coupons c{k} ON c{k}.order_id = r.id AND c{k}.code <> 'X-{k}-{}'",
                        next(1000)
                    ));
                }
                q.push_str(" WHERE u.deleted_at IS NULL GROUP BY u.id, u.name, u.country HAVING count(r.id) >= 2 ORDER BY revenue DESC LIMIT 100");
                q
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `sh -c 'cat LOG | pgscope fingerprint > OUT'`, as a user pipes it (a shell, `cat`, output
/// to a file); best and median MB/s over `runs` after one untimed run.
fn run_cli_shell(bin: &std::path::Path, input: &std::path::Path, runs: usize) -> (f64, f64) {
    let bytes = std::fs::metadata(input).map_or(0, |m| m.len()) as f64;
    let out = input.with_extension("out");
    let script = format!(
        "cat '{}' | '{}' fingerprint > '{}'",
        input.display(),
        bin.display(),
        out.display()
    );
    let run = || {
        let start = Instant::now();
        let status = Command::new("sh")
            .args(["-c", &script])
            .status()
            .expect("run sh");
        assert!(status.success(), "the pipeline failed");
        start.elapsed().as_secs_f64()
    };
    run();
    let mut times: Vec<f64> = (0..runs).map(|_| run()).collect();
    times.sort_by(f64::total_cmp);
    let _ = std::fs::remove_file(&out);
    (bytes / times[0] / 1e6, bytes / times[runs / 2] / 1e6)
}

/// Best and median wall time of the whole `pgscope fingerprint` process over `input`, as MB/s.
/// One untimed run first, so the file's pages and the binary are in memory for all timed ones.
fn run_cli(bin: &std::path::Path, input: &std::path::Path, runs: usize) -> (f64, f64) {
    let bytes = std::fs::metadata(input).map_or(0, |m| m.len()) as f64;
    let run = || {
        let stdin = std::fs::File::open(input).expect("open the generated log");
        let start = Instant::now();
        let status = Command::new(bin)
            .arg("fingerprint")
            .stdin(stdin)
            .stdout(Stdio::null())
            .status()
            .expect("run pgscope");
        assert!(status.success(), "pgscope fingerprint failed");
        start.elapsed().as_secs_f64()
    };
    run();
    let mut times: Vec<f64> = (0..runs).map(|_| run()).collect();
    times.sort_by(f64::total_cmp);
    (bytes / times[0] / 1e6, bytes / times[runs / 2] / 1e6)
}

/// The same through a pipe: a thread of this process writes the log into the CLI's stdin in
/// 64 KiB writes (as `cat`, `zcat` or `kubectl logs` would); best and median MB/s.
fn run_cli_pipe(bin: &std::path::Path, text: &[u8], runs: usize) -> (f64, f64) {
    let run = || {
        let start = Instant::now();
        let mut child = Command::new(bin)
            .arg("fingerprint")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("run pgscope");
        let mut stdin = child.stdin.take().expect("stdin");
        std::thread::scope(|s| {
            s.spawn(move || {
                for chunk in text.chunks(64 << 10) {
                    stdin.write_all(chunk).expect("write to the pipe");
                }
            });
        });
        let status = child.wait().expect("wait");
        assert!(status.success(), "pgscope fingerprint failed");
        start.elapsed().as_secs_f64()
    };
    run();
    let mut times: Vec<f64> = (0..runs).map(|_| run()).collect();
    times.sort_by(f64::total_cmp);
    let bytes = text.len() as f64;
    (bytes / times[0] / 1e6, bytes / times[runs / 2] / 1e6)
}

fn cli() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let built = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "pgscope"])
        .status();
    let exe = std::env::current_exe().expect("current exe");
    let Some(bin) = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|release| release.join("pgscope"))
        .filter(|bin| built.is_ok_and(|s| s.success()) && bin.exists())
    else {
        println!("\n(`cargo build --release --bin pgscope` failed: no CLI table)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("pgscope-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!();
    println!(
        "| input | statements | bytes | CLI process, file on stdin, best / median MB/s | CLI process, through a pipe, best / median MB/s | `cat LOG \\| pgscope fingerprint > OUT` in a shell, best / median MB/s | library, 1 thread, MB/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    type Generator = fn(usize) -> String;
    let inputs: [(&str, usize, Generator); 3] = [
        ("generated log", 38_000, log),
        ("generated log", 380_000, log),
        ("mixed shapes", 380_000, mixed_log),
    ];
    for (name, statements, make) in inputs {
        let text = make(statements);
        let path = dir.join(format!("{statements}.sql"));
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("write the generated log");
        let runs = if text.len() > 20 << 20 { 7 } else { 31 };
        let (best, median) = run_cli(&bin, &path, runs);
        let (pipe_best, pipe_median) = run_cli_pipe(&bin, text.as_bytes(), runs);
        let (shell_best, shell_median) = run_cli_shell(&bin, &path, runs);
        // The same statements through the library on one thread, no cache, one reused buffer.
        let mut buf = String::new();
        let start = Instant::now();
        for sql in text.lines() {
            black_box(pgscope::fingerprint_to(black_box(sql), &mut buf));
        }
        let library = text.len() as f64 / start.elapsed().as_secs_f64() / 1e6;
        println!(
            "| {name} | {statements} | {} | {best:.0} / {median:.0} | {pipe_best:.0} / {pipe_median:.0} | {shell_best:.0} / {shell_median:.0} | {library:.0} |",
            text.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
