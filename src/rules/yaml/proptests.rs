//! Differential tests of the fast path: permit-file-like documents, valid
//! and mutated, through [`crate::rules::differential::check`] (the fast
//! path's tree is saphyr's whenever it takes the text, and the loader's
//! answer is the same with and without it).
//!
//! Documents come from a seed through a small generator rather than from
//! proptest strategies: the failure message holds the whole text, which is
//! what one debugs with, and the seed reproduces it.

use proptest::prelude::*;

use crate::rules::differential::check;

/// xorshift64*: enough randomness for choosing how to write a document.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Texts of the form's fields, plain-safe and not.
const WORDS: &[&str] = &[
    "Mail relay",
    "Mail relay (Postfix)",
    "Example County Courthouse",
    "no",
    "yes",
    "0777",
    "null",
    "~",
    "Null",
    "true",
    "25",
    "25/udp",
    "53/tcp",
    "+1 303 555 0100",
    "noc@example.org",
    "mail.example.org",
    "a: b",
    "x #y",
    "x#y",
    "café",
    "日本語のサイト",
    "Ünïcödé relay",
    "a'b",
    "a\"b",
    "back\\slash",
    "",
    " lead",
    "trail ",
    "two  spaces",
    "-dash",
    "- dash",
    "?q",
    ":colon",
    "::1",
    "[x]",
    "{y}",
    "a,b",
    "percent%",
    "@at",
    "&amp",
    "*star",
    "!bang",
    "|pipe",
    ">gt",
    "tab\there",
    "new\nline",
    "ticket 4711, infected",
];

const IPS: &[&str] = &[
    "192.0.2.10",
    "192.0.2.0/28",
    "192.0.2.5/24",
    "198.51.100.25",
    "2001:db8:10::/48",
    "2001:db8::1",
    "::1",
    "::/0",
    "0.0.0.0/0",
    "::ffff:192.0.2.1",
    "192.0.2.300",
    "10.0.0.0/8",
    "203.0.113.7",
    "192.0.2.1/033",
    "fe80::1%eth0",
];

const PORTS: &[&str] = &[
    "25", "587", "53/udp", "25/tcp", "0", "65536", "smtp", "025", "+25", "465",
];

/// A document being written: its text and the choices that shape it.
struct Doc<'r> {
    rng: &'r mut Rng,
    out: String,
    /// Indentation step per level.
    step: usize,
    /// Write sequences under keys at the key's indentation.
    indentless: bool,
    /// Prefer flow style.
    flowy: usize,
}

/// A value of the document, before it is written.
enum V {
    S(String),
    L(Vec<V>),
    M(Vec<(String, V)>),
}

fn s(x: &str) -> V {
    V::S(x.to_owned())
}

