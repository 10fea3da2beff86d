//! From YAML text to a validated [`Ruleset`], reporting every problem.
//!
//! Contract: [`load`] either returns a `Ruleset` with no error in it, or a
//! [`LoadError`] listing every problem found, each with its line and column
//! and, where we can tell, what the operator probably meant. Nothing is
//! dropped silently: an unknown key (a typo like `prots:`) is an error, not
//! an ignored field, because an ignored `ports` would permit nothing and an
//! ignored block would permit too much.
//!
//! The walk is over the position-carrying tree from [`super::yaml`], so that
//! problems found after parsing (host bits, duplicates, conflicts) point at
//! the exact line like syntax errors do; it gets that tree a site at a
//! time (see [`load`]).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use foldhash::HashMap;
use foldhash::HashMapExt as _;
use ip_network::IpNetwork;

use super::yaml::{self, Node, Value};
use super::{
    Contact, Contacts, Entry, EntryKind, Mode, PortPolicy, PortSel, Pos, Proto, Ruleset, Site,
};

/// Judged ports are indexed by a u16 slot; far more than any gate needs.
const MAX_JUDGED_PORTS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in the file, at a position.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub pos: Pos,
    pub message: String,
    /// What to do about it, when we can tell.
    pub hint: Option<String>,
}

impl Diagnostic {
    fn error(pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            pos,
            message: message.into(),
            hint: None,
        }
    }

    fn warning(pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            pos,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// `FILE:LINE:COLUMN: error: message`, and the hint on a second line.
    pub fn render(&self, file: &str) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut s = if self.pos.line == 0 {
            format!("{file}: {sev}: {}", self.message)
        } else {
            format!("{file}:{}: {sev}: {}", self.pos, self.message)
        };
        if let Some(h) = &self.hint {
            s.push_str("\n    hint: ");
            s.push_str(h);
        }
        s
    }
}

/// The file was rejected. Holds every problem found (warnings included, so
/// the operator sees everything at once).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadError {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
    /// What `diagnostics` leaves out: past [`MAX_SHOWN`] of a kind, only
    /// the count is kept.
    #[serde(default)]
    pub omitted: Omitted,
}

/// How many diagnostics of each kind a file has, at most, in a
/// [`LoadError`] or a [`Loaded`]: the first ones by position. A file broken
/// on every line must not print a million lines (or take as long to).
pub const MAX_SHOWN: usize = 100;

/// Diagnostics past [`MAX_SHOWN`], counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Omitted {
    pub errors: usize,
    pub warnings: usize,
}

impl Omitted {
    /// `... and N more errors (and M more warnings)`, when any were left out.
    pub fn line(&self) -> Option<String> {
        let more =
            |n: usize, what: &str| format!("{n} more {what}{}", if n == 1 { "" } else { "s" });
        match (self.errors, self.warnings) {
            (0, 0) => None,
            (e, 0) => Some(format!("... and {}", more(e, "error"))),
            (0, w) => Some(format!("... and {}", more(w, "warning"))),
            (e, w) => Some(format!(
                "... and {} and {}",
                more(e, "error"),
                more(w, "warning")
            )),
        }
    }
}

impl LoadError {
    /// How many errors the file has, those left out of `diagnostics` too.
    pub fn error_count(&self) -> usize {
        self.errors().count() + self.omitted.errors
    }

    /// A file refused for one reason.
    pub fn one(file: &str, diagnostic: Diagnostic) -> LoadError {
        LoadError {
            file: file.to_owned(),
            diagnostics: vec![diagnostic],
            omitted: Omitted::default(),
        }
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for d in &self.diagnostics {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{}", d.render(&self.file))?;
        }
        if let Some(line) = self.omitted.line() {
            write!(f, "\n{line}")?;
        }
        write!(
            f,
            "\n{}: rejected: {}",
            self.file,
            super::count(self.error_count(), "error")
        )
    }
}

impl LoadError {
    /// As it displays, for a reload that was refused: its closing
    /// `FILE: rejected: N errors` line adds that nothing was changed.
    /// (`check` and a start have nothing to change, and say no more.)
    pub fn refused_reload(&self) -> String {
        format!("{self}; nothing was changed")
    }
}

impl std::error::Error for LoadError {}

/// A file that passed: the rules, and the warnings to show the operator.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub ruleset: Ruleset,
    /// The first [`MAX_SHOWN`] warnings by position.
    pub warnings: Vec<Diagnostic>,
    /// Warnings past those.
    pub more_warnings: usize,
}

/// Reads and validates a rules file; `file` names it in messages.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let text = super::file::read_path(path)?;
    load(&text, &path.display().to_string())
}

/// Validates rules text; `file` names it in messages.
///
/// Each site is walked as soon as the parser has read it and then dropped,
/// so the rules are built in the memory the sites' trees free: a file of a
/// million permits never stands in memory as a whole tree (that tree took
/// over twice the memory of the rules built from it, and far more on the
/// saphyr path). When `ports` comes after `sites` in the file, only the
/// check of each entry's ports against the judged ones waits for it.
pub fn load(text: &str, file: &str) -> Result<Loaded, LoadError> {
    let mut cx = Cx::default();
    let root = yaml::parse_streaming(text, "sites", &mut |found| cx.found(found));
    match root {
        Some(root) => cx.end(root, file),
        // The fast path gave up, perhaps after many sites: start over,
        // with the rules made from them freed first.
        None => {
            drop(cx);
            load_saphyr_only(text, file)
        }
    }
}

/// [`load`] without the YAML fast path.
pub(super) fn load_saphyr_only(text: &str, file: &str) -> Result<Loaded, LoadError> {
    let mut cx = Cx::default();
    let root = yaml::parse_saphyr_streaming(text, "sites", &mut |found| cx.found(found));
    match root {
        Ok(root) => cx.end(root, file),
        // A file with a syntax error gets that error alone.
        Err(e) => {
            drop(cx);
            load_tree(Err(e), file)
        }
    }
}

/// [`load`] from a whole tree, as it was before sites were streamed: the
/// differential tests' reference for the streaming.
pub(super) fn load_whole_tree(text: &str, file: &str) -> Result<Loaded, LoadError> {
    load_tree(yaml::parse_saphyr(text), file)
}

type Parsed<'t> = Result<(Node<'t>, Vec<yaml::SyntaxError>), yaml::SyntaxError>;

fn load_tree(parsed: Parsed<'_>, file: &str) -> Result<Loaded, LoadError> {
    let mut cx = Cx::default();
    match parsed {
        Ok((root, problems)) => {
            for p in problems {
                cx.err(Diagnostic::error(p.pos, p.message));
            }
            cx.root(&root);
        }
        Err(e) => cx.err(Diagnostic::error(e.pos, e.message)),
    }
    cx.finish(file)
}

/// The part of a load that finds a diagnostic, in the order a load from
/// the whole tree goes through them. Diagnostics at one position are shown
/// in this order, so that a load that walks sites as they are read, and so
/// finds things in another order, shows the same list: an explicit key's
/// missing value (`? site` ending a site) sits at the next token, which can
/// be a root key with problems of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// The parser's problems (duplicate keys).
    #[default]
    Syntax,
    /// The root mapping's keys.
    Root,
    Ports,
    Sites,
    /// Problems between entries.
    Between,
}

