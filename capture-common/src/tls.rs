//! TLS handshakes, shared by the kernel (which reads the first record of every TCP
//! segment, on any port) and the tests: ClientHellos, ServerHellos with the version the
//! server chose, and alerts sent in the clear (during the handshake) by description.
use crate::packet::PacketView;

/// TLS record content types.
const HANDSHAKE: u8 = 22;
const ALERT: u8 = 21;
/// Handshake message types.
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
/// The extension in which TLS 1.3's ServerHello names its version (the legacy field
/// says 1.2).
const SUPPORTED_VERSIONS: u32 = 43;
/// Extensions of a ServerHello read for it; servers send a handful.
const MAX_EXTENSIONS: u32 = 12;

/// Name of the array of alert counts: slot * 256 + description, mapped by user space.
pub const ALERTS_MAP: &str = "TLS_ALERTS";
/// Alert counts per slot: one per description.
pub const ALERTS_PER_SLOT: u32 = 256;

/// Versions the ServerHellos count apart, by their label; anything else is "other".
pub const VERSIONS: [(u16, &str); 4] = [(0x0301, "1.0"), (0x0302, "1.1"), (0x0303, "1.2"), (0x0304, "1.3")];

/// What a TCP segment's first TLS record says, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    ClientHello,
    /// The version the server chose (TLS 1.3's from its supported_versions extension).
    ServerHello {
        version: u16,
    },
    /// An alert in the clear: its description (RFC 8446's AlertDescription).
    Alert {
        description: u8,
    },
}

/// Whether a TCP payload whose first four bytes are `first` may start a record
/// [`parse`] reads: an alert or a handshake of a TLS version.
#[inline(always)]
pub fn may_start(first: u32) -> bool {
    matches!((first >> 24) as u8, ALERT | HANDSHAKE) && (first >> 16) as u8 == 3
}

/// The TLS record at `at` (a TCP segment's payload, which ends at `end`), if it starts a
/// ClientHello, a ServerHello or an alert in the clear (encrypted alerts are longer than
/// two bytes; Wireshark cannot read them either).
#[inline(always)]
pub fn parse<P: PacketView>(p: &P, at: u32, end: u32) -> Option<Record> {
    if at + 6 > end {
        return None;
    }
    // Two-byte reads rather than single bytes: LLVM turns a one-byte bounds check
    // into a form the verifier does not follow at a variable offset.
    let head = p.word(at)?;
    let next = p.half(at + 4)?;
    let (content, major) = ((head >> 24) as u8, (head >> 16) as u8);
    if major != 3 {
        return None;
    }
    let length = (head & 0xff) << 8 | next >> 8;
    match content {
        ALERT if length == 2 && at + 7 <= end => Some(Record::Alert { description: p.half(at + 5)? as u8 }),
        HANDSHAKE => match next as u8 {
            CLIENT_HELLO => Some(Record::ClientHello),
            SERVER_HELLO => Some(Record::ServerHello { version: server_version(p, at, end).unwrap_or(0) }),
            _ => None,
        },
        _ => None,
    }
}

/// The version a ServerHello at `at` chose: its supported_versions extension if it has
/// one, else its legacy version field; `None` if the message is cut before either.
#[inline(always)]
fn server_version<P: PacketView>(p: &P, at: u32, end: u32) -> Option<u16> {
    // Record header 5, handshake header 4, then the legacy version, 32 random bytes.
    let legacy = p.half(at + 9)? as u16;
    let session_id = at + 43;
    let Some(extensions) = p.half(session_id).map(|n| session_id + 1 + (n >> 8) + 2 + 1) else {
        return Some(legacy);
    };
    let Some(total) = p.half(extensions) else { return Some(legacy) };
    let (mut next, last) = (extensions + 2, (extensions + 2 + total).min(end));
    let mut i = 0;
    while i < MAX_EXTENSIONS && next + 4 <= last {
        let Some(head) = p.word(next) else { break };
        if head >> 16 == SUPPORTED_VERSIONS && head & 0xffff == 2 {
            return p.half(next + 4).map(|v| v as u16).or(Some(legacy));
        }
        // An extension past the first kilobyte of a packet is out of the kernel's reach
        // anyway; the bound keeps every offset far below 64 KiB, which the verifier needs
        // to see (LLVM checks the kernel's offset bound on a copy it does not follow).
        let length = head & 0xffff;
        if length > 1024 {
            break;
        }
        next += 4 + length;
        i += 1;
    }
    Some(legacy)
}

