//! A private PostgreSQL server for tests and benchmarks, started from the
//! distribution's binaries (`apt-get install postgresql`), never a shared
//! or pre-existing one; and a private `nats-server` beside it ([`nats`])
//! for tests of several server instances.
//!
//! [`shared`] starts one server per test process, the first time it is
//! asked; [`fresh_database`] gives each test a database of its own on it,
//! so tests run in parallel without seeing each other's rows. The server
//! listens only on a Unix socket inside its own temporary directory (no
//! port to collide on) and runs without fsync: tests measure behaviour,
//! not durability (a benchmark that measures durability starts its own
//! server with [`Postgres::start`] and `durable: true`).
//!
//! The server is a grandchild watched by a shell: it holds the write end
//! of a pipe, and when the test process exits for any reason (even
//! `kill -9`) the pipe closes, the shell stops PostgreSQL and removes the
//! directory. So no test leaves a server running.
//!
//! As root the server runs as the `postgres` user (PostgreSQL refuses to
//! run as root); otherwise as the current user.
//!
//! Without PostgreSQL installed, [`shared`] panics with what to install:
//! a test that needs PostgreSQL fails rather than passes unseen
//! (`scripts/test.sh` installs it).

pub mod nats;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running private PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    socket_dir: PathBuf,
    /// The port: of the Unix socket, and of TCP (TLS only) with
    /// [`Options::tls`].
    port: u16,
    tls: bool,
    /// The watcher shell; its stdin is the pipe whose closing stops the
    /// server.
    watcher: Mutex<Child>,
    _dir: tempfile::TempDir,
}

/// How [`Postgres::start`] sets the server up.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// fsync on (as a production server), for benchmarks of durable writes.
    pub durable: bool,
    /// Also listen on a loopback TCP port that takes TLS sessions only,
    /// with this certificate ([`Postgres::tcp_url`]).
    pub tls: Option<Tls>,
}

/// A server certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Postgres {
    /// Starts a new server in a temporary directory and waits until it
    /// accepts connections.
    pub fn start(options: Options) -> Result<Postgres, String> {
        let bin = bin_dir().ok_or_else(|| {
            "PostgreSQL is not installed (no initdb found): apt-get install postgresql, \
             or set SEGCHAT_PG_BIN to the directory holding initdb and postgres"
                .to_string()
        })?;
        let dir = tempfile::Builder::new()
            .prefix("segchat-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let root = is_root();
        if root {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let data = dir.path().join("data");
        let mut initdb = as_server_user(root, &bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale=C.UTF-8"])
            .stdout(Stdio::null());
        let out = initdb
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let fsync = if options.durable { "on" } else { "off" };
        // The port also names the Unix socket (`.s.PGSQL.<port>`).
        let (port, tls, listen) = match &options.tls {
            Some(tls) => {
                let port = free_port()?;
                (port, true, tls_setup(dir.path(), &data, tls, root)?)
            }
            None => (5432, false, "-c listen_addresses=".to_string()),
        };
        // The watcher: starts the server, waits for its stdin to close
        // (the test process gone), then stops the server fast and removes
        // the directory.
        let script = format!(
            "{postgres} -D {data} -k {sock} -p {port} {listen} -c fsync={fsync} \
               -c max_connections=200 -c shared_buffers=64MB >{log} 2>&1 & pid=$!; \
             cat >/dev/null; kill -QUIT $pid 2>/dev/null; wait $pid; rm -rf {dir}",
            postgres = quoted(&bin.join("postgres")),
            data = quoted(&data),
            sock = quoted(dir.path()),
            log = quoted(&dir.path().join("postgres.log")),
            dir = quoted(dir.path()),
        );
        let mut watcher = as_server_user(root, Path::new("/bin/sh"));
        watcher
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let watcher = watcher
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let pg = Postgres {
            socket_dir: dir.path().to_path_buf(),
            port,
            tls,
            watcher: Mutex::new(watcher),
            _dir: dir,
        };
        pg.wait_ready(&bin)?;
        Ok(pg)
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{name}?host={}",
            self.port,
            self.socket_dir.display()
        )
    }

    /// The URL of database `name` over TCP and TLS (add `sslmode` and
    /// `sslrootcert`), when the server was started with [`Options::tls`].
    pub fn tcp_url(&self, name: &str) -> Option<String> {
        let port = self.port;
        self.tls
            .then(|| format!("postgres://postgres@127.0.0.1:{port}/{name}"))
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String, String> {
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connecting to the test server: {e}"))?;
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        drop(client);
        let _ = task.await;
        Ok(self.url(name))
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.socket_dir.join("postgres.log")).unwrap_or_default()
    }

    /// Waits until the server accepts sessions (`pg_isready`: the socket
    /// accepts connections a moment before the server takes sessions,
    /// answering "the database system is starting up" meanwhile).
    fn wait_ready(&self, bin: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = Command::new(bin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(&self.socket_dir)
                .args(["-p", &self.port.to_string()])
                .args(["-U", "postgres", "-d", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if let Ok(mut w) = self.watcher.lock() {
                if let Ok(Some(status)) = w.try_wait() {
                    return Err(format!("postgres exited ({status}): {}", self.log()));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("postgres did not start in 30 s: {}", self.log()))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Ok(mut w) = self.watcher.lock() {
            // Closing stdin tells the watcher to stop the server.
            drop(w.stdin.take());
            let _ = w.wait();
        }
    }
}

/// The test process's one server, started on first use.
///
/// # Panics
/// If PostgreSQL is missing or does not start (say so rather than pass).
pub fn shared() -> &'static Postgres {
    static SHARED: OnceLock<Postgres> = OnceLock::new();
    SHARED.get_or_init(|| match Postgres::start(Options::default()) {
        Ok(pg) => pg,
        Err(e) => panic!("{e}"),
    })
}

/// A new empty database on the [`shared`] server; its URL.
///
/// # Panics
/// As [`shared`], or if the database cannot be created.
pub async fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let pg = shared();
    match pg.create_database(&name).await {
        Ok(url) => url,
        Err(e) => panic!("{e}\n{}", pg.log()),
    }
}

/// A loopback TCP port nobody listens on now.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Writes the certificate and key where the server reads them (its key
/// owned by it, mode 0600, as PostgreSQL demands), lets TCP in only over
/// TLS, and answers the server's flags for it.
fn tls_setup(dir: &Path, data: &Path, tls: &Tls, root: bool) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let write = |path: &Path, text: &str, mode: u32| -> Result<(), String> {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if root {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
        }
        Ok(())
    };
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    write(&cert, &tls.cert_pem, 0o644)?;
    write(&key, &tls.key_pem, 0o600)?;
    write(
        &data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        0o600,
    )?;
    Ok(format!(
        "-c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        quoted(&cert),
        quoted(&key)
    ))
}

/// The directory holding `initdb` and `postgres`: `SEGCHAT_PG_BIN`, or the
/// newest `/usr/lib/postgresql/*/bin` (Debian and Ubuntu), or `PATH`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SEGCHAT_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.join("initdb").exists() && d.join("postgres").exists())
    })
}

fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The `postgres` user's uid and gid, from `id`.
fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| format!("id {flag} postgres: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                "running as root needs the `postgres` user (apt-get install postgresql)".to_string()
            })
    };
    Ok((id("-u")?, id("-g")?))
}

/// `program`, run as `postgres` when we are root.
fn as_server_user(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// `p` quoted for `sh`.
fn quoted(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}