#[derive(Default)]
struct Cx {
    rules: Ruleset,
    /// The diagnostics so far, each with the phase that found it; trimmed to
    /// the first [`MAX_SHOWN`] of each kind by position whenever it grows
    /// long, so memory stays bounded.
    diags: Vec<(Phase, Diagnostic)>,
    /// The phase under way.
    phase: Phase,
    omitted: Omitted,
    /// Site names seen so far, and where: a repeated site is an error.
    site_names: HashMap<String, Pos>,
    /// Whether [`Cx::ports_from`] looked for the judged ports.
    ports_sought: bool,
    /// Whether `rules.ports` holds every judged port there will be (they
    /// were read, or there are none): from then on, entries' ports are
    /// checked against them as they are read.
    ports_final: bool,
    /// Entries' ports read before that, to check at the end: where, which,
    /// and in what kind of entry.
    unchecked: Vec<(Pos, PortSel, EntryKind)>,
}

/// The keys a mapping may hold, and which of them are required.
struct Shape {
    what: &'static str,
    keys: &'static [&'static str],
    required: &'static [&'static str],
}

const TOP: Shape = Shape {
    what: "the rules file",
    keys: &["ports", "sites"],
    required: &["ports", "sites"],
};
const PORT: Shape = Shape {
    what: "a `ports:` row",
    keys: &["port", "proto", "mode"],
    required: &["port"],
};
const SITE: Shape = Shape {
    what: "a site",
    keys: &["site", "contacts", "permits", "blocks"],
    required: &["site", "contacts"],
};
const CONTACTS: Shape = Shape {
    what: "`contacts`",
    keys: &["site", "technical", "billing"],
    required: &["site", "technical", "billing"],
};
const CONTACT: Shape = Shape {
    what: "a contact",
    keys: &["name", "position", "phone", "email"],
    required: &["name", "phone", "email"],
};
const PERMIT: Shape = Shape {
    what: "a permit",
    keys: &["ip", "ports", "device", "domain"],
    required: &["ip", "ports", "device"],
};
const BLOCK: Shape = Shape {
    what: "a block",
    keys: &["ip", "ports", "reason"],
    required: &["ip", "ports", "reason"],
};

/// The most keys a shape has.
const MAX_SHAPE_KEYS: usize = 4;

/// A mapping's fields by name, after its keys were checked against a shape:
/// the first value of each of the shape's keys, in the shape's order.
struct Fields<'a, 't> {
    keys: &'static [&'static str],
    values: [Option<&'a Node<'t>>; MAX_SHAPE_KEYS],
}

impl<'a, 't> Fields<'a, 't> {
    /// The key's value, when present and not empty.
    fn get(&self, key: &str) -> Option<&'a Node<'t>> {
        self.raw(key).filter(|v| !matches!(v.value, Value::Null))
    }

    /// The key's value, when present.
    fn raw(&self, key: &str) -> Option<&'a Node<'t>> {
        let i = self.keys.iter().position(|k| *k == key)?;
        self.values[i]
    }
}

impl Cx {
    /// What a streaming parse found: a problem, or a site to walk.
    fn found(&mut self, found: yaml::Streamed<'_, '_>) {
        match found {
            yaml::Streamed::Problem(p) => {
                self.phase = Phase::Syntax;
                self.err(Diagnostic::error(p.pos, p.message));
            }
            yaml::Streamed::Item(site, top) => {
                self.ports_from(top);
                self.phase = Phase::Sites;
                self.site(&site);
            }
        }
    }

    /// The end of a streaming load: the rest of the tree, then
    /// [`Cx::finish`].
    fn end(mut self, root: Node<'_>, file: &str) -> Result<Loaded, LoadError> {
        self.root(&root);
        drop(root);
        self.finish(file)
    }

    /// The end of every load: problems between entries, and the answer.
    fn finish(mut self, file: &str) -> Result<Loaded, LoadError> {
        self.phase = Phase::Between;
        self.cross_check();
        self.trim();
        let diags: Vec<Diagnostic> = self.diags.into_iter().map(|(_, d)| d).collect();
        if self.omitted.errors > 0 || diags.iter().any(|d| d.severity == Severity::Error) {
            return Err(LoadError {
                file: file.to_owned(),
                diagnostics: diags,
                omitted: self.omitted,
            });
        }
        Ok(Loaded {
            ruleset: self.rules,
            warnings: diags,
            more_warnings: self.omitted.warnings,
        })
    }

    /// Reads the judged ports from the root's entries read before the
    /// first site, `top`, when they are there.
    fn ports_from(&mut self, top: &[(Node<'_>, Node<'_>)]) {
        if !self.ports_sought {
            self.ports_sought = true;
            // The first `ports`, as `fields` takes it, unless empty.
            if let Some((_, ports)) = top.iter().find(|(k, _)| k.text() == Some("ports"))
                && !matches!(ports.value, Value::Null)
            {
                self.phase = Phase::Ports;
                self.ports(ports);
                self.ports_final = true;
            }
        }
    }

    fn err(&mut self, d: Diagnostic) {
        self.push(d);
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push((self.phase, d));
        if self.diags.len() >= 4 * MAX_SHOWN {
            self.trim();
        }
    }

    /// Sorts the diagnostics by position and phase (stably: what a phase
    /// found first at a position stays first) and keeps the first
    /// [`MAX_SHOWN`] of each kind, counting the rest.
    fn trim(&mut self) {
        self.diags.sort_by_key(|(phase, d)| (d.pos, *phase));
        let (mut errors, mut warnings) = (0, 0);
        let omitted = &mut self.omitted;
        self.diags.retain(|(_, d)| {
            let (seen, left_out) = match d.severity {
                Severity::Error => (&mut errors, &mut omitted.errors),
                Severity::Warning => (&mut warnings, &mut omitted.warnings),
            };
            *seen += 1;
            if *seen > MAX_SHOWN {
                *left_out += 1;
            }
            *seen <= MAX_SHOWN
        });
    }

    /// Checks a mapping's keys against `shape`: unknown keys, required keys
    /// missing. Returns its fields, or `None` when `node` is not a mapping.
    fn fields<'a, 't>(&mut self, node: &'a Node<'t>, shape: &Shape) -> Option<Fields<'a, 't>> {
        let Value::Map(entries) = &node.value else {
            self.err(
                Diagnostic::error(
                    node.pos,
                    format!("{} must be a mapping, found {}", shape.what, node.kind()),
                )
                .hint(format!("expected keys: {}", shape.keys.join(", "))),
            );
            return None;
        };
        let mut fields = Fields {
            keys: shape.keys,
            values: [None; MAX_SHAPE_KEYS],
        };
        for (k, v) in entries {
            let Some(key) = k.text() else {
                self.err(Diagnostic::error(
                    k.pos,
                    format!("keys of {} must be names, found {}", shape.what, k.kind()),
                ));
                continue;
            };
            if let Some(i) = shape.keys.iter().position(|k| *k == key) {
                // A repeated key is an error of its own; the first counts here.
                fields.values[i].get_or_insert(v);
            } else {
                let mut d =
                    Diagnostic::error(k.pos, format!("unknown key `{key}` in {}", shape.what));
                d = match closest(key, shape.keys) {
                    Some(m) => d.hint(format!("did you mean `{m}`?")),
                    None => d.hint(format!("expected one of: {}", shape.keys.join(", "))),
                };
                self.err(d);
            }
        }
        for req in shape.required {
            match fields.raw(req) {
                None => self.err(Diagnostic::error(
                    node.pos,
                    format!("{} is missing required `{req}`", shape.what),
                )),
                Some(v) if matches!(v.value, Value::Null) => self.err(Diagnostic::error(
                    v.pos,
                    format!("`{req}` in {} is empty; it is required", shape.what),
                )),
                Some(_) => {}
            }
        }
        Some(fields)
    }

