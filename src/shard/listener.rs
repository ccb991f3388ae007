//! One listening socket per shard on the same address (SO_REUSEPORT), so the kernel
//! spreads new connections over shards without a shared accept queue.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::ShardError;

const LISTEN_BACKLOG: i32 = 4096;

/// Binds `count` listeners. With port 0 the first picks the port and the rest join it.
pub fn bind_all(addr: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>, ShardError> {
    ensure_free(addr).map_err(|source| ShardError::Listen { addr, source })?;
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let listener = bind_one(addr).map_err(|source| ShardError::Listen { addr, source })?;
        if addr.port() == 0 {
            addr = listener
                .local_addr()
                .map_err(|source| ShardError::Listen { addr, source })?;
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

/// SO_REUSEPORT would let a second daemon share the port and silently take half the
/// connections; a plain bind first proves the address is ours alone.
fn ensure_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The environment variable a binary upgrade passes the listening sockets in: their
/// descriptor numbers, comma-separated, inherited from the process that hands over.
pub const INHERITED_FDS: &str = "DISTILLD_LISTEN_FDS";

/// The listeners handed over by the previous process, if this one was started by a
/// binary upgrade: the same sockets, so no connection in their backlogs is lost. Call
/// it first thing, before any thread starts (it edits the environment).
pub fn take_inherited() -> Result<Option<Vec<std::net::TcpListener>>, ShardError> {
    let Ok(list) = std::env::var(INHERITED_FDS) else {
        return Ok(None);
    };
    // Not passed on to processes this one starts (its own upgrade passes its own).
    // SAFETY: the caller runs this before any other thread exists.
    unsafe { std::env::remove_var(INHERITED_FDS) };
    let mut listeners = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let bad = |why: String| ShardError::Inherit(format!("{INHERITED_FDS}={list:?}: {why}"));
        let fd: i32 = part
            .parse()
            .map_err(|_| bad(format!("{part:?} is not a descriptor")))?;
        listeners.push(adopt(fd).map_err(|e| bad(format!("descriptor {fd}: {e}")))?);
    }
    if listeners.is_empty() {
        return Err(ShardError::Inherit(format!(
            "{INHERITED_FDS} names no descriptor"
        )));
    }
    Ok(Some(listeners))
}

/// The sockets an upgrade keeps are the old process's: a changed `server.listen` or
/// `server.workers` takes a restart, and the log says so.
pub fn warn_if_unlike_config(inherited: &[std::net::TcpListener], config: &crate::config::Config) {
    tracing::info!(
        count = inherited.len(),
        "took over the listeners of the previous process"
    );
    let addr = inherited.first().and_then(|l| l.local_addr().ok());
    if let Some(addr) = addr
        && config.listen.port() != 0
        && addr != config.listen
    {
        tracing::warn!(inherited = %addr, configured = %config.listen,
            "server.listen differs from the sockets handed over: a restart applies it");
    }
    if inherited.len() != config.effective_workers() {
        tracing::warn!(
            shards = inherited.len(),
            configured = config.effective_workers(),
            "one shard per handed-over socket: a restart applies server.workers"
        );
    }
}

/// Takes ownership of an inherited descriptor after checking it is a listening TCP
/// socket, and marks it close-on-exec again.
pub fn adopt(fd: i32) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl and getsockopt only read the descriptor's flags and options.
    let listening = unsafe {
        if libc::fcntl(fd, libc::F_GETFD) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut on: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut on as *mut libc::c_int).cast(),
            &mut len,
        );
        r == 0 && on == 1
    };
    if !listening {
        return Err(std::io::Error::other("not a listening socket"));
    }
    // SAFETY: the descriptor was handed to this process to own, and is open (checked).
    let socket = unsafe { Socket::from_raw_fd(fd) };
    socket.set_cloexec(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
