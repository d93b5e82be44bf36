//! `[egress] allow`: the hosts a sandboxed agent may reach through the gate's forward proxy
//! (rule `moat.egress`), and the one-line message of a refusal.
//!
//! An entry is a host with an optional port: `api.github.com`, `*.example.org`,
//! `127.0.0.1:8080`, `[::1]:8443`. Hosts compare case-insensitively, a trailing dot ignored;
//! `*.example.org` matches every name *under* `example.org` (`a.example.org`,
//! `a.b.example.org`) but not `example.org` itself. An entry without a port admits ports 443
//! and 80 only; name the port to admit another. Nothing is allowed by default.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::RuleId;

/// Ports an entry without `:port` admits.
pub const DEFAULT_EGRESS_PORTS: [u16; 2] = [443, 80];

/// The validated `[egress] allow` list. Empty (nothing allowed) by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressRules {
    /// Sorted and deduplicated (order carries no meaning).
    entries: Vec<EgressEntry>,
}

/// One `[egress] allow` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EgressEntry {
    /// Which hosts.
    host: HostPattern,
    /// `None`: [`DEFAULT_EGRESS_PORTS`].
    port: Option<u16>,
}

/// The host part of an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum HostPattern {
    /// One name, lowercase, no trailing dot.
    Name(String),
    /// Every name under this suffix (stored without the `*.`, lowercase).
    Under(String),
    /// One address.
    Address(IpAddr),
}

/// A request's destination as the proxy must match it: a lowercase name or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EgressHost {
    /// A DNS name (lowercase, no trailing dot).
    Name(String),
    /// An address literal.
    Address(IpAddr),
}

impl EgressHost {
    /// Read the host of a request target (`Example.ORG.`, `127.0.0.1`, `[::1]`, `::1`).
    /// `Err` names what is wrong with it.
    ///
    /// A name's last label may not be a number: the C library's resolver, and URL parsers,
    /// read `127.1`, `2130706433` or `0x7f.1` as the IPv4 address they spell, so such a "name"
    /// would be an address that no address entry was matched against.
    pub fn parse(host: &str) -> Result<EgressHost, String> {
        let bracketed = host
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'));
        if let Some(inner) = bracketed {
            return inner
                .parse::<Ipv6Addr>()
                .map(|address| EgressHost::Address(IpAddr::V6(address)))
                .map_err(|_| format!("\"{host}\" is not an IPv6 address"));
        }
        // The root's dot ends a name or an address alike (`10.0.0.1.` is `10.0.0.1`).
        let unrooted = host.strip_suffix('.').unwrap_or(host);
        if let Ok(address) = unrooted.parse::<IpAddr>() {
            return Ok(EgressHost::Address(address));
        }
        let name = unrooted.to_ascii_lowercase();
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(format!("\"{host}\" is not a host name"));
        }
        let last = name.rsplit('.').next().unwrap_or_default();
        let hexadecimal = last
            .strip_prefix("0x")
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
        if last.bytes().all(|b| b.is_ascii_digit()) || hexadecimal {
            return Err(format!(
                "\"{host}\" is not a host name (its last label is a number) nor an address \
                 written as a.b.c.d"
            ));
        }
        Ok(EgressHost::Name(name))
    }

    /// Whether this is an address literal.
    pub fn is_address(&self) -> bool {
        match self {
            EgressHost::Address(_) => true,
            EgressHost::Name(_) => false,
        }
    }
}

impl fmt::Display for EgressHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressHost::Name(name) => f.write_str(name),
            EgressHost::Address(IpAddr::V4(address)) => write!(f, "{address}"),
            EgressHost::Address(IpAddr::V6(address)) => write!(f, "[{address}]"),
        }
    }
}

