//! [`Cond`] to filter-machine code: each condition jumps to a true or a false label,
//! `and`/`or`/`not` only rewire the labels, and every jump goes forward.
use capture_common::filter::{op, FilterInsn, MAX_FILTER_INSNS, SCRATCH_WORDS};

use super::cond::{Arith, Base, BinOp, Cond, Load, RelOp, Relation};

/// Where a jump goes before addresses are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Label(usize),
    Accept,
    Reject,
}

/// An instruction whose jump targets are still labels.
struct Pending {
    insn: FilterInsn,
    jt: Target,
    jf: Target,
}

/// What register A is known to hold: the value of a frame load, or nothing known.
type Known = Option<(u32, u8)>;

#[derive(Default)]
struct Emitter {
    code: Vec<Pending>,
    /// Instruction index of each label, once placed.
    labels: Vec<Option<usize>>,
    /// What A holds on every jump into each label seen so far (`Some(None)`: unknown).
    incoming: Vec<Option<Known>>,
    /// What A holds at the current point of emission.
    a_holds: Known,
}

/// The compiled program is too large for the filter machine.
#[derive(Debug, PartialEq, Eq)]
pub struct TooComplex(pub String);

impl Emitter {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.incoming.push(None);
        self.labels.len() - 1
    }

    /// Places a label; jumps only go forward, so every jump into it is already emitted
    /// and A's content there is what all of them agree on.
    fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
        self.a_holds = self.incoming[label].flatten();
    }

    fn emit(&mut self, code: u16, k: u32) {
        let insn = FilterInsn { code, jt: 0, jf: 0, k };
        self.code.push(Pending { insn, jt: Target::Reject, jf: Target::Reject });
        if !matches!(code, op::ST | op::STX | op::LDX_MEM | op::LDX_MSH) {
            self.a_holds = None;
        }
    }

    /// Loads a frame word into A, unless A already holds it (the load succeeded before,
    /// so skipping it cannot change whether the packet is rejected for being short).
    fn load_frame(&mut self, code: u16, offset: u32, size: u8) {
        if self.a_holds != Some((offset, size)) {
            self.emit(code, offset);
            self.a_holds = Some((offset, size));
        }
    }

    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.code.push(Pending { insn: FilterInsn { code, jt: 0, jf: 0, k }, jt, jf });
        for target in [jt, jf] {
            if let Target::Label(label) = target {
                let merged = match self.incoming[label] {
                    None => Some(self.a_holds),
                    Some(known) if known == self.a_holds => Some(known),
                    Some(_) => Some(None),
                };
                self.incoming[label] = merged;
            }
        }
        // Whatever follows a jump is reached only through labels.
        self.a_holds = None;
    }

    fn cond(&mut self, cond: &Cond, t: Target, f: Target) -> Result<(), TooComplex> {
        match cond {
            Cond::True => self.jump(op::JEQ, 0, t, t),
            Cond::Rel(relation) => self.relation(relation, t, f)?,
            Cond::Not(inner) => self.cond(inner, f, t)?,
            Cond::And(parts) | Cond::Or(parts) => {
                let is_and = matches!(cond, Cond::And(_));
                let Some((last, first)) = parts.split_last() else {
                    // An empty conjunction is true, an empty disjunction false.
                    let target = if is_and { t } else { f };
                    self.jump(op::JEQ, 0, target, target);
                    return Ok(());
                };
                for part in first {
                    let next = self.label();
                    if is_and {
                        self.cond(part, Target::Label(next), f)?;
                    } else {
                        self.cond(part, t, Target::Label(next))?;
                    }
                    self.place(next);
                }
                self.cond(last, t, f)?;
            }
        }
        Ok(())
    }

    fn relation(&mut self, r: &Relation, t: Target, f: Target) -> Result<(), TooComplex> {
        // `x & m != 0` and `x & m == 0` are single JSET tests.
        if let (Arith::Bin(BinOp::And, x, mask), Arith::Const(0), RelOp::Ne | RelOp::Eq) =
            (&r.lhs, &r.rhs, r.op)
        {
            if let Arith::Const(mask) = **mask {
                self.arith(x, 0)?;
                let (jt, jf) = if r.op == RelOp::Ne { (t, f) } else { (f, t) };
                self.jump(op::JSET, mask, jt, jf);
                return Ok(());
            }
        }
        let (code, swap) = match r.op {
            RelOp::Eq => (op::JEQ, false),
            RelOp::Ne => (op::JEQ, true),
            RelOp::Gt => (op::JGT, false),
            RelOp::Ge => (op::JGE, false),
            RelOp::Lt => (op::JGE, true),
            RelOp::Le => (op::JGT, true),
        };
        let (jt, jf) = if swap { (f, t) } else { (t, f) };
        match &r.rhs {
            Arith::Const(k) => {
                self.arith(&r.lhs, 0)?;
                self.jump(code, *k, jt, jf);
            }
            rhs => {
                self.arith(rhs, 0)?;
                self.emit(op::ST, 0);
                self.arith(&r.lhs, 1)?;
                self.emit(op::LDX_MEM, 0);
                self.jump(code | op::SRC_X, 0, jt, jf);
            }
        }
        Ok(())
    }

    /// Leaves the value in A; scratch words from `depth` on are free to use.
    fn arith(&mut self, a: &Arith, depth: usize) -> Result<(), TooComplex> {
        match a {
            Arith::Const(k) => self.emit(op::LD_IMM, *k),
            Arith::Len => self.emit(op::LD_LEN, 0),
            Arith::Load(Load { base: Base::Frame, offset, size }) => {
                let code = match size {
                    4 => op::LD_ABS_W,
                    2 => op::LD_ABS_H,
                    _ => op::LD_ABS_B,
                };
                self.load_frame(code, *offset, *size);
            }
            Arith::Load(Load { base: Base::Ipv4Payload(ip), offset, size }) => {
                self.emit(op::LDX_MSH, *ip);
                let code = match size {
                    4 => op::LD_IND_W,
                    2 => op::LD_IND_H,
                    _ => op::LD_IND_B,
                };
                self.emit(code, ip + offset);
            }
            Arith::Bin(bin, l, r) => {
                let code = match bin {
                    BinOp::Add => op::ADD,
                    BinOp::Sub => op::SUB,
                    BinOp::Mul => op::MUL,
                    BinOp::Div => op::DIV,
                    BinOp::Mod => op::MOD,
                    BinOp::And => op::AND,
                    BinOp::Or => op::OR,
                    BinOp::Xor => op::XOR,
                    BinOp::Shl => op::LSH,
                    BinOp::Shr => op::RSH,
                };
                if let Arith::Const(k) = **r {
                    self.arith(l, depth)?;
                    self.emit(code, k);
                } else {
                    if depth >= SCRATCH_WORDS {
                        return Err(TooComplex("arithmetic nested too deeply".into()));
                    }
                    self.arith(r, depth)?;
                    self.emit(op::ST, depth as u32);
                    self.arith(l, depth + 1)?;
                    self.emit(op::LDX_MEM, depth as u32);
                    self.emit(code | op::SRC_X, 0);
                }
            }
        }
        Ok(())
    }

    /// Resolves labels into forward offsets, appending the two return instructions.
    fn finish(self) -> Result<Vec<FilterInsn>, TooComplex> {
        let accept = self.code.len();
        let reject = accept + 1;
        let total = reject + 1;
        if total > MAX_FILTER_INSNS as usize {
            return Err(TooComplex(format!("{total} instructions, the limit is {MAX_FILTER_INSNS}")));
        }
        let resolve = |from: usize, target: Target| -> Result<u8, TooComplex> {
            let to = match target {
                Target::Accept => accept,
                Target::Reject => reject,
                Target::Label(l) => self.labels[l].expect("every label is placed"),
            };
            u8::try_from(to - from - 1).map_err(|_| {
                TooComplex(format!("a jump spans {} instructions, the limit is 255", to - from - 1))
            })
        };
        let mut program = Vec::with_capacity(total);
        for (i, pending) in self.code.iter().enumerate() {
            let mut insn = pending.insn;
            if insn.code & 0x07 == 0x05 {
                insn.jt = resolve(i, pending.jt)?;
                insn.jf = resolve(i, pending.jf)?;
            }
            program.push(insn);
        }
        program.push(FilterInsn { code: op::RET, jt: 0, jf: 0, k: 262_144 });
        program.push(FilterInsn { code: op::RET, jt: 0, jf: 0, k: 0 });
        Ok(program)
    }
}

/// Compiles a condition into a filter program.
pub fn compile(cond: &Cond) -> Result<Vec<FilterInsn>, TooComplex> {
    let mut emitter = Emitter::default();
    emitter.cond(cond, Target::Accept, Target::Reject)?;
    emitter.finish()
}
