//! Running as a service: the supervisor on the main thread (signals, systemd
//! notifications and watchdog, reload, binary upgrade, graceful stop, shard failure),
//! and the admin listener (metrics, status page, health).

pub mod access_log;
pub mod admin;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod signals;
pub mod status;
pub mod supervise;
pub mod upgrade;
pub mod view;