impl EgressEntry {
    /// Parse one entry as written in the policy. `Err` says what is wrong (for messages).
    pub fn parse(text: &str) -> Result<EgressEntry, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an entry is empty".to_owned());
        }
        if text == "*" || text.starts_with("*:") {
            return Err(format!(
                "\"{text}\" would allow every host: name the hosts (\"*.example.org\" for a domain)"
            ));
        }
        let (host, port) = split_port(text)?;
        let host = match host.strip_prefix("*.") {
            Some(suffix) => {
                match EgressHost::parse(suffix).map_err(|error| format!("\"{text}\": {error}"))? {
                    EgressHost::Name(name) if name.contains('.') => HostPattern::Under(name),
                    EgressHost::Name(_) => {
                        return Err(format!(
                            "\"{text}\" is too wide: a wildcard needs a domain with a dot (\"*.example.org\")"
                        ));
                    }
                    EgressHost::Address(_) => {
                        return Err(format!("\"{text}\": a wildcard cannot precede an address"));
                    }
                }
            }
            None if host.contains('*') => {
                return Err(format!(
                    "\"{text}\": `*` is only allowed as a leading \"*.\" label"
                ));
            }
            None => {
                match EgressHost::parse(host).map_err(|error| format!("\"{text}\": {error}"))? {
                    EgressHost::Name(name) => HostPattern::Name(name),
                    EgressHost::Address(address) => HostPattern::Address(address),
                }
            }
        };
        Ok(EgressEntry { host, port })
    }

    /// Whether this entry admits `host` on `port`.
    pub fn admits(&self, host: &EgressHost, port: u16) -> bool {
        let port_ok = match self.port {
            Some(allowed) => allowed == port,
            None => DEFAULT_EGRESS_PORTS.contains(&port),
        };
        port_ok
            && match (&self.host, host) {
                (HostPattern::Name(allowed), EgressHost::Name(name)) => allowed == name,
                (HostPattern::Under(suffix), EgressHost::Name(name)) => name
                    .strip_suffix(suffix.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                (HostPattern::Address(allowed), EgressHost::Address(address)) => allowed == address,
                (HostPattern::Name(_) | HostPattern::Under(_), EgressHost::Address(_))
                | (HostPattern::Address(_), EgressHost::Name(_)) => false,
            }
    }

    /// Whether the entry names an address (so it admits that address even when it is
    /// loopback or private, which a name entry never does).
    pub fn names_address(&self) -> bool {
        match self.host {
            HostPattern::Address(_) => true,
            HostPattern::Name(_) | HostPattern::Under(_) => false,
        }
    }
}

impl fmt::Display for EgressEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Name(name) => f.write_str(name)?,
            HostPattern::Under(suffix) => write!(f, "*.{suffix}")?,
            HostPattern::Address(IpAddr::V4(address)) => write!(f, "{address}")?,
            HostPattern::Address(IpAddr::V6(address)) if self.port.is_some() => {
                write!(f, "[{address}]")?;
            }
            HostPattern::Address(IpAddr::V6(address)) => write!(f, "{address}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Split `host[:port]`, `[v6][:port]` or a bare IPv6 address.
fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let port = |digits: &str| {
        digits
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("\"{text}\": \"{digits}\" is not a port (1-65535)"))
    };
    if text.starts_with('[') {
        let Some(end) = text.find(']') else {
            return Err(format!("\"{text}\": unclosed `[`"));
        };
        let (host, rest) = text.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            rest => match rest.strip_prefix(':') {
                Some(digits) => Ok((host, Some(port(digits)?))),
                None => Err(format!("\"{text}\": expected `:port` after `]`")),
            },
        };
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Ok((text, None));
    }
    match text.rsplit_once(':') {
        Some((host, digits)) => Ok((host, Some(port(digits)?))),
        None => Ok((text, None)),
    }
}

