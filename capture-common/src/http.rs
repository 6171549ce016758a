//! HTTP/1.x, shared by the kernel (which reads the first bytes of every TCP segment, on
//! any port) and the tests: a segment that starts a request (a method and a space) or a
//! response (`HTTP/1.x NNN`), with the response's status.
use crate::packet::PacketView;

/// The methods that start a request: the first four bytes and the fifth (0: none
/// needed, the four end in the space).
const METHODS: [(&[u8; 4], u8); 9] = [
    (b"GET ", 0),
    (b"PUT ", 0),
    (b"POST", b' '),
    (b"HEAD", b' '),
    (b"DELE", b'T'),
    (b"OPTI", b'O'),
    (b"PATC", b'H'),
    (b"CONN", b'E'),
    (b"TRAC", b'E'),
];

/// What a TCP segment's first bytes start, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    Request,
    Response { status: u16 },
}

/// Status classes as the metrics label them, by the status's first digit (1 to 5);
/// anything else is "other".
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Whether a TCP payload whose first four bytes are `first` may start a message
/// [`parse`] reads: a response or a request by its method.
#[inline(always)]
pub fn may_start(first: u32) -> bool {
    if first == u32::from_be_bytes(*b"HTTP") {
        return true;
    }
    let mut i = 0;
    while i < METHODS.len() {
        if first == u32::from_be_bytes(*METHODS[i].0) {
            return true;
        }
        i += 1;
    }
    false
}

/// The HTTP message the payload at `at` (ending at `end`) starts, if any (six bytes at
/// least: a method, a space and more).
#[inline(always)]
pub fn parse<P: PacketView>(p: &P, at: u32, end: u32) -> Option<Message> {
    if at + 6 > end {
        return None;
    }
    let first = p.word(at)?;
    if first == u32::from_be_bytes(*b"HTTP") {
        if at + 12 > end || p.word(at + 4)? & 0xffff_ff00 != u32::from_be_bytes(*b"/1.\0") {
            return None;
        }
        let status = p.word(at + 8)?;
        if status >> 24 != u32::from(b' ') {
            return None;
        }
        let mut code = 0u16;
        let mut i = 0;
        while i < 3 {
            let digit = (status >> (16 - 8 * i)) as u8;
            if !digit.is_ascii_digit() {
                return None;
            }
            code = code * 10 + u16::from(digit - b'0');
            i += 1;
        }
        return Some(Message::Response { status: code });
    }
    // Two bytes rather than one: see `crate::tls::parse`.
    let fifth = (p.half(at + 4)? >> 8) as u8;
    let mut i = 0;
    while i < METHODS.len() {
        let (head, next) = METHODS[i];
        if first == u32::from_be_bytes(*head) && (next == 0 || fifth == next) {
            return Some(Message::Request);
        }
        i += 1;
    }
    None
}

/// The label of a status's class.
pub fn class_label(status: u16) -> &'static str {
    match status / 100 {
        class @ 1..=5 => CLASSES[usize::from(class) - 1],
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::SlicePacket;

    fn message(bytes: &[u8]) -> Option<Message> {
        parse(&SlicePacket { data: bytes, wire_len: bytes.len() as u32 }, 0, bytes.len() as u32)
    }

    #[test]
    fn requests_and_responses() {
        for request in
            [&b"GET / HTTP/1.1\r\n"[..], b"POST /x HTTP/1.0", b"DELETE /a", b"OPTIONS *", b"HEAD / "]
        {
            assert_eq!(message(request), Some(Message::Request), "{}", String::from_utf8_lossy(request));
        }
        assert_eq!(message(b"HTTP/1.1 200 OK\r\n"), Some(Message::Response { status: 200 }));
        assert_eq!(message(b"HTTP/1.0 503 Service Unavailable"), Some(Message::Response { status: 503 }));
        assert_eq!(message(b"HTTP/1.1 404"), Some(Message::Response { status: 404 }));
        for other in [
            &b"HTTP/2 200 OK"[..],
            b"HTTP/1.1 2x0",
            b"HTTP/1.1 200"[..11].as_ref(),
            b"POSTER",
            b"GETX",
            b"get / ",
        ] {
            assert_eq!(message(other), None, "{}", String::from_utf8_lossy(other));
        }
        assert_eq!(
            (class_label(101), class_label(204), class_label(599), class_label(600)),
            ("1xx", "2xx", "5xx", "other")
        );
    }
}
