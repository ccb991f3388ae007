//! What a shard's connections share with each other and with no other thread: the
//! access log's batch and the shard's references to the stored objects it serves.
//! Nothing here is atomic or locked, so a hit writes no cache line another core writes.

use crate::appliance::access_log::AccessLog;
use crate::cache::shard_refs::ShardRefs;

pub struct ShardLocal {
    pub log: AccessLog,
    pub refs: ShardRefs,
}

impl ShardLocal {
    pub fn new(log: AccessLog) -> std::rc::Rc<ShardLocal> {
        std::rc::Rc::new(ShardLocal {
            log,
            refs: ShardRefs::default(),
        })
    }

    /// Every tick: the log's batch to its writer, unused references let go.
    pub fn tick(&self) {
        self.log.flush();
        self.refs.sweep();
    }
}
