//! The event loop's part in correction requests against returned data (Art. 26): a filing or
//! an answer is carried out on the endpoint and durable before the caller hears of it. What
//! they are and how they show: [`crate::returned_api`].

use backflow_protocol::time::UnixMs;

use crate::returned_api::{answer, file, list, ReturnedCmd};
use crate::runtime::Runtime;

impl Runtime {
    /// Carries out `cmd`; a filing or answer is durable before its reply goes.
    pub(crate) fn on_returned(&mut self, cmd: ReturnedCmd, now: UnixMs) {
        match cmd {
            ReturnedCmd::List { reply } => {
                let _ = reply.send(list(&self.ep, now));
            }
            ReturnedCmd::File {
                department,
                params,
                reply,
            } => {
                let result = file(&mut self.ep, now, &department, *params);
                self.drain();
                self.make_durable();
                let _ = reply.send(result);
            }
            ReturnedCmd::Answer {
                department,
                id,
                params,
                reply,
            } => {
                let result = answer(&mut self.ep, now, &department, &id, *params);
                self.drain();
                self.make_durable();
                let _ = reply.send(result);
            }
        }
    }
}
