//! The cut's rules on hand-made packets (the kernel's cut of real flows is checked by
//! the daemon's tests, against what was sent).
use super::*;
use crate::tcp::ACK;

fn config(flow_bytes: u32, flow_packets: u32, encrypted: bool) -> CaptureConfig {
    CaptureConfig {
        flow_bytes,
        flow_packets,
        cut_encrypted: u32::from(encrypted),
        ..CaptureConfig::default()
    }
}

fn tcp(flags: u8, seq: u32, payload: &[u8]) -> Transport {
    let mut head = [0u8; 8];
    let n = payload.len().min(8);
    head[..n].copy_from_slice(&payload[..n]);
    Transport {
        tcp: true,
        flags,
        seq,
        payload_len: payload.len() as u32,
        head: u64::from_be_bytes(head),
        head_len: if n == 8 {
            8
        } else if n >= 4 {
            4
        } else {
            0
        },
        payload_at: 54,
    }
}

fn udp(payload: &[u8]) -> Transport {
    Transport { tcp: false, flags: 0, ..tcp(0, 0, payload) }
}

#[test]
fn a_tcp_direction_keeps_the_segments_that_start_in_its_first_bytes() {
    let config = config(1000, 0, false);
    let mut half = CutHalf::default();
    assert_eq!(decide(&mut half, &tcp(SYN, 99, &[]), &config), 0);
    assert_eq!(decide(&mut half, &tcp(ACK, 100, &[1; 600]), &config), 0);
    // Starts at 600, ends past 1000: whole (it starts within the first bytes).
    assert_eq!(decide(&mut half, &tcp(ACK, 700, &[1; 600]), &config), 0);
    assert_eq!(decide(&mut half, &tcp(ACK, 1300, &[1; 600]), &config), CUT_FLOW_BYTES);
    // A retransmission of early data is early data; FIN and RST are always whole.
    assert_eq!(decide(&mut half, &tcp(ACK, 100, &[1; 600]), &config), 0);
    assert_eq!(decide(&mut half, &tcp(ACK | FIN, 1900, &[1; 600]), &config), 0);
    assert_eq!(decide(&mut half, &tcp(RST, 5000, &[]), &config), 0);
}

#[test]
fn a_flow_picked_up_mid_stream_counts_from_its_first_segment() {
    let config = config(1000, 0, false);
    let mut half = CutHalf::default();
    assert_eq!(decide(&mut half, &tcp(ACK, 5_000_000, &[1; 1000]), &config), 0);
    assert_eq!(decide(&mut half, &tcp(ACK, 5_001_000, &[1; 1000]), &config), CUT_FLOW_BYTES);
}

#[test]
fn past_a_gibibyte_no_position_is_early_even_after_the_sequence_wraps() {
    let config = config(1000, 0, false);
    let mut half = CutHalf::default();
    decide(&mut half, &tcp(SYN, u32::MAX - 10, &[]), &config);
    let base = half.base_seq;
    assert_eq!(
        decide(&mut half, &tcp(ACK, base.wrapping_add(FLOW_BYTES_MAX), &[1; 100]), &config),
        CUT_FLOW_BYTES
    );
    assert_eq!(decide(&mut half, &tcp(ACK, base.wrapping_add(10), &[1; 100]), &config), CUT_FLOW_BYTES);
}

#[test]
fn udp_counts_payload_bytes_and_packets_count_per_direction() {
    let config = config(1000, 0, false);
    let mut half = CutHalf::default();
    assert_eq!(decide(&mut half, &udp(&[0; 999]), &config), 0);
    assert_eq!(decide(&mut half, &udp(&[0; 10]), &config), 0);
    assert_eq!(decide(&mut half, &udp(&[0; 10]), &config), CUT_FLOW_BYTES);
    let config = super::tests::config(0, 2, false);
    let mut half = CutHalf::default();
    let verdicts: Vec<u32> = (0..4).map(|_| decide(&mut half, &udp(&[0; 10]), &config)).collect();
    assert_eq!(verdicts, [0, 0, CUT_FLOW_PACKETS, CUT_FLOW_PACKETS]);
}

#[test]
fn tls_is_cut_from_its_first_application_data_and_cleartext_never() {
    let config = config(0, 0, true);
    let mut tls = CutHalf::default();
    decide(&mut tls, &tcp(SYN, 0, &[]), &config);
    let client_hello = [0x16, 3, 1, 0, 200, 1, 0, 0];
    assert_eq!(decide(&mut tls, &tcp(ACK, 1, &client_hello), &config), 0);
    assert_eq!(decide(&mut tls, &tcp(ACK, 9, &[0x14, 3, 3, 0, 1, 1, 0x16, 3]), &config), 0);
    assert_eq!(decide(&mut tls, &tcp(ACK, 17, &[0x17, 3, 3, 0, 40, 9, 9, 9]), &config), CUT_ENCRYPTED_DATA);
    // Past it, a segment starting mid-record is encrypted too.
    assert_eq!(decide(&mut tls, &tcp(ACK, 25, &[9; 8]), &config), CUT_ENCRYPTED_DATA);
    let mut cleartext = CutHalf::default();
    assert_eq!(decide(&mut cleartext, &tcp(ACK, 1, b"GET / HTTP/1.1\r\n"), &config), 0);
    assert_eq!(decide(&mut cleartext, &tcp(ACK, 17, &[0x17, 3, 3, 0, 40, 9, 9, 9]), &config), 0);
}

