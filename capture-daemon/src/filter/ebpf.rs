//! Classic BPF (from libpcap) to eBPF that the kernel verifies and JIT-compiles: the body
//! of the capture programs' filter subprogram (`packet_filter` in `capture-ebpf`), called
//! with the packet's first byte, its end and its length on the wire.
//!
//! Every packet load is checked against the end of the packet and rejects the packet
//! when it falls outside, as libpcap's interpreter does; A and X are 32-bit registers
//! (ALU32 and JMP32 instructions), the scratch words live on the stack, division by zero
//! rejects. The code ends by falling through to the subprogram's own `exit`, with the
//! verdict in r0. Registers: r0 = A, r1 = packet, r2 = packet end, r3 = X, r4/r5
//! temporaries (the caller's r6-r9 are left alone); the wire length waits on the stack.
use super::libpcap::BpfInsn;

/// One eBPF instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EbpfInsn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl EbpfInsn {
    /// The instruction as the kernel reads it (little-endian host).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut bytes = [0u8; 8];
        bytes[0] = self.code;
        bytes[1] = (self.src << 4) | (self.dst & 0x0f);
        bytes[2..4].copy_from_slice(&self.off.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.imm.to_le_bytes());
        bytes
    }
}

/// Why a classic program cannot be translated.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("instruction {at} (code {code:#06x}) is not classic BPF that ringcap can run")]
    Unsupported { at: usize, code: u16 },
    #[error("instruction {at} jumps past the end of the program")]
    JumpOutside { at: usize },
    #[error(
        "instruction {at} jumps backwards: a loop (what `protochain` compiles to), which \
         the kernel programs cannot run; pull can filter with it afterwards"
    )]
    Loop { at: usize },
    #[error("the program does not end with a return")]
    NoReturn,
}

// Registers.
const A: u8 = 0;
const PACKET: u8 = 1;
const PACKET_END: u8 = 2;
const X: u8 = 3;
const TMP: u8 = 4;
const TMP_END: u8 = 5;
const FRAME: u8 = 10;
/// Where the wire length (the third argument, r3) is kept: below the scratch words.
const WIRE_LEN_SLOT: i16 = -4 * (SCRATCH_WORDS as i16 + 1);

// eBPF opcode parts.
const ALU32: u8 = 0x04;
const ALU64: u8 = 0x07;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const LDX_MEM: u8 = 0x61;
const ST_MEM: u8 = 0x62;
const STX_MEM: u8 = 0x63;
const SIZE_W: u8 = 0x00;
const SIZE_H: u8 = 0x08;
const SIZE_B: u8 = 0x10;
const SRC_REG: u8 = 0x08;
const OP_ADD: u8 = 0x00;
const OP_DIV: u8 = 0x30;
const OP_AND: u8 = 0x50;
const OP_LSH: u8 = 0x60;
const OP_RSH: u8 = 0x70;
const OP_NEG: u8 = 0x80;
const OP_MOD: u8 = 0x90;
const OP_MOV: u8 = 0xb0;
const OP_END_TO_BE: u8 = 0xd8;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JGE: u8 = 0x30;
const JSET: u8 = 0x40;
const JNE: u8 = 0x50;
const JLT: u8 = 0xa0;
const JLE: u8 = 0xb0;

/// The verifier's limit on a variable packet offset plus constant offset (MAX_PACKET_OFF);
/// an indirect load keeps X and k each within half of it so their sum stays provable.
const MAX_PACKET_OFF: u64 = 0xffff;
const MAX_INDIRECT_PART: u64 = MAX_PACKET_OFF / 2;
/// Scratch words `M[0..16]`, at the top of the subprogram's stack frame.
const SCRATCH_WORDS: u32 = 16;

/// Where a jump goes, before positions are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// The translation of classic instruction N.
    Classic(usize),
    /// The shared `return 0`.
    Reject,
    /// The subprogram's `exit`, right after the translation.
    Exit,
}

