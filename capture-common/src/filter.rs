//! The filter machine: a classic-BPF-style instruction set that ringcap's filter
//! compiler emits and that both sides run with this one [`step`] function, the kernel
//! from a map (so a new filter needs no new eBPF object) and user space on stored
//! packets (so a pull selects exactly what capture would have).
//!
//! Registers A and X, sixteen scratch words, forward jumps only. A load outside the
//! packet ends the program with a reject, as in libpcap: `not tcp port 80` does not
//! match a packet too short to hold the ports.

/// One instruction, laid out like Linux's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Most instructions a filter program may have (the size of the kernel's program map).
pub const MAX_FILTER_INSNS: u32 = 512;
/// Scratch words (`M[0..16]`).
pub const SCRATCH_WORDS: usize = 16;

/// Instruction codes (classic BPF's encoding, a subset).
pub mod op {
    /// `A = pkt[k:size]`
    pub const LD_ABS_W: u16 = 0x20;
    pub const LD_ABS_H: u16 = 0x28;
    pub const LD_ABS_B: u16 = 0x30;
    /// `A = pkt[X + k:size]`
    pub const LD_IND_W: u16 = 0x40;
    pub const LD_IND_H: u16 = 0x48;
    pub const LD_IND_B: u16 = 0x50;
    /// `A = packet length on the wire`
    pub const LD_LEN: u16 = 0x80;
    /// `A = k`
    pub const LD_IMM: u16 = 0x00;
    /// `A = M[k]`
    pub const LD_MEM: u16 = 0x60;
    /// `X = 4 * (pkt[k] & 0xf)` (an IPv4 header's length)
    pub const LDX_MSH: u16 = 0xb1;
    /// `X = k`
    pub const LDX_IMM: u16 = 0x01;
    /// `X = M[k]`
    pub const LDX_MEM: u16 = 0x61;
    /// `M[k] = A`, `M[k] = X`
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    /// `A = A op k` (`| SRC_X` for `A = A op X`)
    pub const ADD: u16 = 0x04;
    pub const SUB: u16 = 0x14;
    pub const MUL: u16 = 0x24;
    pub const DIV: u16 = 0x34;
    pub const OR: u16 = 0x44;
    pub const AND: u16 = 0x54;
    pub const LSH: u16 = 0x64;
    pub const RSH: u16 = 0x74;
    pub const MOD: u16 = 0x94;
    pub const XOR: u16 = 0xa4;
    /// Conditional jumps: `pc += 1 + (A cmp k ? jt : jf)` (`| SRC_X` to compare with X)
    pub const JEQ: u16 = 0x15;
    pub const JGT: u16 = 0x25;
    pub const JGE: u16 = 0x35;
    pub const JSET: u16 = 0x45;
    /// Operand X instead of k.
    pub const SRC_X: u16 = 0x08;
    /// `X = A`, `A = X`
    pub const TAX: u16 = 0x07;
    pub const TXA: u16 = 0x87;
    /// Accept if k != 0, reject otherwise.
    pub const RET: u16 = 0x06;
}

/// Packet bytes as the filter sees them.
pub trait PacketView {
    /// Length of the packet on the wire.
    fn wire_len(&self) -> u32;
    /// The byte at `offset`, if it was captured.
    fn byte(&self, offset: u32) -> Option<u8>;
}

/// Registers of a running filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FilterState {
    pub pc: u32,
    pub a: u32,
    pub x: u32,
    /// 0 while running, then [`ACCEPT`] or [`REJECT`].
    pub verdict: u32,
    pub mem: [u32; SCRATCH_WORDS],
}

pub const ACCEPT: u32 = 1;
pub const REJECT: u32 = 2;

#[inline(always)]
fn load<P: PacketView>(packet: &P, offset: u32, size: u32) -> Option<u32> {
    let mut value = 0u32;
    let mut i = 0;
    while i < size {
        value = (value << 8) | u32::from(packet.byte(offset.checked_add(i)?)?);
        i += 1;
    }
    Some(value)
}

/// Stores a loaded value; false when the load failed.
#[inline(always)]
fn set(register: &mut u32, value: Option<u32>) -> bool {
    match value {
        Some(v) => {
            *register = v;
            true
        }
        None => false,
    }
}

