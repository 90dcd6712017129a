//! The real `segchat server` under abuse: bursts of sign-ins, parallel
//! password guessing, and crowds of idle connections. Clients are bare
//! protocol clients, each tracker link a TLS connection of its own from
//! one of several 127.0.0.x addresses (one key per address), so the
//! server sees different sources.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use futures::{SinkExt, StreamExt};
use segchat_net::client::Client;
use segchat_net::tls::ClientStream;
use segchat_net::EndpointId;
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::{Failure, Frame, FrameCodec, Hello, LinkKind, Status};
use tokio::sync::{Barrier, Mutex};
use tokio_util::codec::Framed;

use common::{start_server_with, Proc, DEADLINE, PASSWORD};

type Codec = FrameCodec<Request, Reply, Event>;
type TFrame = Frame<Request, Reply, Event>;

/// The server, and one client endpoint per source address.
#[derive(Clone)]
struct Net {
    server: SocketAddr,
    /// Asked once: a fetch per connection would itself be a crowd of TCP
    /// connections from 127.0.0.1.
    server_id: EndpointId,
    endpoints: Arc<Mutex<HashMap<Ipv4Addr, Client>>>,
}

impl Net {
    async fn new(server: SocketAddr) -> Net {
        let server_id = segchat_net::relay::fetch_server_key(server, DEADLINE)
            .await
            .expect("the server's key");
        Net {
            server,
            server_id,
            endpoints: Arc::default(),
        }
    }

    /// The endpoint bound on `source` (bound on first use, under a key of
    /// its own).
    async fn endpoint(&self, source: Ipv4Addr) -> Client {
        let mut endpoints = self.endpoints.lock().await;
        if let Some(c) = endpoints.get(&source) {
            return c.clone();
        }
        let mut seed = [0x5a; 32];
        seed[..4].copy_from_slice(&source.octets());
        let client = Client::bind(
            &SigningKey::from_bytes(&seed),
            SocketAddr::from((source, 0)),
            None,
        )
        .await
        .expect("bind the source address");
        endpoints.insert(source, client.clone());
        client
    }
}

/// A bare tracker-link client: one TLS connection (dropping it hangs up).
struct Raw {
    framed: Framed<ClientStream, Codec>,
    next_id: u32,
}

impl Raw {
    /// Opens a new connection from `source` without a handshake.
    async fn open(net: &Net, source: Ipv4Addr) -> Raw {
        let link = net
            .endpoint(source)
            .await
            .tracker_to(net.server_id, net.server, DEADLINE)
            .await
            .expect("connect");
        Raw {
            framed: Framed::new(link, Codec::default()),
            next_id: 1,
        }
    }

    /// Connects from `source` and completes the handshake.
    async fn connect(net: &Net, source: Ipv4Addr) -> Raw {
        let mut c = Raw::open(net, source).await;
        c.hello().await;
        match c.recv().await {
            Some(Frame::Welcome(_)) => c,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    async fn hello(&mut self) {
        self.framed
            .send(Frame::Hello(Hello::new(LinkKind::Tracker, "abuse-test")))
            .await
            .expect("send hello");
    }

    async fn recv(&mut self) -> Option<TFrame> {
        match tokio::time::timeout(DEADLINE * 3, self.framed.next()).await {
            Ok(Some(Ok(f))) => Some(f),
            Ok(Some(Err(e))) => panic!("decode error: {e}"),
            Ok(None) => None,
            Err(_) => panic!("nothing from the server within {:?}", DEADLINE * 3),
        }
    }

    async fn request(&mut self, body: Request) -> Result<Reply, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        self.framed
            .send(Frame::Request { id, body })
            .await
            .expect("send");
        loop {
            match self.recv().await {
                Some(Frame::Response { id: got, result }) if got == id => return result,
                Some(Frame::Event(_)) => {}
                other => panic!("expected response {id}, got {other:?}"),
            }
        }
    }

    /// Waits for the server to close the connection; returns the error
    /// frame it sent first, if any.
    async fn closed(&mut self) -> Option<Failure> {
        let mut said = None;
        loop {
            match self.framed.next().await {
                Some(Ok(Frame::Error(f))) => said = Some(f),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return said,
            }
        }
    }
}

fn login(user: &str, password: &str) -> Request {
    Request::Login {
        username: user.into(),
        password: password.into(),
    }
}

fn register(user: &str) -> Request {
    Request::Register {
        username: user.into(),
        password: PASSWORD.into(),
    }
}

/// The `n`th client address: 127.0.0.2, 127.0.0.3, …
fn source(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (n / 250) as u8, (n % 250 + 2) as u8)
}