    fn seq<'a, 't>(&mut self, node: &'a Node<'t>, what: &str) -> &'a [Node<'t>] {
        match &node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            _ => {
                self.err(
                    Diagnostic::error(
                        node.pos,
                        format!("`{what}` must be a list, found {}", node.kind()),
                    )
                    .hint(format!(
                        "write each item on its own line starting with `- ` under `{what}:`"
                    )),
                );
                &[]
            }
        }
    }

    fn string(&mut self, node: &Node<'_>, what: &str) -> Option<String> {
        match &node.value {
            Value::Scalar(s) if !s.trim().is_empty() => {
                let s = s.trim();
                if let Some((i, c)) = s.char_indices().find(|&(_, c)| garbles(c)) {
                    self.err(
                        Diagnostic::error(
                            node.pos,
                            format!(
                                "`{what}` holds the control character U+{:04X} (character {} of {s:?})",
                                u32::from(c),
                                s[..i].chars().count() + 1
                            ),
                        )
                        .hint("text fields are shown in logs and `portgate status`: write them on one line, without control characters"),
                    );
                    return None;
                }
                Some(s.to_owned())
            }
            Value::Scalar(_) | Value::Null => {
                self.err(Diagnostic::error(node.pos, format!("`{what}` is empty")));
                None
            }
            _ => {
                self.err(Diagnostic::error(
                    node.pos,
                    format!("`{what}` must be text, found {}", node.kind()),
                ));
                None
            }
        }
    }

    fn opt_string(&mut self, f: &Fields<'_, '_>, key: &str) -> Option<String> {
        f.get(key).and_then(|n| self.string(n, key))
    }

    /// Walks the tree (what is left of it, when sites were walked as they
    /// were read).
    fn root(&mut self, root: &Node<'_>) {
        self.phase = Phase::Root;
        if matches!(root.value, Value::Null) {
            self.err(
                Diagnostic::error(root.pos, "the rules file is empty")
                    .hint("start from /usr/share/doc/portgate/examples/rules.yaml (rules/example.yaml in the source)"),
            );
            return;
        }
        let Some(top) = self.fields(root, &TOP) else {
            return;
        };
        if let Some(ports) = top.get("ports")
            && !self.ports_final
        {
            self.phase = Phase::Ports;
            self.ports(ports);
        }
        self.ports_final = true;
        self.phase = Phase::Sites;
        if let Some(sites) = top.get("sites") {
            for site in self.seq(sites, "sites") {
                self.site(site);
            }
        }
        for (pos, sel, kind) in std::mem::take(&mut self.unchecked) {
            self.check_judged(pos, sel, kind);
        }
    }

    /// Warns about an entry's port that no `ports:` row judges.
    fn check_judged(&mut self, pos: Pos, sel: PortSel, kind: EntryKind) {
        if !self.ports_final {
            self.unchecked.push((pos, sel, kind));
            return;
        }
        if self
            .rules
            .ports
            .iter()
            .any(|p| sel.matches(p.port, p.proto))
        {
            return;
        }
        self.push(
            Diagnostic::warning(
                pos,
                format!(
                    "port {sel} is not listed under `ports`, so this {} has no effect on it",
                    kind.as_str()
                ),
            )
            .hint(format!(
                "add `- {{port: {}, proto: {}}}` under `ports` to judge it",
                sel.port,
                sel.proto.unwrap_or(Proto::Tcp)
            )),
        );
    }

    fn ports(&mut self, node: &Node<'_>) {
        let items = self.seq(node, "ports");
        if items.is_empty() && matches!(node.value, Value::Seq(_)) {
            self.err(
                Diagnostic::error(
                    node.pos,
                    "`ports` lists no port: the gate would judge nothing",
                )
                .hint("add at least `- {port: 25, proto: tcp, mode: enforce}`"),
            );
        }
        let mut seen: HashMap<(u16, Proto), Pos> = HashMap::new();
        for item in items {
            let Some(f) = self.fields(item, &PORT) else {
                continue;
            };
            let port = f.get("port").and_then(|n| self.port_number(n));
            let proto = match f.get("proto") {
                None => Some(Proto::Tcp),
                Some(n) => self.proto(n),
            };
            let mode = match f.get("mode") {
                None => Some(Mode::Enforce),
                Some(n) => match n.text() {
                    Some("enforce") => Some(Mode::Enforce),
                    Some("monitor") => Some(Mode::Monitor),
                    _ => {
                        self.err(
                            Diagnostic::error(n.pos, format!("unknown mode {}", n.describe()))
                                .hint("`enforce` drops unidentified traffic; `monitor` lets it through and reports it"),
                        );
                        None
                    }
                },
            };
            let (Some(port), Some(proto), Some(mode)) = (port, proto, mode) else {
                continue;
            };
            if let Some(first) = seen.get(&(port, proto)) {
                self.err(Diagnostic::error(
                    item.pos,
                    format!("port {port}/{proto} is listed twice under `ports` (first at {first})"),
                ));
                continue;
            }
            seen.insert((port, proto), item.pos);
            self.rules.ports.push(PortPolicy {
                port,
                proto,
                mode,
                pos: item.pos,
            });
        }
        if self.rules.ports.len() > MAX_JUDGED_PORTS {
            self.err(Diagnostic::error(
                node.pos,
                format!(
                    "{} judged ports; portgate judges at most {MAX_JUDGED_PORTS}",
                    self.rules.ports.len()
                ),
            ));
        }
    }

    fn proto(&mut self, n: &Node<'_>) -> Option<Proto> {
        match n.text() {
            Some(s) => match s.parse() {
                Ok(p) => Some(p),
                Err(_) => {
                    self.err(
                        Diagnostic::error(n.pos, format!("unknown protocol {}", n.describe()))
                            .hint("portgate judges `tcp` or `udp`"),
                    );
                    None
                }
            },
            _ => {
                self.err(Diagnostic::error(
                    n.pos,
                    format!("`proto` must be tcp or udp, found {}", n.kind()),
                ));
                None
            }
        }
    }

    /// A `ports:` row's port: digits only.
    fn port_number(&mut self, n: &Node<'_>) -> Option<u16> {
        let Some(text) = n.text() else {
            self.err(
                Diagnostic::error(
                    n.pos,
                    format!("a port must be a number, found {}", n.describe()),
                )
                .hint(PORT_RANGE),
            );
            return None;
        };
        self.port_digits(n, text, "a port must be a number, found")
    }

    /// The number of a port as written in `text` (all or part of `n`'s):
    /// digits only, no sign, no spaces, no leading zero, 1 to 65535.
    /// `not_a_number` starts the message when it is not digits.
    fn port_digits(&mut self, n: &Node<'_>, text: &str, not_a_number: &str) -> Option<u16> {
        match digits(text) {
            Digits::Value(v) if (1..=65535).contains(&v) => u16::try_from(v).ok(),
            Digits::Value(_) => {
                self.err(
                    Diagnostic::error(n.pos, format!("port {text} is out of range 1-65535"))
                        .hint(PORT_RANGE),
                );
                None
            }
            Digits::LeadingZero => {
                self.err(
                    Diagnostic::error(n.pos, format!("port {text:?} has a leading zero"))
                        .hint("write the port without leading zeros (other YAML tools read 025 as the octal number 21)"),
                );
                None
            }
            Digits::Other => {
                self.err(
                    Diagnostic::error(n.pos, format!("{not_a_number} {}", n.describe()))
                        .hint("write the port as digits only, like 25; ports are 1 to 65535"),
                );
                None
            }
        }
    }

    /// An entry's port: `25`, or `"25/udp"` to name one protocol.
    fn port_sel(&mut self, n: &Node<'_>) -> Option<PortSel> {
        let Some(s) = n.text() else {
            self.err(Diagnostic::error(
                n.pos,
                format!("a port must be a number, found {}", n.kind()),
            ));
            return None;
        };
        let (number, proto) = match s.split_once('/') {
            None => (s, None),
            Some((number, proto)) => match proto.parse::<Proto>() {
                Ok(p) if !number.is_empty() => (number, Some(p)),
                _ => {
                    self.err(
                        Diagnostic::error(n.pos, format!("not a port: {}", n.describe())).hint(
                            "write a number like 25, or 25/tcp or 53/udp to name one protocol",
                        ),
                    );
                    return None;
                }
            },
        };
        self.port_digits(n, number, "not a port:")
            .map(|port| PortSel { port, proto })
    }

    fn contact(&mut self, n: &Node<'_>) -> Contact {
        let mut c = Contact::default();
        let Some(f) = self.fields(n, &CONTACT) else {
            return c;
        };
        if let Some(v) = f.get("name") {
            c.name = self.string(v, "name").unwrap_or_default();
        }
        c.position = self.opt_string(&f, "position");
        if let Some(v) = f.get("phone")
            && let Some(p) = self.string(v, "phone")
        {
            if !p.chars().any(|ch| ch.is_ascii_digit()) {
                self.err(
                    Diagnostic::error(v.pos, format!("phone {p:?} has no digits")).hint(
                        "write the number the support desk should call, e.g. \"+1 303 555 0100\"",
                    ),
                );
            }
            c.phone = p;
        }
        if let Some(v) = f.get("email")
            && let Some(e) = self.string(v, "email")
        {
            let ok = e.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty() && d.contains('.') && !e.contains(char::is_whitespace)
            });
            if !ok {
                self.err(
                    Diagnostic::error(v.pos, format!("email {e:?} is not an address"))
                        .hint("write it as name@domain, e.g. noc@example.org"),
                );
            }
            c.email = e;
        }
        c
    }

    fn site(&mut self, node: &Node<'_>) {
        let Some(f) = self.fields(node, &SITE) else {
            return;
        };
        let name = f.get("site").and_then(|n| self.string(n, "site"));
        let mut contacts = Contacts::default();
        if let Some(c) = f.get("contacts")
            && let Some(cf) = self.fields(c, &CONTACTS)
        {
            if let Some(n) = cf.get("site") {
                contacts.site = self.contact(n);
            }
            if let Some(n) = cf.get("technical") {
                contacts.technical = self.contact(n);
            }
            if let Some(n) = cf.get("billing") {
                contacts.billing = self.contact(n);
            }
        }
        if let Some(name) = &name {
            match self.site_names.get(name) {
                Some(&first) => self.err(
                    Diagnostic::error(
                        node.pos,
                        format!("site {name:?} is listed twice (first at {first})"),
                    )
                    .hint("merge the two entries' permits into one site"),
                ),
                None => {
                    self.site_names.insert(name.clone(), node.pos);
                }
            }
        }
        let site = self.rules.sites.len();
        self.rules.sites.push(Site {
            name: name.unwrap_or_default(),
            contacts,
            pos: node.pos,
        });
        for (key, kind, shape) in [
            ("permits", EntryKind::Permit, &PERMIT),
            ("blocks", EntryKind::Block, &BLOCK),
        ] {
            if let Some(list) = f.get(key) {
                for item in self.seq(list, key) {
                    self.entry(item, site, kind, shape);
                }
            }
        }
    }

    fn entry(&mut self, node: &Node<'_>, site: usize, kind: EntryKind, shape: &Shape) {
        let Some(f) = self.fields(node, shape) else {
            return;
        };
        let prefix = f.get("ip").and_then(|n| self.prefix(n));
        let mut ports = Vec::new();
        if let Some(pn) = f.get("ports") {
            let items = self.seq(pn, "ports");
            if items.is_empty() && matches!(pn.value, Value::Seq(_)) {
                self.err(Diagnostic::error(
                    pn.pos,
                    format!(
                        "this {} lists no ports, so it would do nothing",
                        kind.as_str()
                    ),
                ));
            }
            for item in items {
                let Some(sel) = self.port_sel(item) else {
                    continue;
                };
                if ports.iter().any(|p: &PortSel| {
                    p.port == sel.port
                        && (p.proto.is_none() || sel.proto.is_none() || p.proto == sel.proto)
                }) {
                    self.err(Diagnostic::error(
                        item.pos,
                        format!("port {sel} is listed twice in this {}", kind.as_str()),
                    ));
                    continue;
                }
                self.check_judged(item.pos, sel, kind);
                ports.push(sel);
            }
        }
        let device = match kind {
            EntryKind::Permit => f.get("device").and_then(|n| self.string(n, "device")),
            EntryKind::Block => None,
        };
        let domain = self.opt_string(&f, "domain");
        let reason = match kind {
            EntryKind::Block => f.get("reason").and_then(|n| self.string(n, "reason")),
            EntryKind::Permit => None,
        };
        if let Some(prefix) = prefix {
            self.rules.entries.push(Entry {
                site,
                kind,
                prefix,
                ports,
                device,
                domain,
                reason,
                pos: node.pos,
            });
        }
    }

    fn prefix(&mut self, n: &Node<'_>) -> Option<IpNetwork> {
        let text = match n.text() {
            Some(s) => s.trim(),
            _ => {
                self.err(
                    Diagnostic::error(
                        n.pos,
                        format!("`ip` must be an address or prefix, found {}", n.describe()),
                    )
                    .hint("write 192.0.2.10, 192.0.2.0/28 or 2001:db8:10::/48"),
                );
                return None;
            }
        };
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let Ok(addr) = addr_text.parse::<IpAddr>() else {
            self.err(
                Diagnostic::error(n.pos, format!("not an IP address: {addr_text:?}"))
                    .hint("write 192.0.2.10, 192.0.2.0/28 or 2001:db8:10::/48 (no leading zeros, no zone)"),
            );
            return None;
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len_text {
            None => max,
            Some(l) => match digits(l) {
                Digits::Value(v) if v <= u64::from(max) => u8::try_from(v).unwrap_or(max),
                Digits::LeadingZero => {
                    self.err(
                        Diagnostic::error(
                            n.pos,
                            format!("prefix length {l:?} in {text:?} has a leading zero"),
                        )
                        .hint("write the prefix length without leading zeros, as in 192.0.2.0/24"),
                    );
                    return None;
                }
                _ => {
                    self.err(
                        Diagnostic::error(n.pos, format!("bad prefix length {l:?} in {text:?}"))
                            .hint(format!(
                                "an {} prefix length is 0 to {max}",
                                if max == 32 { "IPv4" } else { "IPv6" }
                            )),
                    );
                    return None;
                }
            },
        };
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            let v4len = len.saturating_sub(96);
            let hint = if len >= 96 {
                format!("write the IPv4 prefix {v4}/{v4len} instead")
            } else {
                "write IPv4 prefixes as IPv4".to_owned()
            };
            self.err(
                    Diagnostic::error(
                        n.pos,
                        format!("{text} is an IPv4-mapped IPv6 prefix; portgate refuses it so it can never widen into an IPv4 range"),
                    )
                    .hint(hint),
                );
            return None;
        }
        match IpNetwork::new(addr, len) {
            Ok(net) => {
                if len == 0 {
                    self.push(
                        Diagnostic::warning(
                            n.pos,
                            format!(
                                "{text} covers every {} address",
                                if max == 32 { "IPv4" } else { "IPv6" }
                            ),
                        )
                        .hint("make sure this is meant"),
                    );
                }
                Some(net)
            }
            Err(_) => {
                let net = IpNetwork::new_truncate(addr, len).ok()?;
                self.err(
                    Diagnostic::error(n.pos, format!("{text} has host bits set")).hint(format!(
                        "did you mean the network {net}, or the single host {addr}?"
                    )),
                );
                None
            }
        }
    }

    /// Problems between entries: the same prefix and port listed twice, or
    /// both permitted and blocked.
    fn cross_check(&mut self) {
        let (mut keys_v4, mut keys_v6) = (0, 0);
        for e in &self.rules.entries {
            let keys = e
                .ports
                .iter()
                .map(|sel| {
                    if sel.proto.is_some() {
                        1
                    } else {
                        Proto::ALL.len()
                    }
                })
                .sum::<usize>();
            match e.prefix {
                IpNetwork::V4(_) => keys_v4 += keys,
                IpNetwork::V6(_) => keys_v6 += keys,
            }
        }
        // One map per family: an IPv4 key fits in 8 bytes, and its map
        // takes a third of the memory one for both would (16 bytes a slot
        // against 48), which is this load's peak with a million permits.
        let mut seen_v4: HashMap<u64, usize> = HashMap::with_capacity(keys_v4);
        let mut seen_v6: HashMap<(u128, u32), usize> = HashMap::with_capacity(keys_v6);
        let mut found = Vec::new();
        for (i, e) in self.rules.entries.iter().enumerate() {
            for sel in &e.ports {
                for proto in Proto::ALL {
                    if sel.proto.is_some_and(|p| p != proto) {
                        continue;
                    }
                    let first = match key(e.prefix, sel.port, proto) {
                        Key::V4(k) => first_to_list(&mut seen_v4, k, i),
                        Key::V6(k) => first_to_list(&mut seen_v6, k, i),
                    };
                    if let Some(j) = first {
                        found.push((i, j, sel.port, proto));
                        break;
                    }
                }
            }
        }
        for (i, j, port, proto) in found {
            let (e, first) = (&self.rules.entries[i], &self.rules.entries[j]);
            let first_site = &self.rules.sites[first.site].name;
            let what = if e.kind == first.kind {
                format!(
                    "entry repeated: {} port {port}/{proto} is already {} at {} (site {first_site:?})",
                    e.prefix,
                    past(first.kind),
                    first.pos
                )
            } else {
                format!(
                    "{} port {port}/{proto} is {} here but {} at {} (site {first_site:?})",
                    e.prefix,
                    past(e.kind),
                    past(first.kind),
                    first.pos
                )
            };
            let hint = if e.kind == first.kind {
                "keep one of the two entries"
            } else {
                "an address is either permitted or blocked on a port; to carve a host out of a permitted range, block the narrower prefix"
            };
            self.push(Diagnostic::error(e.pos, what).hint(hint));
        }
    }
}

