//! A real Redis for the tests of Redis-backed sessions.
//!
//! [`TestRedis::start`] runs a private `redis-server` from `PATH` on a free
//! port (no persistence), so a test may count its keys, stop it and start
//! it again without disturbing another test. [`TestRedis::start_persistent`]
//! is the same with an append-only file fsynced on every write, so a
//! stopped and restarted server keeps every session it acknowledged (what
//! docs/SCALING.md recommends for production). [`TestRedis::shared`] uses the
//! one `.ci/run` started (`RWS_REDIS_URL`) when it is set, else starts a
//! private one. Without a `redis-server` both panic: a test that needs
//! Redis fails, it never skips.

use std::{
    net::TcpListener,
    process::{Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use super::process::ChildGuard;

/// A Redis server for one test (or the CI's shared one).
pub struct TestRedis {
    url: String,
    port: u16,
    /// Our own server (`None` for the CI's shared one).
    child: Option<ChildGuard>,
    /// Where a persistent server keeps its append-only file (`None`: no
    /// persistence, a restart starts empty). Removed on drop.
    dir: Option<tempfile::TempDir>,
}

impl TestRedis {
    /// A private `redis-server` on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When there is no `redis-server` on `PATH` or it does not answer.
    pub fn start() -> TestRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = TestRedis {
            url: format!("redis://127.0.0.1:{port}/"),
            port,
            child: None,
            dir: None,
        };
        redis.restart();
        redis
    }

    /// A private `redis-server` like [`start`](Self::start), with
    /// `appendonly yes` and `appendfsync always` in a temporary directory:
    /// [`stop`](Self::stop) (a SIGKILL) and [`restart`](Self::restart) lose
    /// nothing it acknowledged.
    ///
    /// # Panics
    /// As [`start`](Self::start), or when no temporary directory can be made.
    pub fn start_persistent() -> TestRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = TestRedis {
            url: format!("redis://127.0.0.1:{port}/"),
            port,
            child: None,
            dir: Some(tempfile::tempdir().expect("a temporary directory for Redis")),
        };
        redis.restart();
        redis
    }

    /// The CI's Redis (`RWS_REDIS_URL`) if set, else a private one. Use a
    /// [`unique_prefix`](Self::unique_prefix) for keys on a shared server.
    pub fn shared() -> TestRedis {
        match std::env::var("RWS_REDIS_URL") {
            Ok(url) if !url.is_empty() => {
                let redis = TestRedis {
                    port: url
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.trim_end_matches('/').parse().ok())
                        .unwrap_or(6379),
                    url,
                    child: None,
                    dir: None,
                };
                assert!(
                    redis.ping(),
                    "RWS_REDIS_URL={} does not answer PING",
                    redis.url
                );
                redis
            }
            _ => TestRedis::start(),
        }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A key prefix no other test (or run) uses.
    pub fn unique_prefix(name: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "t-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Stops our server (SIGKILL: what a crash looks like to a client).
    ///
    /// # Panics
    /// On the CI's shared server.
    pub fn stop(&mut self) {
        let child = self
            .child
            .take()
            .expect("stop() on the shared Redis: use TestRedis::start()");
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ping() {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts our server again on the same port (empty without persistence;
    /// with it, as it was when stopped).
    ///
    /// # Panics
    /// When it is running, or `redis-server` is missing or does not answer.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running");
        let persistence: Vec<String> = match &self.dir {
            None => ["--appendonly", "no"].map(String::from).to_vec(),
            Some(dir) => vec![
                "--appendonly".into(),
                "yes".into(),
                "--appendfsync".into(),
                "always".into(),
                "--dir".into(),
                dir.path().display().to_string(),
            ],
        };
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .args(&persistence)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("these tests need redis-server on PATH (apt-get install redis-server): {e}")
            });
        self.child = Some(ChildGuard(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A synchronous connection, for looking at keys.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }

    /// Every key that starts with `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut c = self.connection();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query(&mut c)
            .expect("KEYS");
        keys.sort();
        keys
    }

    /// Whether the server answers PING.
    pub fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return false;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        redis::cmd("PING").query::<String>(&mut c).is_ok()
    }
}