/// Executes one instruction; sets `state.verdict` when the program ends.
#[inline(always)]
pub fn step<P: PacketView>(insn: &FilterInsn, state: &mut FilterState, packet: &P) {
    let k = insn.k;
    let operand = if insn.code & op::SRC_X != 0 && insn.code & 0x07 != 0x00 { state.x } else { k };
    let mut next = state.pc + 1;
    let x = state.x;
    let word = |offset: Option<u32>, size: u32| offset.and_then(|o| load(packet, o, size));
    let ok = match insn.code {
        op::LD_ABS_W => set(&mut state.a, word(Some(k), 4)),
        op::LD_ABS_H => set(&mut state.a, word(Some(k), 2)),
        op::LD_ABS_B => set(&mut state.a, word(Some(k), 1)),
        op::LD_IND_W => set(&mut state.a, word(x.checked_add(k), 4)),
        op::LD_IND_H => set(&mut state.a, word(x.checked_add(k), 2)),
        op::LD_IND_B => set(&mut state.a, word(x.checked_add(k), 1)),
        op::LDX_MSH => set(&mut state.x, word(Some(k), 1).map(|v| 4 * (v & 0xf))),
        op::LD_LEN => set(&mut state.a, Some(packet.wire_len())),
        op::LD_IMM => set(&mut state.a, Some(k)),
        op::LDX_IMM => set(&mut state.x, Some(k)),
        op::LD_MEM => set(&mut state.a, Some(state.mem[k as usize % SCRATCH_WORDS])),
        op::LDX_MEM => set(&mut state.x, Some(state.mem[k as usize % SCRATCH_WORDS])),
        op::ST => set(&mut state.mem[k as usize % SCRATCH_WORDS], Some(state.a)),
        op::STX => set(&mut state.mem[k as usize % SCRATCH_WORDS], Some(x)),
        op::TAX => set(&mut state.x, Some(state.a)),
        op::TXA => set(&mut state.a, Some(x)),
        op::RET => {
            state.verdict = if k != 0 { ACCEPT } else { REJECT };
            true
        }
        code => {
            let a = state.a;
            match code & !op::SRC_X {
                op::ADD => set(&mut state.a, Some(a.wrapping_add(operand))),
                op::SUB => set(&mut state.a, Some(a.wrapping_sub(operand))),
                op::MUL => set(&mut state.a, Some(a.wrapping_mul(operand))),
                op::DIV => set(&mut state.a, a.checked_div(operand)),
                op::MOD => set(&mut state.a, a.checked_rem(operand)),
                op::OR => set(&mut state.a, Some(a | operand)),
                op::AND => set(&mut state.a, Some(a & operand)),
                op::XOR => set(&mut state.a, Some(a ^ operand)),
                op::LSH => set(&mut state.a, Some(a.checked_shl(operand).unwrap_or(0))),
                op::RSH => set(&mut state.a, Some(a.checked_shr(operand).unwrap_or(0))),
                jump @ (op::JEQ | op::JGT | op::JGE | op::JSET) => {
                    let taken = match jump {
                        op::JEQ => a == operand,
                        op::JGT => a > operand,
                        op::JGE => a >= operand,
                        _ => a & operand != 0,
                    };
                    next += u32::from(if taken { insn.jt } else { insn.jf });
                    true
                }
                _ => false,
            }
        }
    };
    if !ok {
        state.verdict = REJECT;
    }
    state.pc = next;
}

/// Runs a whole program (user space); programs are forward-only, so this ends.
pub fn run<P: PacketView>(program: &[FilterInsn], packet: &P) -> bool {
    let mut state = FilterState::default();
    while state.verdict == 0 {
        match program.get(state.pc as usize) {
            Some(insn) => step(insn, &mut state, packet),
            None => return false,
        }
    }
    state.verdict == ACCEPT
}

/// A packet held in a byte slice, with its length on the wire.
pub struct SlicePacket<'a> {
    pub data: &'a [u8],
    pub wire_len: u32,
}

impl PacketView for SlicePacket<'_> {
    fn wire_len(&self) -> u32 {
        self.wire_len
    }
    fn byte(&self, offset: u32) -> Option<u8> {
        self.data.get(offset as usize).copied()
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for FilterInsn {}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> FilterInsn {
        FilterInsn { code, jt, jf, k }
    }

    #[test]
    fn runs_a_program_and_rejects_out_of_range_loads() {
        // ether[12:2] == 0x0800
        let program = [
            insn(op::LD_ABS_H, 0, 0, 12),
            insn(op::JEQ, 0, 1, 0x800),
            insn(op::RET, 0, 0, 1),
            insn(op::RET, 0, 0, 0),
        ];
        let mut frame = [0u8; 20];
        frame[12] = 8;
        assert!(run(&program, &SlicePacket { data: &frame, wire_len: 20 }));
        frame[12] = 0x86;
        assert!(!run(&program, &SlicePacket { data: &frame, wire_len: 20 }));
        assert!(!run(&program, &SlicePacket { data: &frame[..13], wire_len: 60 }));
    }

    #[test]
    fn msh_and_indirect_loads_and_scratch() {
        let program = [
            insn(op::LDX_MSH, 0, 0, 0),
            insn(op::LD_IND_B, 0, 0, 1),
            insn(op::ST, 0, 0, 3),
            insn(op::LD_IMM, 0, 0, 7),
            insn(op::LDX_MEM, 0, 0, 3),
            insn(op::ADD | op::SRC_X, 0, 0, 0),
            insn(op::JEQ, 0, 1, 7 + 0xaa),
            insn(op::RET, 0, 0, 1),
            insn(op::RET, 0, 0, 0),
        ];
        let mut data = [0u8; 32];
        data[0] = 0x45;
        data[21] = 0xaa;
        assert!(run(&program, &SlicePacket { data: &data, wire_len: 32 }));
    }
}