/// A character that would garble a log line or a terminal: control
/// characters (tab aside, which YAML allows in text), line and paragraph
/// separators, the bidirectional marks and overrides that reorder what is
/// shown (U+061C among them), and the invisible ones that make two equal-
/// looking names differ (zero-width space, word joiner, byte order mark).
/// The zero-width joiners U+200C/U+200D stay: some scripts need them.
fn garbles(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// A prefix, port and protocol as one hash key: the address's bits, and
/// the length (0 to 128: 8 bits), port and protocol; an IPv4 key packed
/// into 64 bits.
enum Key {
    V4(u64),
    V6((u128, u32)),
}

fn key(prefix: IpNetwork, port: u16, proto: Proto) -> Key {
    let rest = u32::from(prefix.netmask()) << 24 | u32::from(port) << 8 | u32::from(proto.number());
    match prefix {
        IpNetwork::V4(n) => {
            Key::V4(u64::from(u32::from(n.network_address())) << 32 | u64::from(rest))
        }
        IpNetwork::V6(n) => Key::V6((u128::from(n.network_address()), rest)),
    }
}

/// The entry that listed `key` first, or `None` when `i` is the first
/// (and now holds it).
fn first_to_list<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, usize>,
    key: K,
    i: usize,
) -> Option<usize> {
    match seen.entry(key) {
        std::collections::hash_map::Entry::Occupied(j) => Some(*j.get()),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(i);
            None
        }
    }
}

