//! ICMP health as Prometheus reads it: fixed label sets, whatever the traffic. The
//! messages a network engineer looks for, by the type and code numbers their RFCs give
//! (every code of destination unreachable, time exceeded, parameter problem, redirect;
//! echo; ICMPv6's packet too big, neighbour discovery and MLDv1), one series each, and the
//! rest of each family as `other`; the MTUs that path-MTU messages announce as a
//! histogram over the MTUs of real links. `/v1/stats` gives every type, code and MTU seen.
use capture_common::icmp::{FAMILY_IPV4, FAMILY_IPV6};

use crate::records::{IcmpHealth, IcmpMessages};

/// (family, type, codes 0..N) of the messages with series of their own.
const NAMED: [(u32, u8, u8); 19] = [
    (FAMILY_IPV4, 0, 1),   // echo reply
    (FAMILY_IPV4, 3, 16),  // destination unreachable (RFC 792, 1122, 1812)
    (FAMILY_IPV4, 5, 4),   // redirect
    (FAMILY_IPV4, 8, 1),   // echo request
    (FAMILY_IPV4, 11, 2),  // time exceeded
    (FAMILY_IPV4, 12, 3),  // parameter problem
    (FAMILY_IPV6, 1, 8),   // destination unreachable (RFC 4443, 8201)
    (FAMILY_IPV6, 2, 1),   // packet too big
    (FAMILY_IPV6, 3, 2),   // time exceeded
    (FAMILY_IPV6, 4, 4),   // parameter problem (RFC 4443, 7112)
    (FAMILY_IPV6, 128, 1), // echo request
    (FAMILY_IPV6, 129, 1), // echo reply
    (FAMILY_IPV6, 130, 1), // MLD query, report, done (RFC 2710)
    (FAMILY_IPV6, 131, 1),
    (FAMILY_IPV6, 132, 1),
    (FAMILY_IPV6, 133, 1), // router solicitation, advertisement, neighbour solicitation,
    (FAMILY_IPV6, 134, 1), // advertisement (RFC 4861)
    (FAMILY_IPV6, 135, 1),
    (FAMILY_IPV6, 136, 1),
];

/// The (family, type, code) series of [`messages`], in order.
pub fn named_messages() -> Vec<(u32, u8, u8)> {
    NAMED.iter().flat_map(|&(family, kind, codes)| (0..codes).map(move |code| (family, kind, code))).collect()
}

