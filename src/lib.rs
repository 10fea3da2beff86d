//! portgate: a userspace packet filter for Linux gateways.
//!
//! Layout, from the packet inwards:
//! * [`queue`]: the netfilter queue over netlink — the only code that talks
//!   to the kernel's packet path.
//! * [`daemon`]: the shell — queue workers, the reporter thread, signals and
//!   reloads.
//! * [`decision`]: the pure core — queued bytes in, a [`decision::Decision`]
//!   out — built on [`packet`] (parsing) and [`table`] (the compiled
//!   permit table, whose longest-prefix lookups are [`lpm`]).
//! * [`rules`]: the permit file — YAML in, a validated [`rules::Ruleset`]
//!   out, every problem reported with its line and column.
//! * [`control`]: the control socket between the daemon and the `reload`,
//!   `status`, `blocked` and `explain` commands.
//! * [`explain`] and [`cli`]: what the command line shows and parses;
//!   [`docs`]: the man pages and completions generated from them.

#![forbid(unsafe_code)]

pub mod cli;
pub mod control;
pub mod daemon;
pub mod decision;
pub mod docs;
pub mod explain;
pub mod lpm;
pub mod packet;
pub mod queue;
pub mod rules;
pub mod table;
