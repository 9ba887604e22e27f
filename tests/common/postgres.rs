//! A real PostgreSQL server per test, on a free port in a temporary directory: `initdb`
//! and `postgres` from the machine's PostgreSQL packages (found on PATH, in
//! `PG_BIN`, or under /usr/lib/postgresql/*/bin), run as the `postgres` user when the
//! tests run as root (PostgreSQL refuses root). Killed when dropped, and with the test
//! process if it dies.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct PostgresServer {
    child: Child,
    pub port: u16,
    owner: Option<(u32, u32)>,
    _dir: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries not found. The tests need them: install them \
                 (`apt-get install -y postgresql`, which scripts/test.sh does) or set PG_BIN."
            )
        })
}

/// The uid/gid to run PostgreSQL as: `postgres` when we are root, else ourselves.
fn run_as() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a `postgres` system user is needed to run PostgreSQL as root")
    };
    Some((id("-u"), id("-g")))
}

fn command(program: PathBuf, owner: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    unsafe {
        cmd.pre_exec(move || {
            // Die with the test process, and drop root.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some((uid, gid)) = owner
                && (libc::setgid(gid) != 0 || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn spawn_postgres(dir: &tempfile::TempDir, port: u16, owner: Option<(u32, u32)>) -> Child {
    let data = dir.path().join("data");
    command(bin_dir().join("postgres"), owner)
        .args([
            "-D",
            data.to_str().unwrap(),
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-k",
            dir.path().to_str().unwrap(),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres starts")
}

impl PostgresServer {
    pub fn start() -> PostgresServer {
        let bin = bin_dir();
        let owner = run_as();
        let dir = tempfile::tempdir().unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let init = command(bin.join("initdb"), owner)
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("initdb runs");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = super::free_port();
        let mut server = PostgresServer {
            child: spawn_postgres(&dir, port, owner),
            port,
            owner,
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        for _ in 0..500 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("postgres exited at start-up: {status}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Accepting TCP is not quite ready for queries; give it a moment.
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("PostgreSQL did not start");
    }

    /// Kills the server (SIGKILL, as a crash or a failover would) and starts it again on
    /// the same data and port; every open connection breaks.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Kills the server (SIGKILL); [`PostgresServer::start_again`] brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a killed server again on the same data and port.
    pub fn start_again(&mut self) {
        self.child = spawn_postgres(&self._dir, self.port, self.owner);
        self.wait_ready();
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn database(&self, name: &str) -> String {
        let admin = sqlx::PgPool::connect(&self.url("postgres")).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        self.url(name)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
