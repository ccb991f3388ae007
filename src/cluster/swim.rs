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
    let view = View {
        ids: cluster.nodes.iter().map(|n| n.id.clone()).collect(),
        health: cluster.health.clone(),
        digest: cluster.digest,
        seal: Seal(cluster.secret.clone()),
    };
    std::thread::Builder::new()
        .name("cluster-swim".into())
        .spawn(move || run(socket, identity, peers, view))
        .map(|_| ())
}

/// What the membership thread reports to and checks against.
struct View {
    ids: Vec<String>,
    health: Arc<PeerHealth>,
    digest: u64,
    seal: Seal,
}

/// HMAC-SHA256 over each datagram (its first 16 bytes appended), when a secret is set:
/// a datagram without the right tag is dropped before foca reads it.
struct Seal(Option<Arc<[u8]>>);

const TAG: usize = 16;

impl Seal {
    fn tag(&self, key: &[u8], data: &[u8]) -> [u8; TAG] {
        use hmac::{Hmac, Mac};
        let mut out = [0u8; TAG];
        if let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) {
            mac.update(data);
            out.copy_from_slice(&mac.finalize().into_bytes()[..TAG]);
        }
        out
    }

    fn seal(&self, data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        if let Some(key) = &self.0 {
            out.extend_from_slice(&self.tag(key, data));
        }
        out
    }

    /// The payload of an authentic datagram.
    fn open<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let Some(key) = &self.0 else {
            return Some(datagram);
        };
        let at = datagram.len().checked_sub(TAG)?;
        let (data, tag) = datagram.split_at(at);
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).ok()?;
        mac.update(data);
        mac.verify_truncated_left(tag).ok().map(|()| data)
    }
}

fn run(socket: UdpSocket, identity: Swimmer, peers: Vec<Swimmer>, view: View) {
    let ids = &view.ids;
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
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            match view.seal.open(&buf[..n]) {
                Some(data) => {
                    if let Err(e) = foca.handle_data(data, &mut rt) {
                        tracing::debug!("cluster: a gossip datagram was refused: {e}");
                    }
                }
                None => tracing::warn!(%from, "cluster: a gossip datagram failed authentication"),
            }
        }
        while let Some((to, data)) = rt.to_send() {
            let _ = socket.send_to(&view.seal.seal(&data), to.gossip);
        }
        while let Some((after, t)) = rt.to_schedule() {
            seq += 1;
            timers.push(Due(Instant::now() + after, seq, t));
        }
        while let Some(n) = rt.to_notify() {
            verdict(n, ids, &view.health, view.digest);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_datagrams_sealed_with_the_secret_open() {
        let ours = Seal(Some(Arc::from(&b"0123456789abcdef-ours"[..])));
        let theirs = Seal(Some(Arc::from(&b"0123456789abcdef-theirs"[..])));
        let sealed = ours.seal(b"ping");
        assert_eq!(ours.open(&sealed), Some(&b"ping"[..]));
        assert_eq!(theirs.open(&sealed), None, "another secret");
        let mut tampered = sealed.clone();
        tampered[0] ^= 1;
        assert_eq!(ours.open(&tampered), None, "a changed byte");
        assert_eq!(ours.open(b"short"), None, "no room for a tag");
        assert_eq!(ours.open(b"ping"), None, "unsealed");
        let open = Seal(None);
        assert_eq!(open.open(b"ping"), Some(&b"ping"[..]), "no secret: as sent");
    }

    #[test]
    fn a_renewed_identity_wins_over_the_old_one() {
        let old = Swimmer {
            node: "a".into(),
            gossip: "127.0.0.1:7946".parse().unwrap(),
            digest: 1,
            bump: u16::MAX,
        };
        let new = foca::Identity::renew(&old).unwrap();
        assert!(
            foca::Identity::win_addr_conflict(&new, &old),
            "across the wrap"
        );
        assert!(!foca::Identity::win_addr_conflict(&old, &new));
    }
}