/// A `VmXXX:` figure of `/proc/PID/status`, in KiB.
fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

async fn server(extra: &[&str]) -> (tempfile::TempDir, Proc, Net) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (proc, addr) = start_server_with(&dir.path().join("server"), "127.0.0.1:0", extra);
    let net = Net::new(addr.parse().expect("server address")).await;
    (dir, proc, net)
}

/// Argon2 may hold at most 4 slots × 19 MiB = 76 MiB at once; with the
/// server's own ~20-30 MiB and 130 connections, its peak RSS stays
/// under this bound (see ARCHITECTURE.md).
/// Held by the tests that load the machine most (a burst of argon2
/// hashing, a crowd of 1,100 connections) and by the one whose relay
/// admission must come within a deadline: run beside the others on two
/// cores, the relay client's first attempts time out and its backoff
/// outlasts the deadline (seen once in CI).
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PEAK_RSS_BOUND_KIB: u64 = 160 * 1024;
/// After the burst, RSS comes back to within this of the idle baseline.
const SETTLED_RSS_SLACK_KIB: u64 = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_sign_ins_and_registrations_keeps_memory_bounded_and_gives_it_back() {
    let _heavy = HEAVY.lock().await;
    let (_dir, proc, net) = server(&[]).await;
    let pid = proc.pid();
    let mut setup = Raw::connect(&net, source(0)).await;
    for u in 0..5 {
        setup
            .request(register(&format!("user{u}")))
            .await
            .expect("register");
    }
    drop(setup);
    // The baseline is the server idle after a crowd of the burst's shape
    // (130 QUIC connections from the same 50 sources, no password work)
    // has come and gone: the transport's one-time costs (about 11 MiB
    // here: per-remote state, the allocator's arenas) stay after the first
    // crowd whatever it asked, and this test is about the memory the
    // burst's password hashing takes and must give back.
    let warm_up: Vec<_> = (0..130u32)
        .map(|i| {
            let net = net.clone();
            tokio::spawn(async move {
                let mut c = Raw::connect(&net, source(1 + i % 50)).await;
                c.request(Request::Whoami).await
            })
        })
        .collect();
    for w in warm_up {
        match w.await.expect("warm-up task") {
            Err(f) if f.status == Status::Unauthorized => {}
            other => panic!("whoami before sign-in answered {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = vm_kib(pid, "VmRSS:");

    // 100 sign-ins (half right, half wrong) and 30 registrations, each on
    // its own connection from one of 50 sources, all sent at once.
    let barrier = Arc::new(Barrier::new(130));
    let mut tasks = Vec::new();
    for i in 0..130u32 {
        let barrier = barrier.clone();
        let net = net.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Raw::connect(&net, source(1 + i % 50)).await;
            let (request, right) = if i < 100 {
                let user = format!("user{}", i % 5);
                let right = i % 2 == 0;
                (
                    login(&user, if right { PASSWORD } else { "wrong password!" }),
                    right,
                )
            } else {
                (register(&format!("new{i}")), true)
            };
            barrier.wait().await;
            (i, right, c.request(request).await)
        }));
    }
    let mut served = 0;
    let mut busy = 0;
    for t in tasks {
        let (i, right, result) = t.await.expect("client task");
        match result {
            Ok(Reply::Session(_)) => {
                assert!(right, "request {i}: a wrong password was accepted");
                served += 1;
            }
            Err(f) if f.status == Status::Unauthorized => {
                assert!(!right, "request {i}: the right password was refused: {f}");
                served += 1;
            }
            Err(f) if f.status == Status::Unavailable => {
                assert!(f.reason.contains("busy"), "a clear reason: {f}");
                busy += 1;
            }
            Err(f) if f.status == Status::RateLimited => {}
            other => panic!("request {i}: unexpected answer {other:?}"),
        }
    }
    let peak = vm_kib(pid, "VmHWM:");
    eprintln!(
        "baseline RSS {baseline} KiB, peak {peak} KiB; {served} checked, {busy} refused as busy"
    );
    assert!(served >= 20, "the slots and the queue are served: {served}");
    assert!(
        peak < PEAK_RSS_BOUND_KIB,
        "peak RSS {peak} KiB over the bound {PEAK_RSS_BOUND_KIB} KiB"
    );

    // Memory comes back once the burst is over.
    let start = Instant::now();
    loop {
        let rss = vm_kib(pid, "VmRSS:");
        if rss <= baseline + SETTLED_RSS_SLACK_KIB {
            eprintln!("settled RSS {rss} KiB after {:?}", start.elapsed());
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "RSS stayed at {rss} KiB after the burst (baseline {baseline} KiB)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_get_no_more_checks_than_the_limit() {
    let (dir, _proc, net) = server(&[]).await;
    let mut owner = Raw::connect(&net, source(0)).await;
    owner.request(register("alice")).await.expect("register");

    // 20 connections from one source guess alice's password at once; the
    // limit per (account, source) is 5.
    let barrier = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let barrier = barrier.clone();
            let net = net.clone();
            tokio::spawn(async move {
                let mut c = Raw::connect(&net, source(7)).await;
                barrier.wait().await;
                c.request(login("alice", &format!("guess number {n}")))
                    .await
            })
        })
        .collect();
    let mut checked = 0;
    for t in tasks {
        match t.await.expect("task") {
            Err(f) if f.status == Status::Unauthorized => checked += 1,
            Err(f) if f.status == Status::RateLimited => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(checked, 5, "guesses checked");
    // The server's log agrees: five LOGIN_FAILED records.
    let start = Instant::now();
    loop {
        let log =
            std::fs::read_to_string(dir.path().join("server/logs/segchat.log")).unwrap_or_default();
        let failed = log
            .lines()
            .filter(|l| l.contains("] LOGIN_FAILED "))
            .count();
        if failed == 5 {
            break;
        }
        assert!(failed < 5, "{failed} guesses were checked");
        assert!(start.elapsed() < DEADLINE, "{failed} LOGIN_FAILED records");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_signs_in_during_a_guessing_attack() {
    let (_dir, _proc, net) = server(&[]).await;
    let home = source(1);
    let mut owner = Raw::connect(&net, home).await;
    owner.request(register("alice")).await.expect("register");

    // One source guesses until it is throttled.
    let attacker = source(66);
    let mut limited = false;
    for n in 0..30 {
        let mut c = Raw::connect(&net, attacker).await;
        match c.request(login("alice", &format!("guess {n}"))).await {
            Err(f) if f.status == Status::Unauthorized => {}
            Err(f) if f.status == Status::RateLimited => {
                limited = true;
                break;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(limited, "the guessing source is throttled");

    // The owner gets in from the address used before and from a new one.
    for (what, from) in [("a known source", home), ("a new source", source(2))] {
        let mut c = Raw::connect(&net, from).await;
        match c.request(login("alice", PASSWORD)).await {
            Ok(Reply::Session(s)) => assert_eq!(s.username, "alice"),
            other => panic!("the owner at {what} was refused: {other:?}"),
        }
    }

    // Many sources guessing at once use up the account's limit for
    // sources it has never signed in from (50); the owner still gets in
    // from a source used before.
    let mut guesses = Vec::new();
    for n in 0..60u32 {
        let net = net.clone();
        guesses.push(tokio::spawn(async move {
            let mut c = Raw::connect(&net, source(100 + n)).await;
            c.request(login("alice", &format!("distributed guess {n}")))
                .await
        }));
    }
    let mut throttled = 0;
    for g in guesses {
        match g.await.expect("task") {
            Err(f) if f.status == Status::Unauthorized => {}
            Err(f) if f.status == Status::RateLimited || f.status == Status::Unavailable => {
                throttled += 1
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(throttled > 0, "the distributed guessing is slowed");
    let mut c = Raw::connect(&net, home).await;
    match c.request(login("alice", PASSWORD)).await {
        Ok(Reply::Session(s)) => assert_eq!(s.username, "alice"),
        other => panic!("the owner at home was refused during the attack: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_capped_per_source_and_closed_while_real_users_are_served() {
    let _heavy = HEAVY.lock().await;
    let (_dir, _proc, net) =
        server(&["--signin-timeout-secs", "3", "--max-conns-per-source", "64"]).await;

    // One source (one IP) is held to 64 QUIC connections; the 65th is
    // told why.
    let crowd_source = source(10);
    let mut crowd = Vec::new();
    for _ in 0..64 {
        crowd.push(Raw::connect(&net, crowd_source).await);
    }
    let mut extra = Raw::open(&net, crowd_source).await;
    extra.hello().await;
    let said = extra.closed().await.expect("an error frame before closing");
    assert_eq!(said.status, Status::RateLimited);
    assert!(said.reason.contains("too many connections"), "{said}");

    // 1,100 idle connections after hello, from 20 sources.
    for n in 0..1_036u32 {
        crowd.push(Raw::connect(&net, source(11 + n % 19)).await);
    }
    assert_eq!(crowd.len(), 1_100);

    // A real user is served meanwhile, and stays connected by talking.
    let mut real = Raw::connect(&net, source(200)).await;
    real.request(register("bob"))
        .await
        .expect("register during the crowd");
    let mut other = Raw::connect(&net, source(201)).await;
    match other.request(login("bob", PASSWORD)).await {
        Ok(Reply::Session(_)) => {}
        other => panic!("sign-in during the crowd refused: {other:?}"),
    }

    // Every connection that never signed in is closed, with a reason.
    let start = Instant::now();
    let closes: Vec<_> = crowd
        .into_iter()
        .map(|mut c| tokio::spawn(async move { c.closed().await }))
        .collect();
    let mut ping = tokio::time::interval(Duration::from_millis(500));
    for mut close in closes {
        let said = loop {
            tokio::select! {
                said = &mut close => break said.expect("task"),
                _ = ping.tick() => {
                    real.request(Request::Whoami).await.expect("the real user stays served");
                }
            }
        };
        let said = said.expect("an error frame before closing");
        assert!(said.reason.contains("not signed in"), "{said}");
    }
    eprintln!(
        "1,100 idle connections closed {:?} after they opened",
        start.elapsed()
    );
    real.request(Request::Whoami)
        .await
        .expect("the real user is still connected");
}

/// A node whose UDP is blocked (here: an endpoint with no UDP socket at
/// all) opens its tracker link (TCP) and its relay connection, signs up
/// and keeps both; an endpoint that only sits on the relay without a
/// tracker link is cut off once its probation is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_keeps_a_udp_blocked_nodes_connection_and_drops_a_stranger() {
    let _heavy = HEAVY.lock().await;
    let (dir, _server, net) = server(&[]).await;
    let key = |b: u8| SigningKey::from_bytes(&[b; 32]);
    let stranger = Client::bind_relay_only(&key(0x51), net.server)
        .await
        .expect("bind the stranger");
    assert!(
        stranger.use_relay(DEADLINE).await,
        "the relay admits a node that is not signed in, on probation"
    );
    let blocked = Client::bind_relay_only(&key(0x52), net.server)
        .await
        .expect("bind the UDP-blocked node");
    let link = blocked
        .tracker(net.server, DEADLINE)
        .await
        .expect("a tracker link over TCP");
    let mut raw = Raw {
        framed: Framed::new(link, Codec::default()),
        next_id: 1,
    };
    raw.hello().await;
    match raw.recv().await {
        Some(Frame::Welcome(_)) => {}
        other => panic!("expected welcome, got {other:?}"),
    }
    match raw.request(register("relayed")).await {
        Ok(Reply::Session(s)) => assert_eq!(s.username, "relayed"),
        other => panic!("registration of a UDP-blocked node: {other:?}"),
    }

    let log = dir.path().join("server").join("logs").join("segchat.log");
    let cut = |node: &Client| {
        let id = segchat_net::id_hex(&node.endpoint().id());
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.contains("RELAY_REFUSED") && l.contains(&id) && l.contains("no tracker link")
            })
    };
    let deadline =
        Instant::now() + segchat_net::relay::PROBATION + segchat_net::relay::SWEEP * 2 + DEADLINE;
    while !cut(&stranger) {
        assert!(
            Instant::now() < deadline,
            "the stranger still holds its relay connection after its probation"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !cut(&blocked),
        "the signed-in node lost its relay connection"
    );
    raw.request(Request::Whoami)
        .await
        .expect("the relayed node is still served after the sweep");
}
