//! The interfaces of a capture, watched while it runs: one that disappears (deleted, or
//! its driver gone) is said, shown as down (`ringcap_interface_up`), and capture goes on
//! on the others; one that comes back under its name, or the last one gone, ends the
//! capture with an error.
//!
//! Why end it rather than attach again: a daemon that dropped its privileges (`-Z`, as
//! the systemd unit runs it) has no capability left to attach programs, and AF_XDP sockets
//! are bound to the interface that went. A non-zero exit lets the service manager start
//! it again (the unit's `Restart=on-failure`), which attaches to the interface as it is
//! now, within `RestartSec`.
use std::sync::Mutex;

use crate::health::locked;
use crate::kernel::interface_index;

/// The interfaces given to -i and the index each was attached at.
pub struct Links {
    attached: Vec<(String, u32)>,
    /// Whether each is still there with the index it was attached at.
    up: Vec<bool>,
}

/// Why a capture has to end because of its interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinksEnd {
    /// Every interface is gone.
    NoneLeft,
    /// An interface that went is there again (a new one of that name): start again to
    /// capture it.
    Returned(String),
}

impl std::fmt::Display for LinksEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinksEnd::NoneLeft => write!(f, "no interface left to capture: every one given to -i is gone"),
            LinksEnd::Returned(name) => write!(
                f,
                "{name} is back after it went: ringcap stops so that a new start (the service manager's \
                 restart) captures it again"
            ),
        }
    }
}

impl Links {
    /// Watches `attached` (name, ifindex at attach time); publishes their state in `shown`.
    pub fn new(attached: Vec<(String, u32)>, shown: &Mutex<Vec<(String, bool)>>) -> Self {
        let links = Links { up: vec![true; attached.len()], attached };
        links.publish(shown);
        links
    }

    /// Looks at every interface again: says which went, and whether the capture must end.
    pub fn check(&mut self, shown: &Mutex<Vec<(String, bool)>>) -> Option<LinksEnd> {
        let mut end = None;
        for ((name, ifindex), up) in self.attached.iter().zip(self.up.iter_mut()) {
            let now = interface_index(name).ok();
            match (*up, now) {
                (true, Some(index)) if index == *ifindex => {}
                (true, _) => {
                    *up = false;
                    eprintln!(
                        "ringcap: warning: interface {name} is gone (it was index {ifindex}): its packets are \
                         no longer captured; capture goes on on the others"
                    );
                }
                (false, Some(_)) => end = Some(LinksEnd::Returned(name.clone())),
                (false, None) => {}
            }
        }
        self.publish(shown);
        end.or_else(|| self.up.iter().all(|up| !up).then_some(LinksEnd::NoneLeft))
    }

    fn publish(&self, shown: &Mutex<Vec<(String, bool)>>) {
        *locked(shown) =
            self.attached.iter().map(|(name, _)| name.clone()).zip(self.up.iter().copied()).collect();
    }
}
