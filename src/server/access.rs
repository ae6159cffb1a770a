//! Who may talk to a server without an API key: the `Host` and `Origin` rules that keep
//! browsers on the same machine out (DNS rebinding, cross-site requests).
//!
//! A keyless server answers only requests whose `Host` is a loopback name or address, or the
//! address the connection arrived on, and whose `Origin`, when present, is a loopback origin
//! or the server's own (same `Host`). `--allow-host` and `--allow-origin` add names for
//! deliberate LAN use (`*` allows any). With `--api-key` the key is the protection (a browser
//! cannot attach it without the page knowing it), so neither header is checked.

use std::net::IpAddr;

/// What a keyless server accepts beyond loopback (`--allow-host`, `--allow-origin`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Extra `Host` names or addresses (without port), lower case; `*` accepts any.
    pub hosts: Vec<String>,
    /// Extra origins (`scheme://host[:port]`), lower case; `*` accepts any.
    pub origins: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` header names a host the server does not answer for.
    Host(String),
    /// The `Origin` header names a foreign origin.
    Origin(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Host(h) => write!(
                f,
                "Host '{h}' is not allowed: this server has no API key and answers only \
                 loopback hosts (start it with --allow-host or --api-key for other names)."
            ),
            Refusal::Origin(o) => write!(
                f,
                "Origin '{o}' is not allowed: this server has no API key and answers only \
                 pages of loopback origins (start it with --allow-origin or --api-key)."
            ),
        }
    }
}

impl Access {
    /// An access list from the flags' values (trimmed, lower case, empty ones dropped).
    pub fn new(hosts: &[String], origins: &[String]) -> Self {
        let clean = |v: &[String]| {
            v.iter()
                .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Access {
            hosts: clean(hosts),
            origins: clean(origins),
        }
    }

    /// Checks a keyless request's `Host` and `Origin` headers; `local` is the address the
    /// connection arrived on, when known.
    pub fn check(
        &self,
        host: Option<&str>,
        origin: Option<&str>,
        local: Option<IpAddr>,
    ) -> Result<(), Refusal> {
        // Browsers always send Host; a client without one is not a browser.
        if let Some(h) = host {
            if !self.host_allowed(h, local) {
                return Err(Refusal::Host(clip(h)));
            }
        }
        match origin {
            Some(o) if !self.origin_allowed(o, host) => Err(Refusal::Origin(clip(o))),
            _ => Ok(()),
        }
    }

    fn host_allowed(&self, host: &str, local: Option<IpAddr>) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        if is_loopback_name(&name) || self.hosts.iter().any(|h| h == "*" || *h == name) {
            return true;
        }
        // An address literal cannot be rebound; it must be loopback or this connection's.
        match name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => ip.is_loopback() || Some(ip) == local,
            Err(_) => false,
        }
    }

    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        if self.origins.iter().any(|o| o == "*" || *o == origin) {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            // `null` (sandboxed frames, files) and anything unparsable.
            return false;
        };
        if !matches!(scheme, "http" | "https") || authority.contains(['/', '@']) {
            return false;
        }
        let same_origin = host.is_some_and(|h| h.trim().eq_ignore_ascii_case(authority));
        same_origin
            || host_name(authority).is_some_and(|n| is_loopback_name(&n) || is_loopback_ip(&n))
    }
}

/// The host part of a `Host` value or URL authority (`name[:port]`, `[v6][:port]`), lower
/// case, without a trailing dot; `None` when malformed.
fn host_name(authority: &str) -> Option<String> {
    let a = authority.trim();
    let name = if a.starts_with('[') {
        let end = a.find(']')?;
        let rest = &a[end + 1..];
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        &a[..=end]
    } else {
        match a.rsplit_once(':') {
            Some((n, p)) if is_port(p) => n,
            Some(_) => return None,
            None => a,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// `localhost` and its subdomains, which browsers resolve to loopback themselves.
fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

fn is_loopback_ip(name: &str) -> bool {
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A header value shortened for an error message.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(100).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyless() -> Access {
        Access::default()
    }

    #[test]
    fn loopback_hosts_and_the_connection_address_are_accepted() {
        let a = keyless();
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        for h in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.:8080",
            "api.localhost:1",
            "127.0.0.1:8080",
            "127.3.4.5",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(a.check(Some(h), None, None).is_ok(), "{h}");
        }
        assert!(a.check(Some("192.168.1.5:8080"), None, Some(lan)).is_ok());
        assert!(a.check(None, None, None).is_ok());
    }

    #[test]
    fn foreign_names_are_refused() {
        let a = keyless();
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        for h in [
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "192.168.1.6:8080",
            "localhost:80:80",
            "[::1",
            "",
        ] {
            assert!(
                matches!(a.check(Some(h), None, Some(lan)), Err(Refusal::Host(_))),
                "{h}"
            );
        }
    }

    #[test]
    fn origins_must_be_loopback_or_the_server_itself() {
        let a = keyless();
        let ok = [
            ("localhost:8080", "http://localhost:8080"),
            ("localhost:8080", "http://localhost:3000"),
            ("127.0.0.1:8080", "http://127.0.0.1:5173"),
            ("[::1]:8080", "http://[::1]:8080"),
            ("myhost.lan:8080", "http://myhost.lan:8080"),
        ];
        for (h, o) in ok {
            let a = Access::new(&["myhost.lan".into()], &[]);
            assert!(a.check(Some(h), Some(o), None).is_ok(), "{h} {o}");
        }
        for o in [
            "http://evil.example",
            "https://evil.example:8080",
            "null",
            "file://",
            "http://localhost@evil.example",
            "chrome-extension://abc",
        ] {
            assert!(
                matches!(
                    a.check(Some("localhost:8080"), Some(o), None),
                    Err(Refusal::Origin(_))
                ),
                "{o}"
            );
        }
    }

    #[test]
    fn allow_lists_open_what_they_name() {
        let a = Access::new(&["Box.LAN".into()], &["https://app.example/".into()]);
        assert!(a.check(Some("box.lan:8080"), None, None).is_ok());
        assert!(a.check(Some("other.lan"), None, None).is_err());
        assert!(a
            .check(Some("localhost"), Some("https://app.example"), None)
            .is_ok());
        assert!(a
            .check(Some("localhost"), Some("https://app2.example"), None)
            .is_err());
        let any = Access::new(&["*".into()], &["*".into()]);
        assert!(any
            .check(Some("anything.example"), Some("http://x.example"), None)
            .is_ok());
    }
}
