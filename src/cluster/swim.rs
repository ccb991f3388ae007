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
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Raised on each rejoin and set from the clock at start, so the newer identity
    /// (a restarted or upgraded process, or one that was declared down) wins.
    pub bump: u32,
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
        self.bump.wrapping_sub(adversary.bump) < u32::MAX / 2
    }
}

/// Timings for a LAN: a dead or frozen member is declared down in about a second. A
/// member declared down is told so (it then rejoins under a renewed identity), down
/// members are announced to every second (one that comes back is seen), and they are
/// forgotten after 30 s (a restarted process starts with a newer identity anyway).
fn swim_config(members: usize) -> Config {
    let mut c = Config::simple();
    c.probe_period = Duration::from_millis(300);
    c.probe_rtt = Duration::from_millis(150);
    c.suspect_to_down_after = Duration::from_millis(700);
    c.num_indirect_probes = NonZeroUsize::new(members.clamp(1, 3)).unwrap_or(NonZeroUsize::MIN);
    c.max_transmissions = NonZeroU8::new(8).unwrap_or(NonZeroU8::MIN);
    c.notify_down_members = true;
    c.remove_down_after = Duration::from_secs(30);
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(1),
        num_members: NonZeroUsize::new(members.max(1)).unwrap_or(NonZeroUsize::MIN),
    });
    c
}

/// A start-dependent first `bump`: seconds since the epoch, so each process's identity
/// is newer than the last one's.
fn first_bump() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
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

/// The membership thread, stopped (and its socket closed) on `stop`: before a binary
/// upgrade starts the new process (which binds the gossip port), and when a reload
/// changes the node list (a new thread takes the new one).
pub struct Swim {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Swim {
    /// Stops the thread and waits for its socket to close (within its 100 ms wait).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the membership thread for `cluster` when this node has a gossip address.
pub fn start(cluster: &ClusterConfig) -> std::io::Result<Option<Swim>> {
    let me = &cluster.nodes[cluster.me];
    let Some(gossip) = me.gossip else {
        return Ok(None);
    };
    let socket = UdpSocket::bind(gossip)?;
    let identity = Swimmer {
        node: me.id.clone(),
        gossip,
        digest: cluster.digest,
        bump: first_bump(),
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
        members: cluster
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.gossip))
            .collect(),
        health: cluster.health.clone(),
        digest: cluster.digest,
        up: vec![false; cluster.nodes.len()],
        seal: Seal(cluster.secret.clone()),
        refused: 0,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("cluster-swim".into())
        .spawn(move || run(socket, identity, peers, view, &stopped))?;
    Ok(Some(Swim {
        stop,
        thread: Some(thread),
    }))
}

/// What the membership thread reports to and checks against.
struct View {
    /// The configured nodes: id and gossip address.
    members: Vec<(String, Option<SocketAddr>)>,
    health: Arc<PeerHealth>,
    digest: u64,
    /// Each configured node's liveness as membership last said it (whatever its
    /// digest): a rename alone does not say it again.
    up: Vec<bool>,
    seal: Seal,
    /// Datagrams refused so far (logged at powers of two).
    refused: u64,
}

impl View {
    /// Only configured gossip addresses are listened to.
    fn knows(&self, from: SocketAddr) -> bool {
        self.members.iter().any(|(_, g)| *g == Some(from))
    }

