//! Driver selection: `auto` takes io_uring where the kernel allows it and falls back to
//! epoll where a sandbox forbids it; `uring` forced there fails with a clear error.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::Client;

/// A seccomp filter that makes io_uring_setup fail with EPERM, as a container runtime's
/// default profile or `kernel.io_uring_disabled` would.
fn forbid_io_uring(cmd: &mut Command) {
    #[repr(C)]
    struct SockFilter {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }
    const IO_URING_SETUP: u32 = 425; // the same number on every architecture
    // SAFETY: pre_exec runs in the forked child before exec; prctl only reads the
    // program, which lives on this stack frame for the duration of the call.
    unsafe {
        cmd.pre_exec(|| {
            let filter = [
                SockFilter {
                    code: 0x20,
                    jt: 0,
                    jf: 0,
                    k: 0,
                }, // ld [nr]
                SockFilter {
                    code: 0x15,
                    jt: 0,
                    jf: 1,
                    k: IO_URING_SETUP,
                }, // jeq
                SockFilter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x0005_0000 | 1,
                }, // ret ERRNO(EPERM)
                SockFilter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x7fff_0000,
                }, // ret ALLOW
            ];
            let prog = SockFprog {
                len: filter.len() as u16,
                filter: filter.as_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &prog as *const SockFprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn distilld(io: &str, sandboxed: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distilld"));
    cmd.args([
        "run",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--io",
        io,
        "--admin",
        "off",
    ]);
    if sandboxed {
        forbid_io_uring(&mut cmd);
    }
    cmd
}

/// Starts the daemon, returns its ready line, and checks it serves.
fn ready_line(mut cmd: Command) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .expect("address");
    let mut c = Client::connect(addr);
    c.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn auto_prefers_io_uring_when_the_kernel_allows_it() {
    let line = ready_line(distilld("auto", false));
    // This machine's kernel has io_uring; elsewhere auto may rightly say epoll.
    assert!(
        line.contains("(io_uring)") || line.contains("(epoll)"),
        "{line}"
    );
    let probe_ok = distilld::shard::uring::probe::probe().is_ok();
    assert_eq!(line.contains("(io_uring)"), probe_ok, "{line}");
}

#[test]
fn auto_falls_back_to_epoll_in_a_sandbox_without_io_uring() {
    let line = ready_line(distilld("auto", true));
    assert!(line.contains("(epoll)"), "{line}");
}

#[test]
fn forced_uring_in_a_sandbox_fails_clearly() {
    let mut cmd = distilld("uring", true);
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("io = \"uring\"") && err.contains("refused"),
        "{err}"
    );
}

#[test]
fn unknown_driver_is_refused() {
    let out = distilld("kqueue", false).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--io"));
}

/// Sockets in the ring's registered-file table: more connections than slots (the rest use
/// descriptors), slots reused after a close, and a socket closed by the proxy really
/// closes (a slot left registered would keep it open and the client would never see EOF).
#[test]
fn registered_files_are_reused_and_release_their_sockets() {
    common::with_io(common::Io::Uring, || {
        let config = "[uring]\nfixed_files = 2\n[cache]\nmemory_bytes = 0\n";
        let setup = common::Setup::with(common::Mode::Reverse, config, &[]);
        for round in 0..3 {
            let mut clients: Vec<Client> = (0..6).map(|_| setup.client()).collect();
            for (i, c) in clients.iter_mut().enumerate() {
                for _ in 0..2 {
                    c.send(
                        setup
                            .head("GET", &format!("/bytes/{}", 100 + i), &[])
                            .as_bytes(),
                    );
                    let r = c.response(false);
                    assert_eq!((r.status, r.body.len()), (200, 100 + i), "round {round}");
                }
            }
            for c in &mut clients {
                c.send(
                    setup
                        .head("GET", "/bytes/10", &["Connection: close"])
                        .as_bytes(),
                );
                assert_eq!(c.response(false).status, 200);
                assert!(
                    c.is_closed(std::time::Duration::from_secs(5)),
                    "round {round}"
                );
            }
        }
    });
}