/// One fixed series of `ringcap_icmp_messages_total`: a family's (type, code), `None`
/// for its `other`, and the count.
pub type MessageSeries = (&'static str, Option<(u8, u8)>, u64);

/// One slot's message counts on the fixed series.
pub fn messages(health: &IcmpHealth) -> Vec<MessageSeries> {
    let named = named_messages();
    let family_of = |name: &str| if name == "ipv6" { FAMILY_IPV6 } else { FAMILY_IPV4 };
    let mut series: Vec<_> = named
        .iter()
        .map(|&(family, kind, code)| {
            let count = health
                .messages
                .iter()
                .filter(|m| (family_of(&m.family), m.kind, m.code) == (family, kind, code))
                .map(|m| m.count)
                .sum();
            (family_name(family), Some((kind, code)), count)
        })
        .collect();
    for family in [FAMILY_IPV4, FAMILY_IPV6] {
        let other = health
            .messages
            .iter()
            .filter(|m| family_of(&m.family) == family && !named.contains(&(family, m.kind, m.code)))
            .map(|m| m.count)
            .sum();
        series.push((family_name(family), None, other));
    }
    series
}

/// A message's name as `ringcap stats` prints it: the RFC's, or its numbers.
pub fn message_name(message: &IcmpMessages) -> String {
    let family = message.family.as_str();
    let name = match (family, message.kind, message.code) {
        ("ipv4", 0, 0) | ("ipv6", 129, 0) => "echo reply",
        ("ipv4", 8, 0) | ("ipv6", 128, 0) => "echo request",
        ("ipv4", 3, 0) => "network unreachable",
        ("ipv4", 3, 1) | ("ipv6", 1, 3) => "host unreachable",
        ("ipv4", 3, 2) => "protocol unreachable",
        ("ipv4", 3, 3) | ("ipv6", 1, 4) => "port unreachable",
        ("ipv4", 3, 4) => "fragmentation needed",
        ("ipv4", 3, 13) | ("ipv6", 1, 1) => "administratively prohibited",
        ("ipv6", 1, 0) => "no route",
        ("ipv6", 2, 0) => "packet too big",
        ("ipv4", 11, 0) | ("ipv6", 3, 0) => "time exceeded in transit",
        ("ipv4", 11, 1) | ("ipv6", 3, 1) => "reassembly time exceeded",
        ("ipv6", 133, 0) => "router solicitation",
        ("ipv6", 134, 0) => "router advertisement",
        ("ipv6", 135, 0) => "neighbor solicitation",
        ("ipv6", 136, 0) => "neighbor advertisement",
        _ => {
            let or_higher = if message.and_higher { "+" } else { "" };
            return format!("{family} type {} code {}{or_higher}", message.kind, message.code);
        }
    };
    format!("{family} {name}")
}

/// Upper bounds of the announced-MTU histogram, bytes: the MTUs of real links and
/// tunnels (IPv4's minimum, IPv6's, common VPN and tunnel MTUs, PPPoE, Ethernet, jumbo).
pub const MTU_BOUNDS: [u32; 10] = [576, 1280, 1380, 1400, 1420, 1450, 1480, 1492, 1500, 9000];

/// One slot's announced MTUs of `family` as a histogram: (sum, count, per-bucket counts
/// with +Inf last as `u32::MAX`).
pub fn mtu_histogram(health: &IcmpHealth, family: u32) -> (f64, u64, Vec<(u32, u64)>) {
    let announced: Vec<(u32, u64)> = health
        .path_mtu
        .iter()
        .filter(|p| p.family == family_name(family))
        .map(|p| (p.mtu, p.count))
        .collect();
    let mut below = 0;
    let buckets: Vec<(u32, u64)> = MTU_BOUNDS
        .iter()
        .chain([&u32::MAX])
        .map(|&bound| {
            let at_most: u64 = announced.iter().filter(|(mtu, _)| *mtu <= bound).map(|(_, n)| n).sum();
            let bucket = at_most - below;
            below = at_most;
            (bound, bucket)
        })
        .collect();
    let total = below;
    // A fold from 0: an empty f64 sum is -0.0, which the text format prints as such.
    let sum = announced.iter().fold(0.0, |sum, (mtu, n)| sum + f64::from(*mtu) * *n as f64);
    (sum, total, buckets)
}

fn family_name(family: u32) -> &'static str {
    crate::kernel::family_name(family)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::PathMtu;

    fn health() -> IcmpHealth {
        let message = |family: &str, kind, code, count| IcmpMessages {
            family: family.into(),
            kind,
            code,
            and_higher: false,
            count,
        };
        IcmpHealth {
            interface: "eth0".into(),
            direction: "in".into(),
            messages: vec![
                message("ipv4", 3, 4, 2),
                message("ipv4", 42, 0, 5),
                message("ipv6", 135, 0, 7),
                message("ipv6", 200, 9, 1),
            ],
            path_mtu_messages: 3,
            path_mtu: vec![
                PathMtu { family: "ipv4".into(), mtu: 1280, count: 2 },
                PathMtu { family: "ipv4".into(), mtu: 65535, count: 1 },
            ],
        }
    }

    #[test]
    fn the_series_are_fixed_and_the_rest_is_other() {
        let named = named_messages();
        assert_eq!(named.len(), 1 + 16 + 4 + 1 + 2 + 3 + 8 + 1 + 2 + 4 + 1 + 1 + 7);
        let series = messages(&health());
        assert_eq!(series.len(), named.len() + 2);
        let count = |family, key| series.iter().find(|(f, k, _)| *f == family && *k == key).unwrap().2;
        assert_eq!(count("ipv4", Some((3, 4))), 2);
        assert_eq!(count("ipv6", Some((135, 0))), 7);
        assert_eq!(count("ipv4", None), 5);
        assert_eq!(count("ipv6", None), 1);
        assert_eq!(series.iter().map(|s| s.2).sum::<u64>(), 15, "every message in one series");
        assert_eq!(messages(&IcmpHealth::default()).len(), named.len() + 2, "the same series when idle");
    }

    #[test]
    fn messages_are_named_by_family_type_and_code() {
        let name = |family: &str, kind, code, and_higher| {
            message_name(&IcmpMessages { family: family.into(), kind, code, and_higher, count: 1 })
        };
        assert_eq!(name("ipv4", 3, 4, false), "ipv4 fragmentation needed");
        assert_eq!(name("ipv6", 2, 0, false), "ipv6 packet too big");
        assert_eq!(name("ipv4", 11, 0, false), "ipv4 time exceeded in transit");
        assert_eq!(name("ipv4", 11, 1, false), "ipv4 reassembly time exceeded");
        assert_eq!(name("ipv4", 11, 2, false), "ipv4 type 11 code 2");
        assert_eq!(name("ipv6", 200, 1, false), "ipv6 type 200 code 1");
        assert_eq!(name("ipv4", 169, 31, true), "ipv4 type 169 code 31+");
    }

    #[test]
    fn announced_mtus_fall_in_their_buckets() {
        let (sum, count, buckets) = mtu_histogram(&health(), FAMILY_IPV4);
        assert_eq!((sum, count), (2.0 * 1280.0 + 65535.0, 3));
        assert_eq!(buckets.len(), MTU_BOUNDS.len() + 1);
        assert_eq!(buckets[1], (1280, 2));
        assert_eq!(buckets.last(), Some(&(u32::MAX, 1)));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 3);
        assert_eq!(mtu_histogram(&health(), FAMILY_IPV6).1, 0);
    }
}