impl EgressRules {
    /// Validate the entries of `[egress] allow`; `Err` names the first bad entry.
    pub(crate) fn parse(entries: &[String]) -> Result<EgressRules, String> {
        let mut parsed = entries
            .iter()
            .enumerate()
            .map(|(index, text)| {
                EgressEntry::parse(text).map_err(|error| format!("entry {}: {error}", index + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        parsed.sort();
        parsed.dedup();
        Ok(EgressRules { entries: parsed })
    }

    /// The entries, sorted.
    pub fn entries(&self) -> &[EgressEntry] {
        &self.entries
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry admitting `host` on `port`, or `None`: refuse with
    /// [`egress_denied_message`].
    pub fn admit(&self, host: &EgressHost, port: u16) -> Option<&EgressEntry> {
        self.entries.iter().find(|entry| entry.admits(host, port))
    }
}

/// The refusal of a destination not on the allow list:
/// `moat: egress to HOST:PORT denied (moat.egress): not in the policy's [egress] allow list; ask for "HOST:PORT" to be added to it`.
pub fn egress_denied_message(host: &EgressHost, port: u16) -> String {
    egress_message(
        host,
        port,
        &format!(
            "not in the policy's [egress] allow list; ask for \"{host}:{port}\" to be added to it"
        ),
    )
}

/// A refusal of `host:port` by rule `moat.egress` for `detail`:
/// `moat: egress to HOST:PORT denied (moat.egress): DETAIL`, printable ASCII.
pub fn egress_message(host: &EgressHost, port: u16, detail: &str) -> String {
    let rule = RuleId::Egress;
    let text = format!("moat: egress to {host}:{port} denied ({rule}): {detail}");
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(entries: &[&str]) -> EgressRules {
        EgressRules::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn admitted(rules: &EgressRules, host: &str, port: u16) -> bool {
        rules
            .admit(&EgressHost::parse(host).unwrap(), port)
            .is_some()
    }

    #[test]
    fn exact_names_case_insensitive_default_ports() {
        let rules = rules(&["API.github.com"]);
        assert!(admitted(&rules, "api.github.com", 443));
        assert!(admitted(&rules, "Api.GitHub.com.", 80));
        assert!(!admitted(&rules, "api.github.com", 8443));
        assert!(!admitted(&rules, "github.com", 443));
        assert!(!admitted(&rules, "x.api.github.com", 443));
    }

    #[test]
    fn wildcards_cover_names_under_the_domain_only() {
        let rules = rules(&["*.example.org"]);
        assert!(admitted(&rules, "a.example.org", 443));
        assert!(admitted(&rules, "a.b.EXAMPLE.org", 443));
        assert!(!admitted(&rules, "example.org", 443));
        assert!(!admitted(&rules, "badexample.org", 443));
        assert!(!admitted(&rules, "a.example.org.evil.com", 443));
        assert!(!admitted(&rules, "a.example.org", 22));
    }

    /// The resolver reads these as IPv4 addresses (`inet_aton`), as URL parsers do: as names
    /// they would be addresses that were never matched as addresses.
    #[test]
    fn a_name_whose_last_label_is_a_number_is_refused() {
        for host in [
            "127.1",
            "2130706433",
            "0x7f.1",
            "0x7F000001",
            "10.0.0.1.0",
            "a.b.0x7f",
        ] {
            let error = EgressHost::parse(host).unwrap_err();
            assert!(error.contains("is a number"), "{host}: {error}");
        }
        for host in [
            "1password.com",
            "0xfeed.example",
            "123.example.org",
            "a.0xg",
            "x.1a",
        ] {
            assert!(
                matches!(EgressHost::parse(host), Ok(EgressHost::Name(_))),
                "{host}"
            );
        }
        assert_eq!(
            EgressHost::parse("10.0.0.1."),
            Ok(EgressHost::Address("10.0.0.1".parse().unwrap()))
        );
    }

    #[test]
    fn ports_and_addresses() {
        let rules = rules(&[
            "127.0.0.1:8080",
            "[::1]:9000",
            "10.0.0.1",
            "*.corp.example:8443",
        ]);
        assert!(admitted(&rules, "127.0.0.1", 8080));
        assert!(!admitted(&rules, "127.0.0.1", 443));
        assert!(admitted(&rules, "[::1]", 9000));
        assert!(admitted(&rules, "::1", 9000));
        assert!(admitted(&rules, "10.0.0.1", 443));
        assert!(
            admitted(&rules, "10.0.0.1.", 443),
            "the root's dot ends an address too"
        );
        assert!(admitted(&rules, "git.corp.example", 8443));
        assert!(!admitted(&rules, "git.corp.example", 443));
        assert!(!admitted(&rules, "localhost", 8080));
        let shown: Vec<String> = rules.entries().iter().map(ToString::to_string).collect();
        assert!(shown.contains(&"[::1]:9000".to_owned()), "{shown:?}");
        assert!(
            shown.contains(&"*.corp.example:8443".to_owned()),
            "{shown:?}"
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        for (entry, expected) in [
            ("", "empty"),
            ("*", "every host"),
            ("*:443", "every host"),
            ("*.com", "too wide"),
            ("a.*.example.org", "leading"),
            ("exa mple.org", "not a host name"),
            ("example.org:0", "not a port"),
            ("example.org:99999", "not a port"),
            ("example.org:http", "not a port"),
            ("[::1", "unclosed"),
            ("[::1]x", "`:port`"),
            ("*.10.0.0.1", "address"),
            ("*.0.0.1", "is a number"),
        ] {
            let error = EgressEntry::parse(entry).unwrap_err();
            assert!(error.contains(expected), "{entry}: {error}");
        }
    }

    #[test]
    fn denied_message_names_host_port_and_rule() {
        let host = EgressHost::parse("Evil.Example.com").unwrap();
        assert_eq!(
            egress_denied_message(&host, 443),
            "moat: egress to evil.example.com:443 denied (moat.egress): not in the policy's [egress] allow list; ask for \"evil.example.com:443\" to be added to it"
        );
    }
}