/// The label of a version, as the metrics carry it.
pub fn version_label(version: u16) -> &'static str {
    VERSIONS.iter().find(|(v, _)| *v == version).map_or("other", |(_, label)| label)
}

/// The alert descriptions counted apart, by their name in RFC 8446 (and Wireshark's
/// `tls.alert_message.desc`); anything else is "other".
pub const ALERTS: [(u8, &str); 24] = [
    (0, "close_notify"),
    (10, "unexpected_message"),
    (20, "bad_record_mac"),
    (22, "record_overflow"),
    (40, "handshake_failure"),
    (42, "bad_certificate"),
    (43, "unsupported_certificate"),
    (44, "certificate_revoked"),
    (45, "certificate_expired"),
    (46, "certificate_unknown"),
    (47, "illegal_parameter"),
    (48, "unknown_ca"),
    (49, "access_denied"),
    (50, "decode_error"),
    (51, "decrypt_error"),
    (70, "protocol_version"),
    (71, "insufficient_security"),
    (80, "internal_error"),
    (86, "inappropriate_fallback"),
    (90, "user_canceled"),
    (109, "missing_extension"),
    (112, "unrecognized_name"),
    (116, "certificate_required"),
    (120, "no_application_protocol"),
];

/// The label of an alert description.
pub fn alert_label(description: u8) -> &'static str {
    ALERTS.iter().find(|(d, _)| *d == description).map_or("other", |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::SlicePacket;

    fn record(bytes: &[u8]) -> Option<Record> {
        parse(&SlicePacket { data: bytes, wire_len: bytes.len() as u32 }, 0, bytes.len() as u32)
    }

    /// A ServerHello with a session ID of `session` bytes and the given extensions.
    fn server_hello(legacy: u16, session: usize, extensions: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = legacy.to_be_bytes().to_vec();
        body.extend([7u8; 32]);
        body.push(session as u8);
        body.extend(vec![1u8; session]);
        body.extend([0x13, 0x01, 0]);
        let mut list = Vec::new();
        for (kind, data) in extensions {
            list.extend(kind.to_be_bytes());
            list.extend((data.len() as u16).to_be_bytes());
            list.extend(*data);
        }
        body.extend((list.len() as u16).to_be_bytes());
        body.extend(list);
        let mut message = vec![SERVER_HELLO, 0, (body.len() >> 8) as u8, body.len() as u8];
        message.extend(body);
        let mut out = vec![HANDSHAKE, 3, 3, (message.len() >> 8) as u8, message.len() as u8];
        out.extend(message);
        out
    }

    #[test]
    fn hellos_and_alerts() {
        assert_eq!(record(&[22, 3, 1, 0, 200, 1, 0, 0, 196]), Some(Record::ClientHello));
        assert_eq!(record(&[21, 3, 3, 0, 2, 2, 70]), Some(Record::Alert { description: 70 }));
        assert_eq!(record(&[21, 3, 3, 0, 26, 1, 2, 3]), None, "an encrypted alert");
        assert_eq!(record(&[23, 3, 3, 0, 200, 1, 0]), None, "application data");
        assert_eq!(record(&[22, 2, 0, 0, 200, 1, 0]), None, "no TLS version");
        assert_eq!(record(&[22, 3, 1, 0, 200]), None, "cut before the handshake type");
        assert_eq!(record(&[22, 3, 3, 0, 200, 11, 0]), None, "a certificate");
        assert!(may_start(0x1603_0100) && may_start(0x1503_0300));
        assert!(!may_start(0x1703_0300) && !may_start(0x1602_0000));
    }

    #[test]
    fn the_server_hello_names_the_version_chosen() {
        let tls13 = server_hello(0x0303, 32, &[(51, &[0, 29, 0, 1, 9]), (43, &[3, 4])]);
        assert_eq!(record(&tls13), Some(Record::ServerHello { version: 0x0304 }));
        let tls12 = server_hello(0x0303, 0, &[(65281, &[0]), (11, &[1, 0])]);
        assert_eq!(record(&tls12), Some(Record::ServerHello { version: 0x0303 }));
        assert_eq!(record(&server_hello(0x0301, 0, &[])), Some(Record::ServerHello { version: 0x0301 }));
        // Cut in the extensions: the legacy version.
        assert_eq!(record(&tls13[..60]), Some(Record::ServerHello { version: 0x0303 }));
        assert_eq!(version_label(0x0304), "1.3");
        assert_eq!(version_label(0x7f1c), "other");
        assert_eq!(alert_label(70), "protocol_version");
        assert_eq!(alert_label(255), "other");
    }
}
