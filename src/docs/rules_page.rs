//! portgate-rules(5): the permit file's format reference.
//!
//! The reference is kept here, as data: [`KEYS`] lists every key the loader
//! accepts (`src/rules/load.rs`, its `Shape`s), whether it is required, and
//! what it means. The tests check it against the loader: the example page
//! section loads without a problem and uses every documented key, and a
//! file with any other key is refused.

use std::io::{self, Write};

use roff::roman;

use super::Block::{Bullet, Code, Item, Para, Section};
use super::{Block, blocks, title};

/// One key of the permit file.
#[derive(Debug)]
pub(crate) struct Key {
    /// Where it sits, as a path: `sites[].permits[].ip`.
    pub path: &'static str,
    pub required: bool,
    pub meaning: &'static str,
}

const fn key(path: &'static str, required: bool, meaning: &'static str) -> Key {
    Key {
        path,
        required,
        meaning,
    }
}

/// Every key, in the order a file has them.
pub(crate) const KEYS: &[Key] = &[
    key("ports", true, "The ports this gate judges: a list of rows."),
    key(
        "ports[].port",
        true,
        "A port number, 1 to 65535, in digits: no sign, no spaces, no leading zero.",
    ),
    key(
        "ports[].proto",
        false,
        "`tcp` (the default) or `udp`. A port is judged at most once per protocol.",
    ),
    key(
        "ports[].mode",
        false,
        "`enforce` (the default) drops unidentified traffic; `monitor` lets it through \
         and reports it, to roll out a new port.",
    ),
    key(
        "sites",
        true,
        "The customer sites: a list, which may be empty (`sites: []` permits nothing).",
    ),
    key("sites[].site", true, "The site's name, unique in the file."),
    key(
        "sites[].contacts",
        true,
        "The site's three contacts: `site`, `technical` and `billing`, each a mapping \
         with the keys below.",
    ),
    key("sites[].contacts.site", true, "Who speaks for the site."),
    key(
        "sites[].contacts.technical",
        true,
        "Whom the support desk calls about an infected host.",
    ),
    key("sites[].contacts.billing", true, "Who pays."),
    key(
        "sites[].contacts.*.name",
        true,
        "In each contact: a person or an office.",
    ),
    key("sites[].contacts.*.position", false, "Their position."),
    key(
        "sites[].contacts.*.phone",
        true,
        "The number the support desk calls, e.g. \"+1 303 555 0100\" (quoted).",
    ),
    key("sites[].contacts.*.email", true, "An email address."),
    key(
        "sites[].permits",
        false,
        "The site's identified addresses: one row per address or range.",
    ),
    key(
        "sites[].permits[].ip",
        true,
        "An address (a /32 or /128) or a CIDR prefix without host bits set.",
    ),
    key(
        "sites[].permits[].ports",
        true,
        "A list of ports: `25` means every judged protocol on port 25, \"25/tcp\" one.",
    ),
    key(
        "sites[].permits[].device",
        true,
        "The type of device or application (\"Mail relay (Postfix)\").",
    ),
    key("sites[].permits[].domain", false, "Its domain name."),
    key(
        "sites[].blocks",
        false,
        "Carve-outs inside permitted ranges, e.g. an infected host.",
    ),
    key(
        "sites[].blocks[].ip",
        true,
        "An address or prefix, as for permits.",
    ),
    key(
        "sites[].blocks[].ports",
        true,
        "A list of ports, as for permits.",
    ),
    key(
        "sites[].blocks[].reason",
        true,
        "Why, for whoever reads it next (\"infected workstation, ticket 4711\").",
    ),
];

/// The page's example: the project's commented reference file, which the
/// package also installs under `/usr/share/doc/portgate/examples/`.
pub(crate) const EXAMPLE: &str = include_str!("../../rules/example.yaml");

pub(crate) fn portgate_rules_5(out: &mut dyn Write) -> io::Result<()> {
    let mut page = title("PORTGATE-RULES", "5");
    page.control("SH", ["NAME"]);
    page.text([roman(
        "portgate-rules - the permit file of portgate(8), /etc/portgate/rules.yaml",
    )]);
    page.extend([blocks(DESCRIPTION)]);

    page.control("SH", ["KEYS"]);
    for k in KEYS {
        let need = if k.required { "required" } else { "optional" };
        page.control("TP", [])
            .text(super::inline(&format!("`{}` ({need})", k.path)))
            .text(super::inline(k.meaning));
    }

    page.extend([blocks(DECISION)]);
    page.control("SH", ["EXAMPLE"]);
    page.control("PP", []).text([roman(
        "The commented reference, installed as \
         /usr/share/doc/portgate/examples/rules.yaml:",
    )]);
    page.control("PP", [])
        .control("RS", ["4"])
        .control("nf", [])
        .text([roman(EXAMPLE.trim_end())])
        .control("fi", [])
        .control("RE", []);
    page.extend([blocks(SEE_ALSO)]);
    page.to_writer(out)
}

