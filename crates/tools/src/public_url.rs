//! Which URLs a request may name: http(s) to public addresses only. The URL is normalised
//! by the `url` crate (WHATWG parsing, so `2130706433`, `0177.0.0.1`, `127.1` and
//! `localhost.` are the addresses they spell), and a host name is resolved and every
//! answer checked, so a name that points inside the network is refused like the address.
//! Hosts the operator names in `private_hosts` are let through (tests' local servers).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// Why a URL was refused, in words for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// The rules one check applies.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// Hosts the workspace allows (a host or any subdomain of it); `None`: any public host.
    pub allowlist: Option<&'a [String]>,
    /// Hosts or addresses the operator allows although they are private.
    pub private_hosts: &'a [String],
}

/// The URL, parsed and checked without resolving names: scheme, literal addresses, and
/// names that are never public.
pub fn parse(raw: &str, rules: Rules<'_>) -> Result<Url, Refused> {
    let url = Url::parse(raw).map_err(|e| Refused(format!("`{raw}` is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused(format!("`{raw}` is not an http(s) URL")));
    }
    let host = url
        .host()
        .ok_or_else(|| Refused(format!("`{raw}` names no host")))?;
    let name = host_text(&host);
    if rules.private_hosts.iter().any(|h| same_host(h, &name)) {
        return Ok(url);
    }
    match host {
        Host::Ipv4(v4) => check_ip(IpAddr::V4(v4), &name)?,
        Host::Ipv6(v6) => check_ip(IpAddr::V6(v6), &name)?,
        Host::Domain(domain) => {
            let domain = domain.trim_end_matches('.');
            if domain == "localhost"
                || domain.ends_with(".localhost")
                || domain.ends_with(".internal")
                || domain.ends_with(".local")
                || !domain.contains('.')
            {
                return Err(Refused(format!("`{domain}` is not a public host")));
            }
        }
    }
    if let Some(list) = rules.allowlist {
        let bare = name.trim_end_matches('.');
        let allowed = list.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            bare == a || bare.ends_with(&format!(".{a}"))
        });
        if !allowed {
            return Err(Refused(format!(
                "`{bare}` is not on this workspace's URL allowlist"
            )));
        }
    }
    Ok(url)
}

/// [`parse`], then the host name resolved and every address it resolves to checked.
pub async fn check(raw: &str, rules: Rules<'_>) -> Result<Url, Refused> {
    resolve(raw, rules).await.map(|(url, _)| url)
}

/// [`check`], and the address to connect to: a client that connects to this address, and
/// not to what a second lookup answers, cannot be turned inside by a name that changes its
/// answer (DNS rebinding). `None` for a literal address or a host the operator allows.
pub async fn resolve(raw: &str, rules: Rules<'_>) -> Result<(Url, Option<SocketAddr>), Refused> {
    let url = parse(raw, rules)?;
    let Some(Host::Domain(domain)) = url.host() else {
        return Ok((url, None));
    };
    if rules.private_hosts.iter().any(|h| same_host(h, domain)) {
        return Ok((url, None));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((domain, port))
        .await
        .map_err(|e| Refused(format!("`{domain}` could not be resolved: {e}")))?
        .collect();
    vet_resolved(domain, addresses.iter().map(SocketAddr::ip))?;
    let first = addresses.first().copied();
    Ok((url, first))
}

/// Every address a name resolved to must be public: a name with one private answer could
/// be pointed at it on the next lookup.
fn vet_resolved(domain: &str, addresses: impl IntoIterator<Item = IpAddr>) -> Result<(), Refused> {
    let mut any = false;
    for ip in addresses {
        any = true;
        check_ip(ip, domain)?;
    }
    if !any {
        return Err(Refused(format!("`{domain}` resolves to no address")));
    }
    Ok(())
}

fn host_text(host: &Host<&str>) -> String {
    match host {
        Host::Domain(d) => d.to_ascii_lowercase(),
        Host::Ipv4(v4) => v4.to_string(),
        Host::Ipv6(v6) => v6.to_string(),
    }
}

fn same_host(configured: &str, host: &str) -> bool {
    let configured = configured.trim_start_matches('[').trim_end_matches(']');
    configured.eq_ignore_ascii_case(host.trim_end_matches('.'))
        || configured
            .parse::<IpAddr>()
            .ok()
            .zip(host.parse::<IpAddr>().ok())
            .is_some_and(|(a, b)| a == b)
}

fn check_ip(ip: IpAddr, name: &str) -> Result<(), Refused> {
    if is_public(ip) {
        Ok(())
    } else {
        Err(Refused(format!(
            "`{name}` is a private, loopback, link-local or reserved address ({ip})"
        )))
    }
}

/// Whether an address is reachable on the public internet and not a metadata service.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // CGNAT, and cloud metadata services inside it (100.100.100.200).
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments and benchmarking.
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        // Reserved for future use.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Addresses that carry an IPv4 address are as public as it is.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
    if s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified() {
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7, including AWS's fd00:ec2::254), link-local, site-local.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // Documentation and Teredo.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x2001 && s[1] == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_an_inside_address_is_refused() {
        for bad in [
            "http://127.0.0.1/x",
            "http://10.0.0.5/x",
            "http://169.254.169.254/latest",
            "http://[::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:7f00:1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[fd00:ec2::254]/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://localhost:8080/",
            "http://localhost./",
            "http://LOCALHOST/",
            "http://metadata.google.internal/",
            "http://100.64.0.1/",
            "http://100.100.100.200/",
            "http://0.0.0.0/",
            "http://user@127.0.0.1/",
            "file:///etc/passwd",
            "gopher://example.com/",
        ] {
            assert!(parse(bad, Rules::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn public_hosts_pass_and_the_allowlist_and_private_hosts_hold() {
        assert!(parse("https://example.com/a.png", Rules::default()).is_ok());
        assert!(parse("https://93.184.216.34/", Rules::default()).is_ok());
        let list = vec!["example.com".to_owned()];
        let rules = Rules {
            allowlist: Some(&list),
            ..Rules::default()
        };
        assert!(parse("https://cdn.example.com/a.png", rules).is_ok());
        assert!(parse("https://evil.com/a.png", rules).is_err());
        assert!(parse("https://notexample.com/", rules).is_err());
        let private = vec!["127.0.0.1".to_owned()];
        let rules = Rules {
            private_hosts: &private,
            ..Rules::default()
        };
        assert!(parse("http://127.0.0.1:9000/mcp", rules).is_ok());
        assert!(parse("http://127.0.0.2:9000/mcp", rules).is_err());
    }

    #[test]
    fn a_name_with_any_inside_answer_is_refused() {
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(vet_resolved("rebind.example", [public]).is_ok());
        assert!(vet_resolved("rebind.example", [public, inside]).is_err());
        assert!(vet_resolved("rebind.example", []).is_err());
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_refused() {
        assert!(check("http://no-such-host.invalid/", Rules::default())
            .await
            .is_err());
    }
}