struct Emitter {
    code: Vec<EbpfInsn>,
    /// Jumps to resolve: (eBPF index, target).
    jumps: Vec<(usize, Target)>,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> EbpfInsn {
    EbpfInsn { code, dst, src, off, imm }
}

impl Emitter {
    fn push(&mut self, insn: EbpfInsn) {
        self.code.push(insn);
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, target: Target) {
        self.jumps.push((self.code.len(), target));
        self.push(insn(code, dst, src, 0, imm));
    }

    fn reject_unless_within(&mut self, end: u8) {
        self.jump(JMP | JGT | SRC_REG, end, PACKET_END, 0, Target::Reject);
    }

    /// `A = big-endian packet[offset .. offset + size]`, where offset is k, or X + k.
    fn load(&mut self, dst: u8, size: u32, k: u32, indexed: bool) {
        let width = match size {
            4 => SIZE_W,
            2 => SIZE_H,
            _ => SIZE_B,
        };
        let limit = if indexed { MAX_INDIRECT_PART } else { MAX_PACKET_OFF };
        if u64::from(k) + u64::from(size) > limit {
            // Beyond what any packet the programs see can hold: out of bounds.
            self.jump(JMP, 0, 0, 0, Target::Reject);
            return;
        }
        if indexed {
            self.jump(JMP | JGT, X, 0, MAX_INDIRECT_PART as i32, Target::Reject);
        }
        // TMP = packet (+ X) + k, TMP_END = TMP + size; reject if TMP_END > end.
        self.push(insn(ALU64 | OP_MOV | SRC_REG, TMP, PACKET, 0, 0));
        if indexed {
            self.push(insn(ALU64 | OP_ADD | SRC_REG, TMP, X, 0, 0));
        }
        if k > 0 {
            self.push(insn(ALU64 | OP_ADD, TMP, 0, 0, k as i32));
        }
        self.push(insn(ALU64 | OP_MOV | SRC_REG, TMP_END, TMP, 0, 0));
        self.push(insn(ALU64 | OP_ADD, TMP_END, 0, 0, size as i32));
        self.reject_unless_within(TMP_END);
        self.push(insn(LDX_MEM | width, dst, TMP, 0, 0));
        if size > 1 {
            self.push(insn(ALU32 | OP_END_TO_BE, dst, 0, 0, (size * 8) as i32));
        }
    }