#[test]
fn quic_is_cut_from_its_first_short_header_and_dns_never() {
    let config = config(0, 0, true);
    let mut quic = CutHalf::default();
    let initial = [0xc3, 0, 0, 0, 1, 8, 0xaa, 0xbb];
    assert_eq!(decide(&mut quic, &udp(&initial), &config), 0);
    assert_eq!(decide(&mut quic, &udp(&[0xe3, 0, 0, 0, 1, 8, 0, 0]), &config), 0);
    assert_eq!(decide(&mut quic, &udp(&[0x43, 1, 2, 3, 4, 5, 6, 7]), &config), CUT_ENCRYPTED_DATA);
    // A DNS query whose ID starts 0xc0, then one whose ID starts 0x40.
    let mut dns = CutHalf::default();
    assert_eq!(decide(&mut dns, &udp(&[0xc0, 0x12, 1, 0, 0, 1, 0, 0]), &config), 0);
    assert_eq!(decide(&mut dns, &udp(&[0x40, 0x12, 1, 0, 0, 1, 0, 0]), &config), 0);
}

#[test]
fn with_cutting_off_nothing_is_cut() {
    let config = config(0, 0, false);
    assert!(!enabled(&config));
    let mut half = CutHalf::default();
    for seq in 0..5 {
        assert_eq!(decide(&mut half, &tcp(ACK, seq * 100_000, &[0x17, 3, 3, 0, 1, 1, 1, 1]), &config), 0);
    }
}

#[test]
fn udp_datagrams_are_parsed_with_their_payload() {
    let mut frame = vec![0u8; 42];
    frame[12] = 0x08;
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&(28u16 + 8).to_be_bytes());
    frame[23] = 17;
    frame[26..30].copy_from_slice(&[10, 0, 0, 2]);
    frame[30..34].copy_from_slice(&[10, 0, 0, 1]);
    frame[34..36].copy_from_slice(&443u16.to_be_bytes());
    frame[36..38].copy_from_slice(&5000u16.to_be_bytes());
    frame.extend_from_slice(&[0x43, 1, 2, 3, 4, 5, 6, 7]);
    let packet = crate::packet::SlicePacket { data: &frame, wire_len: frame.len() as u32 };
    let (mut key, mut t) = (FlowKey::default(), Transport::default());
    let from_lo = parse_udp(&packet, &mut key, &mut t).unwrap();
    assert!(!from_lo, "10.0.0.1 is the lower endpoint");
    assert_eq!((key.lo_port, key.hi_port, key.family, key.protocol), (5000, 443, 4, 17));
    assert_eq!((t.payload_at, t.payload_len), (42, 8));
    t.read_head(&packet);
    assert_eq!((t.head, t.head_len), (0x4301_0203_0405_0607, 8));
}

#[test]
fn a_new_connection_on_the_same_ports_starts_afresh_even_unseen_by_the_analysis() {
    let config = config(0, 3, true);
    let mut half = CutHalf::default();
    decide(&mut half, &tcp(SYN, 0, &[]), &config);
    decide(&mut half, &tcp(ACK, 1, &[0x16, 3, 1, 0, 200, 1, 0, 0]), &config);
    assert_eq!(decide(&mut half, &tcp(ACK, 9, &[0x17, 3, 3, 0, 40, 9, 9, 9]), &config), CUT_ENCRYPTED_DATA);
    // The next connection's SYN-ACK (this direction's SYN), then cleartext.
    decide(&mut half, &tcp(SYN | ACK, 900_000, &[]), &config);
    assert_eq!(decide(&mut half, &tcp(ACK, 900_001, b"GET / HTTP/1.1\r\n"), &config), 0);
    assert_eq!(half.packets, 2, "counted from its SYN");
}

#[test]
fn a_segment_without_payload_is_never_cut() {
    let config = config(0, 1, false);
    let mut half = CutHalf::default();
    decide(&mut half, &tcp(ACK, 1, &[1; 100]), &config);
    assert_eq!(decide(&mut half, &tcp(ACK, 101, &[]), &config), 0, "a pure ACK, padded or not");
    assert_eq!(decide(&mut half, &tcp(ACK, 101, &[1; 100]), &config), CUT_FLOW_PACKETS);
}

#[test]
fn a_dns_query_whose_header_spells_a_draft_version_is_not_quic() {
    let config = config(0, 0, true);
    let mut dns = CutHalf::default();
    // ID 0xc0ff, flags 0x0000, one question: bytes 1-4 read 0xff000000.
    assert_eq!(decide(&mut dns, &udp(&[0xc0, 0xff, 0, 0, 0, 1, 0, 0]), &config), 0);
    assert_eq!(decide(&mut dns, &udp(&[0x40, 0x34, 0, 0, 0, 1, 0, 0]), &config), 0);
    let mut draft = CutHalf::default();
    decide(&mut draft, &udp(&[0xc3, 0xff, 0, 0, 0x1d, 8, 0, 0]), &config);
    assert_eq!(
        decide(&mut draft, &udp(&[0x43, 1, 2, 3, 4, 5, 6, 7]), &config),
        CUT_ENCRYPTED_DATA,
        "draft 29"
    );
}