const DESCRIPTION: &[Block] = &[
    Section("SYNOPSIS"),
    Para("`/etc/portgate/rules.yaml`"),
    Section("DESCRIPTION"),
    Para(
        "The permit file says which ports portgate(8) judges and which addresses are \
        identified on them. It mirrors the \"IP Port Identification Form\" the customer \
        sites return: one entry per site with its site, technical and billing contacts, \
        and one row per identified address with the port, the IP (or prefix), the type \
        of device or application, and the domain name.",
    ),
    Para(
        "It is one YAML file. Check an edit with `portgate check` *FILE* and apply it \
        with `systemctl reload portgate`. A file with any error is rejected whole, \
        every problem printed as *FILE*:*LINE*:*COLUMN*`: error:` *message*, with a \
        hint where portgate can tell what was meant; the rules in force stay. The \
        file's shape is a contract: new keys may be added, none renamed.",
    ),
    Code(
        "ports:\n\
         \x20 - port: 25\n\
         \x20   proto: tcp\n\
         \x20   mode: enforce\n\
         sites:\n\
         \x20 - site: NAME\n\
         \x20   contacts:\n\
         \x20     site:      {name: ..., position: ..., phone: \"...\", email: ...}\n\
         \x20     technical: {name: ..., phone: \"...\", email: ...}\n\
         \x20     billing:   {name: ..., phone: \"...\", email: ...}\n\
         \x20   permits:\n\
         \x20     - {ip: ADDRESS[/LEN], ports: [PORT, ...], device: ..., domain: ...}\n\
         \x20   blocks:\n\
         \x20     - {ip: ADDRESS[/LEN], ports: [PORT, ...], reason: ...}",
    ),
];

const DECISION: &[Block] = &[
    Section("THE DECISION"),
    Para(
        "For a queued packet with protocol *P*, source *S*, destination *D* and \
        destination port *N*:",
    ),
    Item(
        "1.",
        "For an address *A*, the *deciding entry* is the most specific entry (permit or \
        block, of any site) covering *A* that lists *N*/*P*.",
    ),
    Item(
        "2.",
        "Accept when the deciding entry of *S* or of *D* is a permit: outbound from an \
        identified host, or inbound to an identified mail server.",
    ),
    Item(
        "3.",
        "Otherwise the packet is *unidentified*: dropped when *N*/*P* is `enforce`, \
        accepted and reported when it is `monitor`.",
    ),
    Para(
        "So a block inside a permitted range takes an address out of it, a permit inside \
        a block puts one back, and an entry never affects ports it does not list. A \
        blocked host's mail *to* an identified server passes: the destination's permit \
        decides.",
    ),
    Section("PACKETS OUTSIDE THE RULES"),
    Bullet(
        "A port or protocol not listed under `ports:` is accepted and counted as \
        unjudged: an iptables rule that queues more than the file judges must not \
        turn into an outage for unrelated traffic.",
    ),
    Bullet(
        "A packet that cannot be parsed (a header cut short or with impossible lengths, \
        ports beyond the first 256 bytes), and a TCP fragment at offset 8 bytes, are \
        dropped and counted as malformed: what cannot be identified is not identified.",
    ),
    Bullet(
        "A later fragment (offset above 0) is accepted: it carries no ports, and the \
        first fragment, which does, was judged.",
    ),
    Section("VALIDATION"),
    Para(
        "Errors: unknown keys (a typo like `prots:` must not silently permit nothing), \
        missing required keys, bad addresses (no leading zeros, no zones), prefix lengths \
        out of range, a prefix with host bits set (`192.0.2.5/24`), ports out of range, \
        ports and prefix lengths written other than in plain digits (`+25`, `025`, \
        `/024`), control characters in text (names, contacts, `device`, `domain`, \
        `reason`: they would garble logs and `portgate status`; a tab is allowed), a \
        judged port listed twice, an entry repeated (same prefix and port, in any site), \
        a prefix both permitted and blocked on a port, a site listed twice, duplicate \
        keys, and IPv4-mapped IPv6 prefixes (`::ffff:192.0.2.10`: write the IPv4 prefix \
        instead). Anchors, aliases and tags are refused; plain text stays text (`no` is \
        not false, `0777` is not octal).",
    ),
    Para("Warnings: a permit for a port not listed under `ports:`, and a `/0` prefix."),
    Para(
        "Every problem is found, but at most 100 errors and 100 warnings are printed, \
        the first by position, then a line `... and N more errors`.",
    ),
];