    fn refuse(&mut self, from: SocketAddr, why: &str) {
        self.refused += 1;
        if self.refused.is_power_of_two() {
            tracing::warn!(%from, refused = self.refused, "cluster: gossip datagram refused: {why}");
        }
    }
}

/// HMAC-SHA256 over each datagram (its first 16 bytes appended), when a secret is set:
/// a datagram without the right tag is dropped before foca reads it.
struct Seal(Option<Arc<[u8]>>);

use super::auth::{self, TAG};

impl Seal {
    fn seal(&self, data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        if let Some(key) = &self.0 {
            out.extend_from_slice(&auth::tag(key, &[data]));
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
        auth::verify(key, &[data], tag).then_some(data)
    }
}

fn run(
    socket: UdpSocket,
    identity: Swimmer,
    peers: Vec<Swimmer>,
    mut view: View,
    stop: &AtomicBool,
) {
    let members = view.members.len();
    let seed = u64::from(std::process::id()) ^ xxhash_rust::xxh3::xxh3_64(identity.node.as_bytes());
    let mut foca = Foca::new(
        identity,
        swim_config(members),
        SmallRng::seed_from_u64(seed),
        PostcardCodec,
    );
    let mut rt = AccumulatingRuntime::new();
    let mut timers = BinaryHeap::new();
    let mut seq = 0u64;
    let mut last_announce: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Every second, knock on each configured peer that is not an active member: at
        // start, after a partition, and when one comes back.
        if last_announce.is_none_or(|t| now - t > Duration::from_secs(1)) {
            last_announce = Some(now);
            for p in &peers {
                let active = foca.iter_members().any(|m| m.id().gossip == p.gossip);
                if !active {
                    let _ = foca.announce(p.clone(), &mut rt);
                }
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
            if !view.knows(from) {
                view.refuse(from, "not from a configured gossip address");
            } else {
                match view.seal.open(&buf[..n]) {
                    Some(data) => {
                        if let Err(e) = foca.handle_data(data, &mut rt) {
                            tracing::debug!("cluster: a gossip datagram was refused: {e}");
                        }
                    }
                    None => view.refuse(from, "failed authentication"),
                }
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
            verdict(n, &mut view);
        }
    }
}

/// A member's verdict, into the shards' view of the peers. A member that changed its
/// identity (a restart, or a reload that changed its node list and so its digest) while
/// alive is only renamed, with no new "up": its new digest is judged then, or it would
/// stay set aside for a list it no longer has.
fn verdict(n: OwnedNotification<Swimmer>, view: &mut View) {
    let (who, up) = match &n {
        OwnedNotification::MemberUp(m) => (m, Some(true)),
        OwnedNotification::MemberDown(m) => (m, Some(false)),
        OwnedNotification::Rename(_, m) => (m, None),
        _ => return,
    };
    // A configured node, at its configured gossip address.
    let found = view
        .members
        .iter()
        .position(|(id, g)| *id == who.node && *g == Some(who.gossip));
    let Some(i) = found else {
        tracing::warn!(
            member = who.node,
            "cluster: a member not in the node list gossips with us"
        );
        return;
    };
    let Some(known) = view.up.get_mut(i) else {
        return;
    };
    let up = up.unwrap_or(*known);
    *known = up;
    let (health, digest) = (&view.health, view.digest);
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

    /// A peer seen with the old node list, then renamed to an identity with ours (it
    /// reloaded the same list): taken back. One renamed while down stays down.
    #[test]
    fn a_peer_renamed_to_our_node_list_is_taken_back() {
        let gossip: SocketAddr = "127.0.0.2:7946".parse().unwrap();
        let peer = |digest, bump| Swimmer {
            node: "b".into(),
            gossip,
            digest,
            bump,
        };
        let health = Arc::new(PeerHealth::new(2));
        let mut view = View {
            members: vec![("a".into(), None), ("b".into(), Some(gossip))],
            health: health.clone(),
            digest: 2,
            up: vec![false; 2],
            seal: Seal(None),
            refused: 0,
        };
        let now = Instant::now();
        verdict(OwnedNotification::MemberUp(peer(1, 1)), &mut view);
        assert!(!health.is_up(1, now), "another node list: set aside");
        verdict(OwnedNotification::Rename(peer(1, 1), peer(2, 2)), &mut view);
        assert!(
            health.is_up(1, now),
            "renamed to our list while alive: back"
        );
        verdict(OwnedNotification::MemberDown(peer(2, 2)), &mut view);
        verdict(OwnedNotification::Rename(peer(2, 2), peer(2, 3)), &mut view);
        assert!(!health.is_up(1, now), "renamed while down: still down");
    }

    #[test]
    fn a_renewed_identity_wins_over_the_old_one() {
        let old = Swimmer {
            node: "a".into(),
            gossip: "127.0.0.1:7946".parse().unwrap(),
            digest: 1,
            bump: u32::MAX,
        };
        let new = foca::Identity::renew(&old).unwrap();
        assert!(
            foca::Identity::win_addr_conflict(&new, &old),
            "across the wrap"
        );
        assert!(!foca::Identity::win_addr_conflict(&old, &new));
    }
}