const PORT_RANGE: &str = "ports are 1 to 65535";

/// A number as a port or a prefix length is written.
#[derive(Debug, PartialEq, Eq)]
enum Digits {
    /// Its value, saturated: a huge number is out of range, not "not a
    /// number".
    Value(u64),
    /// `025`: refused rather than guessed at (YAML 1.1 reads it as octal).
    LeadingZero,
    /// Empty, or anything but ASCII digits: a sign, spaces, `_`, `0x`.
    Other,
}

fn digits(s: &str) -> Digits {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        Digits::Other
    } else if s.len() > 1 && s.starts_with('0') {
        Digits::LeadingZero
    } else {
        Digits::Value(s.parse::<u64>().unwrap_or(u64::MAX))
    }
}

fn past(k: EntryKind) -> &'static str {
    match k {
        EntryKind::Permit => "permitted",
        EntryKind::Block => "blocked",
    }
}

/// The expected key nearest to a typo, if it is near enough to be a guess.
fn closest<'k>(typo: &str, keys: &[&'k str]) -> Option<&'k str> {
    keys.iter()
        .map(|k| (edit_distance(typo, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    const CONTACTS: &str = r#"    contacts:
      site:      {name: A, phone: "+1 303 555 0100", email: a@example.org}
      technical: {name: B, phone: "+1 303 555 0101", email: b@example.org}
      billing:   {name: C, phone: "+1 303 555 0102", email: c@example.org}
"#;

    /// A file with one site whose permits/blocks section is `body`.
    fn file(ports: &str, body: &str) -> String {
        format!("ports:\n{ports}sites:\n  - site: S\n{CONTACTS}{body}")
    }

    fn smtp(body: &str) -> String {
        file("  - {port: 25, proto: tcp, mode: enforce}\n", body)
    }

    fn errors(text: &str) -> Vec<String> {
        match load(text, "r.yaml") {
            Ok(l) => panic!("expected errors, got {:?}", l.ruleset.summary()),
            Err(e) => e.errors().map(|d| d.render("r.yaml")).collect(),
        }
    }

    fn one_error(text: &str) -> String {
        let e = errors(text);
        assert_eq!(e.len(), 1, "{e:#?}");
        e.into_iter().next().unwrap()
    }

    #[test]
    fn example_file_loads() {
        let text = include_str!("../../rules/example.yaml");
        let l = load(text, "example.yaml").unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let s = l.ruleset.summary();
        assert_eq!((s.sites, s.permits, s.blocks, s.ports), (2, 4, 1, 2));
        let e = &l.ruleset.entries[0];
        assert_eq!(e.prefix.to_string(), "192.0.2.10/32");
        assert_eq!(e.device.as_deref(), Some("Mail relay (Postfix)"));
        assert_eq!(e.domain.as_deref(), Some("mail.example.org"));
        assert_eq!(
            e.pos,
            Pos {
                line: 33,
                column: 9
            }
        );
        let c = &l.ruleset.sites[0].contacts.technical;
        assert_eq!(c.email, "noc@example.org");
        assert_eq!(c.position.as_deref(), Some("Network admin"));
    }

    #[test]
    fn unknown_key_is_an_error_with_a_guess() {
        let e = errors(&smtp(
            "    permits:\n      - ip: 192.0.2.10\n        prots: [25]\n        device: D\n",
        ));
        // The typo, at its own line and column, and the key it left missing:
        // a typo never silently permits nothing.
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(
            e[0].starts_with("r.yaml:10:9: error: a permit is missing required `ports`"),
            "{}",
            e[0]
        );
        assert!(
            e[1].starts_with("r.yaml:11:9: error: unknown key `prots` in a permit"),
            "{}",
            e[1]
        );
        assert!(e[1].contains("did you mean `ports`?"));
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let e = errors(&smtp(
            "    permits:\n      - ip: 192.0.2.5/24\n        ports: [25]\n        device: D\n      - ip: 192.0.2.300\n        ports: [70000]\n        device: D\n    blokcs: []\n",
        ));
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(e[0].starts_with("r.yaml:10:13: error: 192.0.2.5/24 has host bits set"));
        assert!(
            e[0].contains("did you mean the network 192.0.2.0/24, or the single host 192.0.2.5?")
        );
        assert!(e[1].starts_with("r.yaml:13:13: error: not an IP address: \"192.0.2.300\""));
        assert!(e[2].starts_with("r.yaml:14:17: error: port 70000 is out of range"));
        assert!(e[3].starts_with("r.yaml:16:5: error: unknown key `blokcs` in a site"));
        assert!(e[3].contains("did you mean `blocks`?"));
    }

    #[test]
    fn missing_required_contact_fields() {
        let text = "ports:\n  - port: 25\nsites:\n  - site: S\n    contacts:\n      site: {name: A, phone: \"1\"}\n      technical: {name: B, phone: \"\", email: b@example.org}\n      billing: {phone: \"2\", email: c@example.org}\n";
        let e = errors(text);
        assert_eq!(e.len(), 3, "{e:#?}");
        assert!(e[0].starts_with("r.yaml:6:13: error: a contact is missing required `email`"));
        assert!(e[1].starts_with("r.yaml:7:35: error: `phone` is empty"));
        assert!(e[2].starts_with("r.yaml:8:16: error: a contact is missing required `name`"));
    }

    #[test]
    fn missing_contacts_and_bad_email() {
        let e = errors(
            "ports:\n  - port: 25\nsites:\n  - site: S\n    permits: []\n  - site: T\n    contacts:\n      site: {name: A, phone: \"1\", email: nobody}\n      technical: {name: B, phone: \"x\", email: b@example.org}\n",
        );
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(e[0].starts_with("r.yaml:4:5: error: a site is missing required `contacts`"));
        assert!(e[1].starts_with("r.yaml:8:7: error: `contacts` is missing required `billing`"));
        assert!(e[2].contains("email \"nobody\" is not an address"));
        assert!(e[3].contains("phone \"x\" has no digits"));
    }

    #[test]
    fn ports_out_of_range_and_not_numbers() {
        let e = errors(&file(
            "  - port: 0\n  - port: 65536\n  - port: smtp\n  - port: 25\n    proto: sctp\n  - port: 26\n    mode: audit\n",
            "",
        ));
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(e[0].contains("port 0 is out of range"));
        assert!(e[1].contains("port 65536 is out of range"));
        assert!(e[2].contains("a port must be a number, found \"smtp\""));
        assert!(e[3].contains("unknown protocol \"sctp\""));
        assert!(e[4].contains("unknown mode \"audit\""));
    }

    #[test]
    fn ports_and_lengths_are_digits_only() {
        let e = errors(&file(
            "  - port: \"+25\"\n  - port: \" 25\"\n  - port: \"025\"\n  - port: 99999999999999999999\n  - port: 25\n",
            "    permits:\n      - {ip: 192.0.2.1, ports: [\"+25/tcp\", \"25 /tcp\", \"025/tcp\", \"99999999999999999999/tcp\", \"/tcp\"], device: D}\n      - {ip: 192.0.2.0/024, ports: [25], device: D}\n      - {ip: \"192.0.2.0/+24\", ports: [25], device: D}\n      - {ip: 10.0.0.0/99999999999999999999, ports: [25], device: D}\n",
        ));
        assert_eq!(e.len(), 12, "{e:#?}");
        assert!(
            e[0].contains("a port must be a number, found \"+25\""),
            "{}",
            e[0]
        );
        assert!(
            e[1].contains("a port must be a number, found \" 25\""),
            "{}",
            e[1]
        );
        assert!(e[2].contains("port \"025\" has a leading zero"), "{}", e[2]);
        assert!(
            e[3].contains("port 99999999999999999999 is out of range 1-65535"),
            "{}",
            e[3]
        );
        assert!(e[4].contains("not a port: \"+25/tcp\""), "{}", e[4]);
        assert!(e[5].contains("not a port: \"25 /tcp\""), "{}", e[5]);
        assert!(e[6].contains("port \"025\" has a leading zero"), "{}", e[6]);
        assert!(
            e[7].contains("port 99999999999999999999 is out of range 1-65535"),
            "{}",
            e[7]
        );
        assert!(e[8].contains("not a port: \"/tcp\""), "{}", e[8]);
        assert!(
            e[9].contains("prefix length \"024\" in \"192.0.2.0/024\" has a leading zero"),
            "{}",
            e[9]
        );
        assert!(e[10].contains("bad prefix length \"+24\""), "{}", e[10]);
        assert!(
            e[11].contains("bad prefix length \"99999999999999999999\""),
            "{}",
            e[11]
        );
        // Zero itself is a length (and a port out of range).
        let l = load(
            &smtp("    permits:\n      - {ip: 0.0.0.0/0, ports: [25], device: D}\n"),
            "r",
        )
        .unwrap();
        assert_eq!(l.ruleset.entries[0].prefix.netmask(), 0);
    }

    #[test]
    fn judged_port_listed_twice() {
        let e = one_error(&file(
            "  - port: 25\n  - {port: 25, proto: tcp}\n  - {port: 25, proto: udp}\n",
            "",
        ));
        assert!(
            e.starts_with(
                "r.yaml:3:5: error: port 25/tcp is listed twice under `ports` (first at 2:5)"
            ),
            "{e}"
        );
    }

    #[test]
    fn repeated_entry_and_conflict() {
        let e = errors(&smtp(
            "    permits:\n      - {ip: 192.0.2.10, ports: [25], device: A}\n      - {ip: 192.0.2.10/32, ports: [25], device: B}\n    blocks:\n      - {ip: 192.0.2.10, ports: [25], reason: r}\n",
        ));
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].starts_with("r.yaml:11:9: error: entry repeated: 192.0.2.10/32 port 25/tcp is already permitted at 10:9 (site \"S\")"), "{}", e[0]);
        assert!(e[1].starts_with("r.yaml:13:9: error: 192.0.2.10/32 port 25/tcp is blocked here but permitted at 10:9"), "{}", e[1]);
    }

    #[test]
    fn repeated_across_sites_and_duplicate_site() {
        let text = format!(
            "ports:\n  - port: 25\nsites:\n  - site: S\n{CONTACTS}    permits:\n      - {{ip: 2001:db8::/32, ports: [25], device: A}}\n  - site: S\n{CONTACTS}    permits:\n      - {{ip: 2001:db8:0::/32, ports: [25], device: B}}\n"
        );
        let e = errors(&text);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].contains("site \"S\" is listed twice (first at 4:5)"));
        assert!(
            e[1].contains("entry repeated: 2001:db8::/32 port 25/tcp is already permitted at 10:9")
        );
    }

    #[test]
    fn prefixes_differing_only_in_length_are_different_entries() {
        // ::/0 and ::/128 have the same bits; the length tells them apart
        // (it once shared its top bit with the family's).
        let text = smtp(
            "    permits:\n      - {ip: \"::/0\", ports: [25], device: A}\n      - {ip: \"::/128\", ports: [25], device: B}\n      - {ip: 0.0.0.0/0, ports: [25], device: C}\n",
        );
        let l = load(&text, "r.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.ruleset.entries.len(), 3);
    }

    #[test]
    fn same_prefix_on_different_ports_is_fine() {
        let l = load(
            &file(
                "  - port: 25\n  - port: 587\n",
                "    permits:\n      - {ip: 192.0.2.10, ports: [25], device: A}\n      - {ip: 192.0.2.10, ports: [587], device: B}\n",
            ),
            "r.yaml",
        )
        .unwrap();
        assert_eq!(l.ruleset.permits(), 2);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_refused() {
        for (ip, hint) in [
            (
                "::ffff:192.0.2.10",
                "write the IPv4 prefix 192.0.2.10/32 instead",
            ),
            ("::ffff:0:0/96", "write the IPv4 prefix 0.0.0.0/0 instead"),
            (
                "::ffff:c000:200/120",
                "write the IPv4 prefix 192.0.2.0/24 instead",
            ),
        ] {
            let e = one_error(&smtp(&format!(
                "    permits:\n      - {{ip: \"{ip}\", ports: [25], device: A}}\n"
            )));
            assert!(e.contains("is an IPv4-mapped IPv6 prefix"), "{e}");
            assert!(e.contains(hint), "{e}");
        }
    }

    #[test]
    fn bad_addresses_and_lengths() {
        for (ip, msg) in [
            ("192.0.2.1/33", "bad prefix length \"33\""),
            ("2001:db8::/129", "bad prefix length \"129\""),
            ("192.0.2.0/", "bad prefix length \"\""),
            ("192.000.002.010", "not an IP address"),
            ("fe80::1%eth0", "not an IP address"),
            ("mail.example.org", "not an IP address"),
            ("2001:db8::1/64", "has host bits set"),
        ] {
            let e = one_error(&smtp(&format!(
                "    permits:\n      - {{ip: \"{ip}\", ports: [25], device: A}}\n"
            )));
            assert!(e.contains(msg), "{ip}: {e}");
        }
    }

    #[test]
    fn entry_ports() {
        let l = load(
            &file(
                "  - {port: 53, proto: udp}\n  - {port: 53, proto: tcp}\n",
                "    permits:\n      - {ip: 192.0.2.53, ports: [\"53/udp\"], device: Resolver}\n",
            ),
            "r.yaml",
        )
        .unwrap();
        let e = &l.ruleset.entries[0];
        assert!(e.lists(53, Proto::Udp));
        assert!(!e.lists(53, Proto::Tcp));

        let e = errors(&smtp(
            "    permits:\n      - {ip: 192.0.2.1, ports: [], device: A}\n      - {ip: 192.0.2.2, ports: [25, 25], device: A}\n      - {ip: 192.0.2.3, ports: [\"25/icmp\"], device: A}\n      - {ip: 192.0.2.4, ports: 25, device: A}\n",
        ));
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(e[0].contains("lists no ports"));
        assert!(e[1].contains("port 25 is listed twice in this permit"));
        assert!(e[2].contains("not a port: \"25/icmp\""));
        assert!(e[3].contains("`ports` must be a list"));
    }

    #[test]
    fn sites_before_ports_are_judged_on_those_ports() {
        // The loader walks sites as the fast path reads them; the check of
        // a site's ports read before `ports` waits for it, so port 25 is
        // judged and 587 is not.
        let sites = format!(
            "sites:\n  - site: S\n{CONTACTS}    permits:\n      - {{ip: 192.0.2.1, ports: [25, 587], device: A}}\n"
        );
        let text = format!("{sites}ports:\n  - {{port: 25, proto: tcp}}\n");
        let l = load(&text, "r.yaml").unwrap();
        let warnings: Vec<String> = l.warnings.iter().map(|w| w.render("r.yaml")).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("port 587 is not listed under `ports`"));
        assert_eq!(l.ruleset.entries.len(), 1);
        let slow = load_saphyr_only(&text, "r.yaml").unwrap();
        assert_eq!(l.ruleset, slow.ruleset);
        assert_eq!(l.warnings, slow.warnings);
    }

    #[test]
    fn unjudged_entry_port_is_a_warning() {
        let l = load(
            &smtp("    permits:\n      - {ip: 192.0.2.1, ports: [25, 587], device: A}\n"),
            "r.yaml",
        )
        .unwrap();
        assert_eq!(l.warnings.len(), 1);
        let w = l.warnings[0].render("r.yaml");
        assert!(w.starts_with(
            "r.yaml:10:37: warning: port 587 is not listed under `ports`, so this permit has no effect on it"
        ));
        assert!(
            w.contains("add `- {port: 587, proto: tcp}` under `ports`"),
            "{w}"
        );
        // The hint names the protocol the permit names.
        let l = load(
            &smtp("    permits:\n      - {ip: 192.0.2.1, ports: [\"53/udp\"], device: A}\n"),
            "r.yaml",
        )
        .unwrap();
        let w = l.warnings[0].render("r.yaml");
        assert!(
            w.contains("add `- {port: 53, proto: udp}` under `ports`"),
            "{w}"
        );
    }

    #[test]
    fn blocks_need_a_reason_and_permits_a_device() {
        let e = errors(&smtp(
            "    permits:\n      - {ip: 192.0.2.1, ports: [25]}\n    blocks:\n      - {ip: 192.0.2.2, ports: [25]}\n",
        ));
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].contains("a permit is missing required `device`"));
        assert!(e[1].contains("a block is missing required `reason`"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = one_error("ports:\n  - port: 25\n   bad: indent\nsites: []\n");
        assert!(e.starts_with("r.yaml:3:"), "{e}");
        assert!(e.contains("YAML syntax"), "{e}");
        let e = one_error("ports: [25\nsites: []\n");
        assert!(e.contains("YAML syntax"), "{e}");
    }

    #[test]
    fn duplicate_keys_aliases_anchors_tags() {
        let e = errors("ports:\n  - port: 25\n    port: 26\nsites: []\n");
        // The file is refused, so no copy "counts": the message says which
        // key is repeated and where the first one is.
        assert_eq!(
            e[0],
            "r.yaml:3:5: error: duplicate key \"port\": this mapping already has it at 2:5; give each key once",
            "{e:#?}"
        );
        let e = one_error("ports:\n  - &p {port: 25}\nsites: []\n");
        assert!(e.contains("anchors"), "{e}");
        let e = one_error("ports:\n  - port: 25\nsites:\n  - site: S\n    contacts: *c\n");
        assert!(e.starts_with("r.yaml:5:15: error: YAML syntax"), "{e}");
        let e = one_error(
            "ports:\n  - port: 25\nsites:\n  - site: S\n    contacts: &c {}\n  - site: T\n    contacts: *c\n",
        );
        assert!(e.contains("anchors"), "{e}");
        let e = one_error("ports:\n  - port: !!str 25\nsites: []\n");
        assert!(e.contains("tags"), "{e}");
    }

    #[test]
    fn hostile_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "ports: {}{}\nsites: []\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = one_error(&deep);
        assert!(e.contains("recursion limit exceeded"), "{e}");
        // Block nesting is capped by our own depth limit.
        let mut block = String::from("ports:\n");
        for depth in 0..100 {
            block.push_str(&" ".repeat(depth * 2 + 2));
            block.push_str("- \n");
        }
        assert!(one_error(&block).contains("nesting deeper than 64 levels"));
    }

    #[test]
    fn empty_and_wrong_top_level() {
        assert!(one_error("").contains("the rules file is empty"));
        assert!(one_error("# only a comment\n").contains("the rules file is empty"));
        assert!(one_error("- 1\n").contains("the rules file must be a mapping, found a list"));
        let e = errors("ports: []\nsites: []\nextra: 1\n");
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].contains("`ports` lists no port"));
        assert!(e[1].contains("unknown key `extra`"));
        let e = one_error("sites: []\n");
        assert!(
            e.starts_with("r.yaml:1:1: error: the rules file is missing required `ports`"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_empty_template_passes() {
        let l = load(
            "ports:\n  - {port: 25, proto: tcp, mode: enforce}\nsites: []\n",
            "r",
        )
        .unwrap();
        assert_eq!(l.ruleset.permits(), 0);
    }

    #[test]
    fn control_characters_in_text_are_refused() {
        for (field, text, code) in [
            ("device", "\"Mail\\rrelay\"", "U+000D"),
            ("device", "\"a\\nb\"", "U+000A"),
            ("domain", "\"mx\\x1b[31m.example.org\"", "U+001B"),
            ("domain", "\"a\\u202Eb\"", "U+202E"),
            ("device", "\"bell\\a\"", "U+0007"),
            ("device", "\"Mail\\u200Brelay\"", "U+200B"),
            ("device", "\"\\uFEFFMail\"", "U+FEFF"),
            ("domain", "\"a\\u061Cb\"", "U+061C"),
        ] {
            let e = one_error(&smtp(&format!(
                "    permits:\n      - {{ip: 192.0.2.1, ports: [25], device: D, {field}: {text}}}\n"
            ).replace("device: D, device:", "device:")));
            assert!(
                e.contains(&format!("`{field}` holds the control character {code}")),
                "{e}"
            );
            assert!(e.starts_with("r.yaml:10:"), "{e}");
        }
        // Site names and contacts too; a tab is text YAML allows.
        let e = one_error(&format!(
            "ports:\n  - port: 25\nsites:\n  - site: \"S\\x00\"\n{CONTACTS}"
        ));
        assert!(
            e.starts_with(
                "r.yaml:4:11: error: `site` holds the control character U+0000 (character 2 of"
            ),
            "{e}"
        );
        let l = load(
            &smtp("    permits:\n      - {ip: 192.0.2.1, ports: [25], device: \"a\\tb\"}\n"),
            "r",
        )
        .unwrap();
        assert_eq!(l.ruleset.entries[0].device.as_deref(), Some("a\tb"));
    }

    #[test]
    fn strings_stay_strings() {
        // YAML 1.1 would read `no` as false and 0777 as octal; we read text.
        let l = load(
            &file(
                "  - port: 25\n",
                "    permits:\n      - {ip: 192.0.2.1, ports: [25], device: no, domain: 0777}\n",
            ),
            "r",
        )
        .unwrap();
        let e = &l.ruleset.entries[0];
        assert_eq!(e.device.as_deref(), Some("no"));
        assert_eq!(e.domain.as_deref(), Some("0777"));
    }

    #[test]
    fn whole_network_is_a_warning() {
        let l = load(
            &smtp("    permits:\n      - {ip: 0.0.0.0/0, ports: [25], device: everything}\n"),
            "r",
        )
        .unwrap();
        assert_eq!(l.warnings.len(), 1);
        assert!(l.warnings[0].message.contains("covers every IPv4 address"));
    }

    #[test]
    fn rendering() {
        let err = load("ports: []\nsites: []\n", "/etc/portgate/rules.yaml").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/etc/portgate/rules.yaml:1:8: error: `ports` lists no port"),
            "{text}"
        );
        assert!(text.contains("\n    hint: add at least"));
        // Only a reload changes anything: `check` and a start say no more.
        assert!(
            text.ends_with("\n/etc/portgate/rules.yaml: rejected: 1 error"),
            "{text}"
        );
        assert_eq!(err.refused_reload(), format!("{text}; nothing was changed"));
    }

    #[test]
    fn diagnostics_are_capped() {
        let mut body = String::from("    permits:\n");
        for i in 0..5000 {
            let _ = writeln!(
                body,
                "      - {{ip: 10.{}.{}.1/24, ports: [25, 99], device: D}}",
                i / 256,
                i % 256
            );
        }
        // 5000 errors (host bits) and 5000 warnings (99 is not judged).
        let e = load(&smtp(&body), "r.yaml").unwrap_err();
        assert_eq!(e.errors().count(), MAX_SHOWN);
        assert_eq!(e.error_count(), 5000);
        assert_eq!(e.diagnostics.len(), 2 * MAX_SHOWN);
        assert_eq!(
            e.omitted,
            Omitted {
                errors: 4900,
                warnings: 4900
            }
        );
        // The first ones by position, in order.
        assert!(e.diagnostics.windows(2).all(|w| w[0].pos <= w[1].pos));
        assert!(
            e.diagnostics[0]
                .message
                .contains("10.0.0.1/24 has host bits set")
        );
        let text = e.to_string();
        assert_eq!(text.matches(": error: ").count(), MAX_SHOWN, "{text}");
        assert!(
            text.ends_with(
                "\n... and 4900 more errors and 4900 more warnings\nr.yaml: rejected: 5000 errors"
            ),
            "{}",
            &text[text.len() - 200..]
        );

        // A file that loads keeps its first warnings too.
        let body = body.replace("/24", "");
        let l = load(&smtp(&body), "r.yaml").unwrap();
        assert_eq!(l.warnings.len(), MAX_SHOWN);
        assert_eq!(l.more_warnings, 4900);
        assert_eq!(l.ruleset.permits(), 5000);
    }

    #[test]
    fn edit_distance_guesses() {
        assert_eq!(closest("prots", PERMIT.keys), Some("ports"));
        assert_eq!(closest("devcie", PERMIT.keys), Some("device"));
        assert_eq!(closest("xyz", PERMIT.keys), None);
        assert_eq!(closest("ip", BLOCK.keys), Some("ip"));
    }
}