impl Doc<'_> {
    fn scalar(&mut self, x: &str, flow: bool) -> String {
        let plain_ok = !x.is_empty()
            && (x.starts_with("::")
                || !x.starts_with([
                    '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'',
                    '"', '%', '@', '`', ' ',
                ]))
            && !x.ends_with(' ')
            && !x.contains(": ")
            && !x.contains(" #")
            && !x.contains(['\t', '\n'])
            && !(flow && x.contains([',', '[', ']', '{', '}']));
        match self.rng.below(10) {
            0..=5 if plain_ok => x.to_owned(),
            0..=7 if !x.contains(['\t', '\n']) => format!("'{}'", x.replace('\'', "''")),
            _ => {
                let mut q = String::from("\"");
                for c in x.chars() {
                    match c {
                        '"' => q.push_str("\\\""),
                        '\\' => q.push_str("\\\\"),
                        '\n' => q.push_str("\\n"),
                        '\t' => q.push_str("\\t"),
                        '/' if self.rng.chance(30) => q.push_str("\\/"),
                        c => q.push(c),
                    }
                }
                q.push('"');
                q
            }
        }
    }

    fn comment(&mut self) -> &'static str {
        match self.rng.below(12) {
            0 => "  # a comment",
            1 => " #: tricky - comment [x]",
            _ => "",
        }
    }

    fn flow(&mut self, v: &V) -> String {
        match v {
            V::S(x) => self.scalar(x, true),
            V::L(items) => {
                let parts: Vec<String> = items.iter().map(|i| self.flow(i)).collect();
                let sep = if self.rng.chance(80) { ", " } else { " ,  " };
                format!("[{}]", parts.join(sep))
            }
            V::M(entries) => {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| {
                        let k = self.scalar(k, true);
                        let v = self.flow(v);
                        if self.rng.chance(90) {
                            format!("{k}: {v}")
                        } else {
                            format!("{k}  :   {v}")
                        }
                    })
                    .collect();
                if parts.is_empty() || self.rng.chance(80) {
                    format!("{{{}}}", parts.join(", "))
                } else {
                    format!("{{ {} }}", parts.join(",  "))
                }
            }
        }
    }

    /// Writes `v` as the value of a block mapping key or sequence entry
    /// whose text so far ends the current line (`key:` or `-`).
    fn block_value(&mut self, v: &V, indent: usize, under_key: bool) {
        let inline = match v {
            V::S(_) => true,
            V::L(_) | V::M(_) if self.rng.below(100) < self.flowy => true,
            V::L(items) => items.is_empty(),
            V::M(e) => e.is_empty(),
        };
        if inline {
            let t = self.flow(v);
            let c = self.comment();
            self.out.push(' ');
            self.out.push_str(&t);
            self.out.push_str(c);
            self.out.push('\n');
            return;
        }
        // (A comment after a bare `-` is left to saphyr: see block_seq.)
        if under_key {
            let c = self.comment();
            self.out.push_str(c);
        }
        self.out.push('\n');
        let child = match v {
            V::L(_) if under_key && self.indentless => indent,
            _ => indent + self.step,
        };
        self.block(v, child);
    }

    fn blank_lines(&mut self) {
        if self.rng.chance(5) {
            self.out.push('\n');
        }
        if self.rng.chance(3) {
            self.out.push_str("# comment line\n");
        }
    }

    fn block(&mut self, v: &V, indent: usize) {
        let pad = " ".repeat(indent);
        match v {
            V::S(_) => unreachable!("scalars are written inline"),
            V::L(items) => {
                for item in items {
                    self.blank_lines();
                    self.out.push_str(&pad);
                    self.out.push('-');
                    match item {
                        V::M(entries) if !entries.is_empty() && self.rng.chance(70) => {
                            // Compact: `- key: value` and the rest below.
                            let gap = 1 + usize::from(self.rng.chance(20));
                            self.out.push_str(&" ".repeat(gap));
                            self.entries(entries, indent + 1 + gap, true);
                        }
                        _ => self.block_value(item, indent, false),
                    }
                }
            }
            V::M(entries) => self.entries(entries, indent, false),
        }
    }

    /// A block mapping's entries; the first continues the current line when
    /// `first_inline`.
    fn entries(&mut self, entries: &[(String, V)], indent: usize, first_inline: bool) {
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 || !first_inline {
                self.blank_lines();
                self.out.push_str(&" ".repeat(indent));
            }
            let k = self.scalar(k, false);
            self.out.push_str(&k);
            self.out.push(':');
            self.block_value(v, indent, true);
        }
    }
}

/// A permit file's content, with some wrong values among the right ones.
fn model(rng: &mut Rng) -> V {
    let mut ports = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let mut e = vec![(
            "port".to_owned(),
            s(rng.pick(&["25", "587", "53", "0", "x"])),
        )];
        if rng.chance(60) {
            e.push(("proto".into(), s(rng.pick(&["tcp", "udp", "sctp"]))));
        }
        if rng.chance(40) {
            e.push(("mode".into(), s(rng.pick(&["enforce", "monitor", "audit"]))));
        }
        ports.push(V::M(e));
    }
    let mut sites = Vec::new();
    for _ in 0..rng.below(4) {
        let contact = |rng: &mut Rng| {
            let mut c = vec![
                ("name".to_owned(), s(rng.pick(WORDS))),
                (
                    "phone".into(),
                    s(rng.pick(&["+1 303 555 0100", "x", "\"1\""])),
                ),
                ("email".into(), s(rng.pick(&["noc@example.org", "nobody"]))),
            ];
            if rng.chance(30) {
                c.insert(1, ("position".into(), s(rng.pick(WORDS))));
            }
            V::M(c)
        };
        let contacts = V::M(vec![
            ("site".into(), contact(rng)),
            ("technical".into(), contact(rng)),
            ("billing".into(), contact(rng)),
        ]);
        let mut site = vec![
            ("site".to_owned(), s(rng.pick(WORDS))),
            ("contacts".into(), contacts),
        ];
        for (key, last) in [("permits", "device"), ("blocks", "reason")] {
            if rng.chance(70) {
                let mut list = Vec::new();
                for _ in 0..rng.below(5) {
                    let ports = (0..1 + rng.below(2)).map(|_| s(rng.pick(PORTS))).collect();
                    let mut e = vec![
                        ("ip".to_owned(), s(rng.pick(IPS))),
                        ("ports".into(), V::L(ports)),
                        (last.into(), s(rng.pick(WORDS))),
                    ];
                    if last == "device" && rng.chance(30) {
                        e.push(("domain".into(), s("mail.example.org")));
                    }
                    list.push(V::M(e));
                }
                site.push((key.into(), V::L(list)));
            }
        }
        sites.push(V::M(site));
    }
    let mut top = vec![("ports".into(), V::L(ports)), ("sites".into(), V::L(sites))];
    if rng.chance(25) {
        // Sites before the ports they are judged on: the loader walks
        // sites as they are read, so their ports' check waits for them.
        top.reverse();
    }
    V::M(top)
}

