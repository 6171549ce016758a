//! The command-line face of the library's enums: the name and help of each value, as the
//! options take them and `--help` and the man pages list them. The library's types know
//! nothing of clap.
use std::marker::PhantomData;

use capture_daemon::bench::Mode;
use capture_daemon::kernel::{Direction, XdpModeChoice};
use capture_daemon::retrieve::out::Format;
use capture_daemon::session::{CaptureMode, IngressHook};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

/// A library enum offered as an option's values.
pub(crate) trait Choice: Copy + Send + Sync + 'static {
    /// Each value with its name on the command line and its help.
    const CHOICES: &'static [(Self, &'static str, &'static str)];

    /// The value's name on the command line.
    fn name(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::CHOICES.iter().find(|(value, ..)| *value == self).map_or("", |(_, name, _)| name)
    }
}

impl Choice for Direction {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (Direction::In, "in", "What arrives (XDP, or TC ingress with --ingress-hook tc)"),
        (Direction::Out, "out", "What the host sends (TC egress)"),
        (Direction::Both, "both", "Both"),
    ];
}

impl Choice for XdpModeChoice {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (XdpModeChoice::Auto, "auto", "Native, falling back to generic when the driver has no XDP support"),
        (XdpModeChoice::Native, "native", "In the driver (fast; needs driver support)"),
        (XdpModeChoice::Generic, "generic", "In the kernel stack after the skb is built (works everywhere)"),
    ];
}

impl Choice for CaptureMode {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (
            CaptureMode::Ring,
            "ring",
            "Copy each packet into a BPF ring buffer; packets continue to the host as usual",
        ),
        (
            CaptureMode::Afxdp,
            "afxdp",
            "Redirect packets into AF_XDP sockets, one per receive queue. Packets do NOT continue to the \
             host stack: for dedicated mirror (SPAN/TAP) ports only",
        ),
    ];
}

impl Choice for IngressHook {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (IngressHook::Xdp, "xdp", "XDP: in the driver, before the kernel builds an skb (fastest)"),
        (IngressHook::Tc, "tc", "TC ingress: as the host stack receives them, after GRO (works without XDP)"),
    ];
}

impl Choice for Format {
    const CHOICES: &'static [(Self, &'static str, &'static str)] =
        &[(Format::Pcap, "pcap", "Classic pcap"), (Format::Pcapng, "pcapng", "pcapng")];
}

impl Choice for Mode {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (Mode::Ring, "ring", "ringcap through the BPF ring buffer (`--mode ring`)"),
        (Mode::Afxdp, "afxdp", "ringcap through AF_XDP sockets (`--mode afxdp`)"),
        (Mode::Tcpdump, "tcpdump", "`tcpdump -w`, the peer"),
    ];
}

/// Parses an option's value into the [`Choice`] `T` it names.
#[derive(Clone)]
pub(crate) struct ChoiceParser<T>(PhantomData<T>);

/// The value parser of an option that takes a `T`.
pub(crate) fn choice<T: Choice>() -> ChoiceParser<T> {
    ChoiceParser(PhantomData)
}

impl<T: Choice> ChoiceParser<T> {
    fn values() -> impl Iterator<Item = PossibleValue> {
        T::CHOICES.iter().map(|&(_, name, help)| PossibleValue::new(name).help(help))
    }
}

impl<T: Choice> TypedValueParser for ChoiceParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        // clap's own parser of a list of names gives its own error for a wrong one.
        let name = PossibleValuesParser::new(Self::values()).parse_ref(cmd, arg, value)?;
        Ok(T::CHOICES.iter().find(|(_, listed, _)| *listed == name).expect("a listed name").0)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Self::values()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<T: Choice>() -> Vec<&'static str> {
        T::CHOICES.iter().map(|(_, name, _)| *name).collect()
    }

    #[test]
    fn every_value_has_one_name() {
        assert_eq!(names::<Direction>(), ["in", "out", "both"]);
        assert_eq!(names::<XdpModeChoice>(), ["auto", "native", "generic"]);
        assert_eq!(names::<CaptureMode>(), ["ring", "afxdp"]);
        assert_eq!(names::<IngressHook>(), ["xdp", "tc"]);
        assert_eq!(names::<Format>(), ["pcap", "pcapng"]);
        assert_eq!(names::<Mode>(), ["ring", "afxdp", "tcpdump"]);
        assert_eq!(Direction::Both.name(), "both");
    }
}
