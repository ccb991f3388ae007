//! Who is alive: SWIM membership (`foca`, I/O-free) on a thread of its own with one UDP
//! socket on this node's `gossip` address. A thread rather than a shard's loop: the
//! protocol's timers and datagrams are few and must not wait behind a busy shard, and a
//! shard that is stuck must not make its node look dead to the others.
//!
//! The configured node list says who may own keys; SWIM says who is alive. A member's
//! identity carries the digest of its node list: a member whose digest differs from
//! ours is not sent requests (it places keys differently), and a log line says so.
//! Each verdict lands in `PeerHealth`, which the shards read per request.

use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Config, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::config::cluster::{ClusterConfig, PeerHealth};

/// A member as SWIM knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swimmer {
    pub node: String,
    pub gossip: SocketAddr,
    pub digest: u64,
    /// Raised on each rejoin, so the newer identity wins.
    pub bump: u16,
}

impl foca::Identity for Swimmer {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Swimmer {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump.wrapping_sub(adversary.bump) < u16::MAX / 2
    }
}

/// Timings for a LAN: a dead or frozen member is declared down in about a second.
fn swim_config(members: usize) -> Config {
    let mut c = Config::simple();
    c.probe_period = Duration::from_millis(300);
    c.probe_rtt = Duration::from_millis(150);
    c.suspect_to_down_after = Duration::from_millis(700);
    c.num_indirect_probes = NonZeroUsize::new(members.clamp(1, 3)).unwrap_or(NonZeroUsize::MIN);
    c.max_transmissions = NonZeroU8::new(8).unwrap_or(NonZeroU8::MIN);
    c
}

/// A scheduled timer, soonest first in the heap.
struct Due(Instant, u64, Timer<Swimmer>);

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.0, o.1).cmp(&(self.0, self.1))
    }
}

/// Starts the membership thread for `cluster` when this node has a gossip address.
pub fn start(cluster: &ClusterConfig) -> std::io::Result<()> {
    let me = &cluster.nodes[cluster.me];
    let Some(gossip) = me.gossip else {
        return Ok(());
    };
    let socket = UdpSocket::bind(gossip)?;
    let identity = Swimmer {
        node: me.id.clone(),
        gossip,
        digest: cluster.digest,
        bump: 0,
    };
    let peers: Vec<Swimmer> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != cluster.me)
        .filter_map(|(_, n)| {
            n.gossip.map(|g| Swimmer {
                node: n.id.clone(),
                gossip: g,
                digest: cluster.digest,
                bump: 0,
            })
        })
        .collect();
    let ids: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
    let (health, digest) = (cluster.health.clone(), cluster.digest);
    std::thread::Builder::new()
        .name("cluster-swim".into())
        .spawn(move || run(socket, identity, peers, ids, health, digest))
        .map(|_| ())
}

fn run(
    socket: UdpSocket,
    identity: Swimmer,
    peers: Vec<Swimmer>,
    ids: Vec<String>,
    health: Arc<PeerHealth>,
    digest: u64,
) {
    let seed = u64::from(std::process::id()) ^ xxhash_rust::xxh3::xxh3_64(identity.node.as_bytes());
    let mut foca = Foca::new(
        identity,
        swim_config(ids.len()),
        SmallRng::seed_from_u64(seed),
        PostcardCodec,
    );
    let mut rt = AccumulatingRuntime::new();
    let mut timers = BinaryHeap::new();
    let mut seq = 0u64;
    let mut last_announce: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        // Knock on every configured peer until one answers (and after a partition).
        if foca.num_members() == 0 && last_announce.is_none_or(|t| now - t > Duration::from_secs(1))
        {
            last_announce = Some(now);
            for p in &peers {
                let _ = foca.announce(p.clone(), &mut rt);
            }
        }
        while let Some(Due(at, _, _)) = timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Due(_, _, t)) = timers.pop() {
                let _ = foca.handle_timer(t, &mut rt);
            }
        }
        let wait = timers
            .peek()
            .map_or(Duration::from_millis(100), |Due(at, _, _)| {
                at.saturating_duration_since(now)
            })
            .clamp(Duration::from_millis(1), Duration::from_millis(100));
        let _ = socket.set_read_timeout(Some(wait));
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && let Err(e) = foca.handle_data(&buf[..n], &mut rt)
        {
            tracing::debug!("cluster: a gossip datagram was refused: {e}");
        }
        while let Some((to, data)) = rt.to_send() {
            let _ = socket.send_to(&data, to.gossip);
        }
        while let Some((after, t)) = rt.to_schedule() {
            seq += 1;
            timers.push(Due(Instant::now() + after, seq, t));
        }
        while let Some(n) = rt.to_notify() {
            verdict(n, &ids, &health, digest);
        }
    }
}

/// A member's verdict, into the shards' view of the peers.
fn verdict(n: OwnedNotification<Swimmer>, ids: &[String], health: &PeerHealth, digest: u64) {
    let (who, up) = match &n {
        OwnedNotification::MemberUp(m) => (m, true),
        OwnedNotification::MemberDown(m) => (m, false),
        _ => return,
    };
    let Some(i) = ids.iter().position(|id| *id == who.node) else {
        tracing::warn!(
            member = who.node,
            "cluster: a member not in the node list gossips with us"
        );
        return;
    };
    let agrees = who.digest == digest;
    if up && !agrees {
        tracing::warn!(
            member = who.node,
            "cluster: member's node list differs from ours: not sending it requests"
        );
    }
    tracing::info!(member = who.node, alive = up, "cluster: membership changed");
    health.set_alive(i, up && agrees);
}
