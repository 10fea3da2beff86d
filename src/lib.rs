//! portgate: a userspace packet filter for Linux gateways.
//!
//! Layout, from the packet inwards:
//! * [`daemon`]: the shell — netfilter queue workers, the reporter thread,
//!   signals and reloads. The only code that talks to the kernel.
//! * [`decision`]: the pure core — queued bytes in, a [`decision::Decision`]
//!   out — built on [`packet`] (parsing) and [`table`] (the compiled
//!   permit table, whose longest-prefix lookups are [`lpm`]).
//! * [`rules`]: the permit file — YAML in, a validated [`rules::Ruleset`]
//!   out, every problem reported with its line and column.
//! * [`explain`] and [`cli`]: what the command line shows and parses.

#![forbid(unsafe_code)]

pub mod cli;
pub mod daemon;
pub mod decision;
pub mod explain;
pub mod lpm;
pub mod packet;
pub mod rules;
pub mod table;