fn document(seed: u64) -> String {
    let mut rng = Rng(seed | 1);
    let root = model(&mut rng);
    let step = [2, 2, 2, 4, 1, 3][rng.below(6)];
    let indentless = rng.chance(30);
    let flowy = [0, 30, 70, 100][rng.below(4)];
    let mut doc = Doc {
        rng: &mut rng,
        out: String::new(),
        step,
        indentless,
        flowy,
    };
    if doc.rng.chance(10) {
        doc.out.push_str("# header\n");
    }
    if doc.rng.chance(20) {
        doc.out.push_str("---\n");
    }
    doc.block(&root, 0);
    let mut out = doc.out;
    if rng.chance(15) {
        out = out.replace('\n', "\r\n");
    }
    if rng.chance(10) {
        // No line break at the end.
        let trimmed = out.trim_end_matches(['\r', '\n']).len();
        out.truncate(trimmed);
    }
    out
}

/// Pieces mutations insert: YAML's indicators and what trips parsers.
const NASTY: &[&str] = &[
    " ",
    "  ",
    "\t",
    "\"",
    "'",
    ":",
    ": ",
    "#",
    " #",
    "- ",
    "-",
    "{",
    "}",
    "[",
    "]",
    ",",
    ", ",
    "&a ",
    "*a",
    "!",
    "!!str ",
    "|",
    ">",
    "? ",
    "?",
    "é",
    "日",
    "\u{feff}",
    "\r",
    "\r\n",
    "\n",
    "\n\n",
    "---\n",
    "--- ",
    "...\n",
    "%YAML 1.2\n",
    "@",
    "`",
    "\\",
    "\\x41",
    "\\u00e9",
    "~",
    "null",
    "\u{85}",
    "\u{2028}",
    "\0",
    "\x01",
    "\x7f",
    "a",
    "0",
    "/",
    "::",
    "port: 25\n",
];

fn mutate(rng: &mut Rng, text: &mut String) {
    let boundary = |t: &str, mut i: usize| {
        while !t.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    for _ in 0..1 + rng.below(3) {
        let at = boundary(text, rng.below(text.len() + 1));
        match rng.below(7) {
            0 | 1 => text.insert_str(at, rng.pick(NASTY)),
            2 => {
                let end = boundary(text, (at + 1 + rng.below(3)).min(text.len()));
                text.replace_range(at..end, "");
            }
            3 => {
                // Re-indent the line holding `at`.
                let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                if rng.chance(50) {
                    text.insert_str(start, &" ".repeat(1 + rng.below(2)));
                } else {
                    let n = text[start..].bytes().take_while(|&b| b == b' ').count();
                    text.replace_range(start..start + n.min(1 + rng.below(2)), "");
                }
            }
            4 => {
                // Repeat the line holding `at`.
                let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
                let line = text[start..end].to_owned();
                text.insert_str(end, &line);
            }
            5 => {
                let end = boundary(text, (at + 1).min(text.len()));
                text.replace_range(at..end, rng.pick(NASTY));
            }
            _ => {
                // Cut the text short, mid-line as often as not, maybe
                // after one more indicator.
                text.truncate(at);
                if rng.chance(50) {
                    text.push_str(rng.pick(NASTY));
                }
            }
        }
    }
}

/// Cases per property: 3000, or `YAML_DIFF_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("YAML_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Documents written in the subset: the fast path takes them all, and
    /// agrees with saphyr.
    #[test]
    fn valid_documents(seed in any::<u64>()) {
        let text = document(seed);
        match check(&text) {
            Ok(accepted) => prop_assert!(
                accepted,
                "the fast path gave up ({:?}) on {text:?}",
                super::fast::gave_up_at(&text)
            ),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    /// The same documents with a few characters inserted, removed or
    /// replaced, and lines re-indented or repeated: whatever the fast path
    /// takes, it takes as saphyr does.
    #[test]
    fn mutated_documents(seed in any::<u64>()) {
        let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1);
        let mut text = document(seed);
        mutate(&mut rng, &mut text);
        if let Err(e) = check(&text) {
            prop_assert!(false, "{e}");
        }
    }
}

/// The mutated documents test the fast path only where it takes them:
/// make sure it takes many (the mutations that keep a document valid YAML,
/// or keep it in the subset).
#[test]
fn mutated_documents_often_take_the_fast_path() {
    let (mut taken, n) = (0, 2000);
    for seed in 0..n {
        let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1);
        let mut text = document(seed);
        mutate(&mut rng, &mut text);
        taken += usize::from(check(&text).unwrap_or_else(|e| panic!("{e}")));
    }
    eprintln!("the fast path took {taken} of {n} mutated documents");
    assert!(taken * 10 > n as usize, "the fast path took {taken} of {n}");
}

