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