const SEE_ALSO: &[Block] = &[
    Section("FILES"),
    Item(
        "`/etc/portgate/rules.yaml`",
        "owned by root and readable by the group `portgate` (mode 0640): the service \
        reads it as the user `portgate`. As shipped it judges port 25 and permits \
        nothing.",
    ),
    Section("SEE ALSO"),
    Para("portgate(8)"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules;

    #[test]
    fn the_example_loads_cleanly_and_uses_every_documented_key() {
        let loaded = rules::load(EXAMPLE, "example.yaml").expect("the example loads");
        assert!(loaded.warnings.is_empty());
        for k in KEYS {
            let last = k.path.rsplit(['.', ']']).next().unwrap();
            assert!(
                EXAMPLE.contains(&format!("{last}:")),
                "the example never uses `{}`",
                k.path
            );
        }
    }

    /// A file using every documented key, one per line, each line tagged
    /// with the path of the key it belongs to (a bare `-` opens a list item).
    const EVERY_KEY: &str = "\
ports:                          #ports
  -                             #ports[]
    port: 25                    #ports[].port
    proto: tcp                  #ports[].proto
    mode: enforce               #ports[].mode
sites:                          #sites
  -                             #sites[]
    site: Example               #sites[].site
    contacts:                   #sites[].contacts
      site:                     #sites[].contacts.site
        name: IT Manager        #sites[].contacts.site.name
        position: IT manager    #sites[].contacts.site.position
        phone: \"+1 303 555 0100\" #sites[].contacts.site.phone
        email: it@example.org   #sites[].contacts.site.email
      technical: {name: NOC, phone: \"+1 303 555 0101\", email: noc@example.org} #sites[].contacts.technical
      billing: {name: Finance, phone: \"+1 303 555 0102\", email: ap@example.org} #sites[].contacts.billing
    permits:                    #sites[].permits
      -                         #sites[].permits[]
        ip: 192.0.2.0/28        #sites[].permits[].ip
        ports: [25]             #sites[].permits[].ports
        device: Mail relay      #sites[].permits[].device
        domain: example.org     #sites[].permits[].domain
    blocks:                     #sites[].blocks
      -                         #sites[].blocks[]
        ip: 192.0.2.13          #sites[].blocks[].ip
        ports: [25]             #sites[].blocks[].ports
        reason: infected        #sites[].blocks[].reason
";

    /// The file without `path` and everything under it (`*`, any contact,
    /// is the `site` contact, the one written one key a line).
    fn without(path: &str) -> String {
        let path = path.replace(".*.", ".site.");
        let path = path.as_str();
        let under = |tag: &str| {
            tag == path
                || tag.starts_with(&format!("{path}."))
                || tag.starts_with(&format!("{path}["))
        };
        let mut out = String::new();
        for line in EVERY_KEY.lines() {
            let tag = line.rsplit_once('#').map_or("", |(_, t)| t);
            if !under(tag) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// The reference and the loader agree on every key: dropping a key the
    /// reference calls required is refused as missing, dropping an
    /// optional one is fine.
    #[test]
    fn required_and_optional_keys_are_what_the_loader_enforces() {
        rules::load(EVERY_KEY, "r.yaml").expect("the file with every key loads");
        for k in KEYS {
            let text = without(k.path);
            let last = k.path.rsplit(['.', ']']).next().unwrap();
            match rules::load(&text, "r.yaml") {
                Ok(_) => assert!(!k.required, "{} is documented required:\n{text}", k.path),
                Err(e) => {
                    assert!(k.required, "{} is documented optional: {e}\n{text}", k.path);
                    assert!(
                        e.to_string()
                            .contains(&format!("missing required `{last}`")),
                        "{}: {e}\n{text}",
                        k.path
                    );
                }
            }
        }
    }

    /// Every key in the loader's shapes is documented (a key added there
    /// must be added to [`KEYS`]).
    #[test]
    fn every_key_the_loader_knows_is_documented() {
        let loader = include_str!("../rules/load.rs");
        let mut found = 0;
        for (_, rest) in loader
            .match_indices("\n    keys: &[")
            .map(|(i, _)| loader.split_at(i + 13))
        {
            let list = &rest[..rest.find(']').unwrap()];
            for name in list
                .split(',')
                .map(|n| n.trim().trim_matches('"'))
                .filter(|n| !n.is_empty())
            {
                found += 1;
                assert!(
                    KEYS.iter()
                        .any(|k| k.path.rsplit(['.', ']']).next() == Some(name)),
                    "the loader knows `{name}`, the reference does not"
                );
            }
        }
        assert!(
            found >= 20,
            "the loader's shapes were not found ({found} keys)"
        );
    }

    #[test]
    fn the_shipped_template_permits_nothing_and_loads() {
        let text = include_str!("../../packaging/rules.yaml");
        let loaded = rules::load(text, "rules.yaml").expect("the template loads");
        assert!(loaded.warnings.is_empty());
        assert_eq!(loaded.ruleset.sites.len(), 0);
    }

    #[test]
    fn the_page_renders() {
        let mut out = Vec::new();
        portgate_rules_5(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.contains(".TH PORTGATE-RULES 5"));
        assert!(page.contains("sites[].permits[].device"));
        assert!(page.contains("\\fBsites[].permits[].device\\fR"));
    }
}
