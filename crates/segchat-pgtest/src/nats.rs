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
    port: u16,
    /// `nats://127.0.0.1:PORT`, for `--nats`.
    pub url: String,
}

impl Nats {
    /// Starts a server on a free port and waits until it accepts
    /// connections.
    pub fn start() -> Result<Nats, String> {
        let port = crate::free_port()?;
        Ok(Nats {
            child: spawn(port)?,
            port,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }

    /// Kills the server (`kill -9`): the link between instances is cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, after [`Nats::kill`].
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.child = spawn(self.port)?;
        Ok(())
    }
}

/// Starts `nats-server` on `port` and waits until it listens.
fn spawn(port: u16) -> Result<Child, String> {
    let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nats-server");
    let mut child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start nats-server ({e}): apt-get install nats-server"))?;
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("nats-server exited at start: {status}"));
        }
        if start.elapsed() > START {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("nats-server did not listen within {START:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