    fn scratch(k: u32, at: usize, code: u16) -> Result<i16, TranslateError> {
        if k >= SCRATCH_WORDS {
            return Err(TranslateError::Unsupported { at, code });
        }
        Ok(-4 * (SCRATCH_WORDS - k) as i16)
    }
}

/// Which classic instructions can run (jumps only go forward, so one pass finds them).
fn reachable(program: &[BpfInsn]) -> Result<Vec<bool>, TranslateError> {
    let mut reached = vec![false; program.len()];
    if let Some(first) = reached.first_mut() {
        *first = true;
    }
    for (at, classic) in program.iter().enumerate() {
        if !reached[at] {
            continue;
        }
        let class = classic.code & 0x07;
        let next: &[u64] = match (class, classic.code & 0xf0) {
            (0x06, _) => &[],
            (0x05, 0x00) if classic.k >= 1 << 31 => return Err(TranslateError::Loop { at }),
            (0x05, 0x00) => &[u64::from(classic.k)],
            (0x05, _) => &[u64::from(classic.jt), u64::from(classic.jf)],
            _ => &[0],
        };
        for &skip in next {
            let to = at as u64 + 1 + skip;
            if to >= program.len() as u64 {
                return Err(TranslateError::JumpOutside { at });
            }
            reached[to as usize] = true;
        }
    }
    Ok(reached)
}

/// Translates a classic BPF program into the eBPF body of the filter subprogram.
pub fn translate(program: &[BpfInsn]) -> Result<Vec<EbpfInsn>, TranslateError> {
    if program.last().is_none_or(|last| last.code & 0x07 != 0x06) {
        return Err(TranslateError::NoReturn);
    }
    let reached = reachable(program)?;
    let mut e = Emitter { code: Vec::new(), jumps: Vec::new() };
    // Arguments: r1 = packet, r2 = end, r3 = wire length (kept on the stack; r3 is X).
    // A and X start at zero, as do the scratch words the program uses (the verifier
    // refuses reads of unset stack).
    e.push(insn(STX_MEM, FRAME, 3, WIRE_LEN_SLOT, 0));
    e.push(insn(ALU32 | OP_MOV, A, 0, 0, 0));
    e.push(insn(ALU32 | OP_MOV, X, 0, 0, 0));
    let mut words_used = [false; SCRATCH_WORDS as usize];
    for classic in program {
        if matches!(classic.code, 0x60 | 0x61 | 0x02 | 0x03) && classic.k < SCRATCH_WORDS {
            words_used[classic.k as usize] = true;
        }
    }
    for (k, _) in words_used.iter().enumerate().filter(|(_, used)| **used) {
        e.push(insn(ST_MEM, FRAME, 0, Emitter::scratch(k as u32, 0, 0)?, 0));
    }
    let mut starts = vec![0usize; program.len()];
    for (at, classic) in program.iter().enumerate() {
        starts[at] = e.code.len();
        if !reached[at] {
            continue;
        }
        let (code, k) = (classic.code, classic.k);
        let unsupported = TranslateError::Unsupported { at, code };
        let next = |skip: u8| Target::Classic(at + 1 + usize::from(skip));
        match code {
            0x20 | 0x28 | 0x30 => e.load(A, [4, 2, 1][usize::from((code - 0x20) >> 3)], k, false),
            0x40 | 0x48 | 0x50 => e.load(A, [4, 2, 1][usize::from((code - 0x40) >> 3)], k, true),
            // X = 4 * (packet[k] & 0xf)
            0xb1 => {
                e.load(X, 1, k, false);
                e.push(insn(ALU32 | OP_AND, X, 0, 0, 0x0f));
                e.push(insn(ALU32 | OP_LSH, X, 0, 0, 2));
            }
            0x80 => e.push(insn(LDX_MEM, A, FRAME, WIRE_LEN_SLOT, 0)),
            0x81 => e.push(insn(LDX_MEM, X, FRAME, WIRE_LEN_SLOT, 0)),
            0x00 => e.push(insn(ALU32 | OP_MOV, A, 0, 0, k as i32)),
            0x01 => e.push(insn(ALU32 | OP_MOV, X, 0, 0, k as i32)),
            0x60 | 0x61 => {
                let dst = if code == 0x60 { A } else { X };
                e.push(insn(LDX_MEM, dst, FRAME, Emitter::scratch(k, at, code)?, 0));
            }
            0x02 | 0x03 => {
                let src = if code == 0x02 { A } else { X };
                e.push(insn(STX_MEM, FRAME, src, Emitter::scratch(k, at, code)?, 0));
            }
            0x07 => e.push(insn(ALU32 | OP_MOV | SRC_REG, X, A, 0, 0)),
            0x87 => e.push(insn(ALU32 | OP_MOV | SRC_REG, A, X, 0, 0)),
            0x06 => {
                e.push(insn(ALU32 | OP_MOV, A, 0, 0, k as i32));
                e.jump(JMP, 0, 0, 0, Target::Exit);
            }
            0x16 => e.jump(JMP, 0, 0, 0, Target::Exit),
            0x0e => {
                e.push(insn(ALU32 | OP_MOV | SRC_REG, A, X, 0, 0));
                e.jump(JMP, 0, 0, 0, Target::Exit);
            }
            _ if code & 0x07 == 0x04 => {
                let op = (code & 0xf0) as u8;
                let from_x = code & 0x08 != 0;
                match op {
                    OP_NEG => e.push(insn(ALU32 | OP_NEG, A, 0, 0, 0)),
                    0x00..=0x70 | OP_MOD | 0xa0 => {
                        if matches!(op, OP_DIV | OP_MOD) {
                            if from_x {
                                e.jump(JMP32 | JEQ, X, 0, 0, Target::Reject);
                            } else if k == 0 {
                                e.jump(JMP, 0, 0, 0, Target::Reject);
                                continue;
                            }
                        }
                        if !from_x && matches!(op, OP_LSH | OP_RSH) && k >= 32 {
                            // Every bit shifted out (the verifier refuses such shifts).
                            e.push(insn(ALU32 | OP_MOV, A, 0, 0, 0));
                        } else if from_x {
                            e.push(insn(ALU32 | op | SRC_REG, A, X, 0, 0));
                        } else {
                            e.push(insn(ALU32 | op, A, 0, 0, k as i32));
                        }
                    }
                    _ => return Err(unsupported),
                }
            }
            0x05 => e.jump(JMP, 0, 0, 0, Target::Classic(at + 1 + k as usize)),
            _ if code & 0x07 == 0x05 => {
                let op = (code & 0xf0) as u8;
                if !matches!(op, JEQ | JGT | JGE | JSET) {
                    return Err(unsupported);
                }
                let (src, imm, from) = if code & 0x08 != 0 { (X, 0, SRC_REG) } else { (0, k as i32, 0) };
                let (taken, not_taken) = (next(classic.jt), next(classic.jf));
                if taken == not_taken {
                    e.jump(JMP, 0, 0, 0, taken);
                } else if classic.jt == 0 && op != JSET {
                    // Fall through when true: jump on the opposite condition.
                    let opposite = match op {
                        JEQ => JNE,
                        JGT => JLE,
                        _ => JLT,
                    };
                    e.jump(JMP32 | opposite | from, A, src, imm, not_taken);
                } else {
                    e.jump(JMP32 | op | from, A, src, imm, taken);
                    if classic.jf != 0 {
                        e.jump(JMP, 0, 0, 0, not_taken);
                    }
                }
            }
            _ => return Err(unsupported),
        }
    }
    let rejects = e.jumps.iter().any(|(_, target)| *target == Target::Reject);
    let reject_at = e.code.len();
    if rejects {
        e.push(insn(ALU32 | OP_MOV, A, 0, 0, 0));
    }
    let exit_at = e.code.len();
    for &(from, target) in &e.jumps {
        let to = match target {
            Target::Classic(at) => starts[at],
            Target::Reject => reject_at,
            Target::Exit => exit_at,
        };
        e.code[from].off = i16::try_from(to - from - 1).expect("a filter fits the placeholder");
    }
    Ok(e.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classic(code: u16, jt: u8, jf: u8, k: u32) -> BpfInsn {
        BpfInsn { code, jt, jf, k }
    }

    #[test]
    fn a_load_is_bounds_checked_and_byte_swapped() {
        // ldh [12]; jeq #0x800 jt 0 jf 1; ret #262144; ret #0
        let program = [
            classic(0x28, 0, 0, 12),
            classic(0x15, 0, 1, 0x800),
            classic(0x06, 0, 0, 262_144),
            classic(0x06, 0, 0, 0),
        ];
        let code = translate(&program).unwrap();
        let has = |c: u8| code.iter().any(|i| i.code == c);
        assert!(has(LDX_MEM | SIZE_H), "a 16-bit packet load");
        assert!(has(ALU32 | OP_END_TO_BE), "converted from network order");
        assert!(has(JMP | JGT | SRC_REG), "checked against the packet end");
        assert!(has(JMP32 | JNE), "jeq falling through on true becomes jne");
        assert_eq!(code.last().unwrap(), &insn(ALU32 | OP_MOV, A, 0, 0, 0), "the shared reject");
        // Every jump goes forward, inside the code or to the exit right after it.
        for (at, i) in code.iter().enumerate().filter(|(_, i)| i.code & 0x07 == JMP || i.code & 0x07 == JMP32)
        {
            assert!(i.off >= 0 && at + 1 + (i.off as usize) <= code.len(), "{at}: {i:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_classic_bpf() {
        assert_eq!(translate(&[]), Err(TranslateError::NoReturn));
        assert_eq!(
            translate(&[classic(0x15, 5, 0, 1), classic(0x06, 0, 0, 1)]),
            Err(TranslateError::JumpOutside { at: 0 })
        );
        assert_eq!(
            translate(&[classic(0x20 | 0xe0, 0, 0, 0), classic(0x06, 0, 0, 1)]),
            Err(TranslateError::Unsupported { at: 0, code: 0x20 | 0xe0 })
        );
        // A constant division by zero rejects the packet instead of failing.
        let code = translate(&[classic(0x34, 0, 0, 0), classic(0x16, 0, 0, 0)]).unwrap();
        assert!(code.iter().any(|i| i.code == JMP));
    }
}