/// The shapes the fast path must take, one by one, checked against saphyr.
#[test]
fn fast_path_takes_the_usual_shapes() {
    for text in [
        include_str!("../../../rules/example.yaml"),
        "ports:\n  - {port: 25, proto: tcp}\nsites: []\n",
        "---\nports:\n- port: 25\nsites:\n- site: S\n",
        "--- # doc\nports: [25]\r\nsites: []\r\n",
        "ports:\n    -   port: 25\n        proto: tcp\nsites: {}\n",
        "'ports': [\"a\\\"b\", 'it''s', \"\\\\\", ::1]\n\"sites\" : x\n",
        "ports: [ 25 , 587 ]  # c\nsites: {a: 1, b: [2, [3]], c: {d: e}}\n",
        "ports: café # x\nsites: ~\nx: null\n",
    ] {
        assert_eq!(
            check(text),
            Ok(true),
            "{text:?}: {:?}",
            super::fast::gave_up_at(text)
        );
    }
}

/// Files whose problems the site-by-site load finds in another order than
/// the whole-tree load: an explicit key's missing value at the end of a
/// site is placed at the next token, a root key with problems of its own.
/// Found by a break-it session; held to the same list by phase.
#[test]
fn site_by_site_keeps_the_order_of_ties() {
    let contacts = "  contacts:\n    site: {name: a, phone: '1', email: a@example.org}\n    technical: {name: a, phone: '1', email: a@example.org}\n";
    for text in [
        "ports: 1\nsites:\n- ? site\nports:\n".to_owned(),
        "ports: 1\nsites:\n- ? site\nsites:\n".to_owned(),
        "ports: 1\nsites:\n- ? site\nfoo: 1\n".to_owned(),
        format!("ports: [25]\nsites:\n- site: s\n{contacts}    ? billing\nfoo: 1\n"),
        format!(
            "ports: [25]\nsites:\n- site: s\n{contacts}    billing: {{name: a, phone: '1', email: a@example.org}}\n  permits:\n  - ip: 192.0.2.1\n    ports: [25]\n    ? device\nfoo: 1\nports: 2\n"
        ),
    ] {
        assert_eq!(check(&text), Ok(false), "{text:?}");
    }
}

/// What the fast path leaves to saphyr.
#[test]
fn fast_path_gives_up_outside_the_subset() {
    for text in [
        "",
        "# only a comment\n",
        "ports:\n",
        "ports: &a [25]\n",
        "ports: *a\n",
        "ports: !!str 25\n",
        "ports: |\n  25\n",
        "ports: >\n  25\n",
        "? ports\n: 25\n",
        "ports:\n\t- 25\n",
        "ports: [25,\n  587]\n",
        "ports: a\n  b\n",
        "ports: [25,]\n",
        "ports: 25\nports: 26\n",
        "\u{feff}ports: 25\n",
        "ports: 25\n---\nsites: 1\n",
        "%YAML 1.2\n---\nports: 25\n",
        "- 25\n",
        "  ports: 25\n",
        "ports: \"a\\x41\"\n",
        "ports: 'a\n  b'\n",
        "ports: {a: }\n",
        "ports: {a:b}\n",
        "ports: [a: b]\n",
        "ports: 25\r",
        "ports: a\u{85}b\n",
        "ports: -1\n",
        "ports:\n  - - 25\n",
        "~: 1\n",
    ] {
        assert_eq!(check(text), Ok(false), "{text:?}");
    }
}
