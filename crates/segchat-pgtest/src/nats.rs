//! A private `nats-server` for tests and benchmarks, started from the
//! distribution's binary (`apt-get install nats-server`) on a free
//! loopback port, and killed when dropped.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `nats-server` may take to accept connections.
const START: Duration = Duration::from_secs(10);

/// A running private `nats-server`.
#[derive(Debug)]
pub struct Nats {
    child: Child,
    /// `nats://127.0.0.1:PORT`, for `--nats`.
    pub url: String,
}

impl Nats {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Result<Nats, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start nats-server ({e}): apt-get install nats-server"))?;
        let mut nats = Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nats.child.try_wait() {
                return Err(format!("nats-server exited at start: {status}"));
            }
            if start.elapsed() > START {
                return Err(format!("nats-server did not listen within {START:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nats)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
