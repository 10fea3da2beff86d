//! The permit file: what the operator wrote, validated.
//!
//! Two levels, as in the file's life: [`load()`] turns YAML text into a
//! [`Ruleset`] (every field checked, every problem reported with its
//! position, the whole file rejected on any error), and
//! [`crate::table::Table::compile`] turns a `Ruleset` into the lookup table
//! the workers use. A `Ruleset` is therefore always valid: no duplicate
//! entries, no host bits, no IPv4-mapped IPv6 prefixes, every port judged at
//! most once per protocol.

#[doc(hidden)]
pub mod differential;
pub mod file;
mod load;
mod yaml;

use std::fmt;

pub use ip_network::IpNetwork;
pub use load::{Diagnostic, LoadError, Loaded, MAX_SHOWN, Omitted, Severity, load, load_file};

/// A position in the rules file, 1-based, as editors show it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Transport protocols a port can be judged for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub const ALL: [Proto; 2] = [Proto::Tcp, Proto::Udp];

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(format!("unknown protocol {s:?}: expected tcp or udp")),
        }
    }
}

/// What the gate does with unidentified traffic on a judged port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Drop it.
    Enforce,
    /// Accept it, but count and report it exactly as a drop would be.
    Monitor,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

/// One `ports:` row: a port/protocol the gate judges, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPolicy {
    pub port: u16,
    pub proto: Proto,
    pub mode: Mode,
    pub pos: Pos,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    pub name: String,
    pub position: Option<String>,
    pub phone: String,
    pub email: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contacts {
    pub site: Contact,
    pub technical: Contact,
    pub billing: Contact,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub name: String,
    pub contacts: Contacts,
    pub pos: Pos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Permit,
    Block,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Permit => "permit",
            EntryKind::Block => "block",
        }
    }
}

/// A port as an entry lists it: `25` means port 25 for every protocol the
/// gate judges it on; `25/udp` narrows it to one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortSel {
    pub port: u16,
    pub proto: Option<Proto>,
}

impl PortSel {
    pub fn matches(self, port: u16, proto: Proto) -> bool {
        self.port == port && self.proto.is_none_or(|p| p == proto)
    }
}

impl fmt::Display for PortSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            None => write!(f, "{}", self.port),
            Some(p) => write!(f, "{}/{}", self.port, p),
        }
    }
}

/// One row of a site's `permits:` or `blocks:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Index into [`Ruleset::sites`].
    pub site: usize,
    pub kind: EntryKind,
    pub prefix: IpNetwork,
    pub ports: Vec<PortSel>,
    /// Permits: the form's "type of device or application".
    pub device: Option<String>,
    /// Permits: the form's "domain name".
    pub domain: Option<String>,
    /// Blocks: why the carve-out exists (ticket, incident).
    pub reason: Option<String>,
    /// Where the entry starts in the file.
    pub pos: Pos,
}

impl Entry {
    pub fn lists(&self, port: u16, proto: Proto) -> bool {
        self.ports.iter().any(|s| s.matches(port, proto))
    }
}

/// A validated permit file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub ports: Vec<PortPolicy>,
    pub sites: Vec<Site>,
    /// Every permit and block of every site, in file order.
    pub entries: Vec<Entry>,
}

impl Ruleset {
    pub fn permits(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::Permit)
            .count()
    }

    pub fn blocks(&self) -> usize {
        self.entries.len() - self.permits()
    }

    /// The policy for a port, if the gate judges it.
    pub fn policy(&self, port: u16, proto: Proto) -> Option<&PortPolicy> {
        self.ports
            .iter()
            .find(|p| p.port == port && p.proto == proto)
    }

    /// The deciding entry for an address: the most specific entry covering
    /// it that lists the port. This is the reference model — a scan of every
    /// entry — that the compiled table is tested against and that `explain`
    /// uses to name the entry behind a verdict.
    pub fn deciding_entry(
        &self,
        addr: std::net::IpAddr,
        port: u16,
        proto: Proto,
    ) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.prefix.contains(addr) && e.lists(port, proto))
            .max_by_key(|e| e.prefix.netmask())
    }
}

/// One-line summary, as `check` and the reload log print it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub sites: usize,
    pub permits: usize,
    pub blocks: usize,
    pub ports: usize,
}

impl Ruleset {
    pub fn summary(&self) -> Summary {
        Summary {
            sites: self.sites.len(),
            permits: self.permits(),
            blocks: self.blocks(),
            ports: self.ports.len(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {}, {}",
            count(self.sites, "site"),
            count(self.permits, "permit"),
            count(self.blocks, "block"),
            count(self.ports, "judged port")
        )
    }
}

/// `n` and the noun, plural unless `n` is one: "1 site", "2 sites".
pub fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}
