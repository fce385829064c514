//! The multipathing plugins `host demo` claims its device with: the built-in claim rule table,
//! the SATP and PSP names the command line takes, and the enums that hand psa's [`Satp`] and
//! [`Psp`] traits to the real plugins of the `satp` and `psp` crates.
//!
//! # Claim rules
//!
//! [`CLAIM_RULES`] is the demo's `esxcli storage nmp satp rule list`; `psa::claim` takes the
//! first rule that matches the device's INQUIRY vendor and model (and whether it reports ALUA
//! support, TPGS), with the rule's PSP options (`--psp-option`; the ALUA rule's round robin
//! with `iops=1` is what storage vendors commonly recommend for their ALUA arrays), or else
//! its default: `VMW_SATP_ALUA` with `VMW_PSP_MRU` for a device with ALUA support,
//! `VMW_SATP_DEFAULT_AA` with `VMW_PSP_FIXED` for any other.
//!
//! ```text
//! Name                 Vendor  Model     Claim Options  Default PSP   PSP Options  Description
//! VMW_SATP_CX          ESXSIM  DEMO CX   tpgs_off       VMW_PSP_MRU                active/passive, trespass by MODE SELECT page 0x22 (CLARiiON-style)
//! VMW_SATP_DEFAULT_AP  ESXSIM  DEMO AP   tpgs_off       VMW_PSP_MRU                active/passive, trespass by START STOP UNIT
//! VMW_SATP_ALUA        ESXSIM  DEMO ALUA tpgs_on        VMW_PSP_RR    iops=1       ALUA, round robin switching paths every I/O (a vendor's recommended rule)
//! VMW_SATP_ALUA                          tpgs_on        VMW_PSP_MRU                default: no rule matched
//! VMW_SATP_DEFAULT_AA                    tpgs_off       VMW_PSP_FIXED              default: no rule matched
//! ```
//!
//! (what [`render_rules`] prints, and `host demo --list-rules`).
//!
//! The simulated array answers INQUIRY with vendor `ESXSIM` and the model of its kind:
//! `DEMO AA` (active/active: no rule, the default), `DEMO AP` (active/passive, START STOP
//! UNIT trespass), `DEMO CX` (active/passive, MODE SELECT page 0x22 trespass), `DEMO ALUA`
//! (TPGS set: the ALUA rule, round robin over the active/optimized paths). An ALUA device of
//! another model gets the ALUA default.
//!
//! # Plugin names
//!
//! SATPs ([`SatpName`]): `VMW_SATP_DEFAULT_AA`, `VMW_SATP_ALUA`, `VMW_SATP_DEFAULT_AP` (satp's
//! `ActivePassive` with the START STOP UNIT trespass), `VMW_SATP_CX` (`ActivePassive` with the
//! long CLARiiON trespass, MODE SELECT (10) page 0x22, as for CX / AX arrays).
//!
//! PSPs ([`PspChoice::parse`]): `NAME[:OPTION=VALUE[,OPTION=VALUE...]]`, names and options
//! case-insensitive:
//!
//! | name | plugin | options |
//! |---|---|---|
//! | `VMW_PSP_MRU` (`mru`) | `psp::Mru` | none |
//! | `VMW_PSP_FIXED` (`fixed`) | `psp::Fixed`, preferring the first path found | `preferred=vmhbaA:Cc:Tt:Ll` (`esxcli storage nmp psp fixed deviceconfig set --path`): a path of the device, refused if it has none of that name |
//! | `VMW_PSP_RR` (`rr`) | `psp::RoundRobin` | `type=default` (switch after 1000 commands or 10 MiB), `type=iops` with `iops=N`, `type=bytes` with `bytes=N`, `type=latency` (with `samplingCycles=N`, `latencyEvalTime=MS`), `useANO=0/1`; `iops=N` alone means `type=iops`, `bytes=N` alone `type=bytes` |
//! | `DM_PSP_QUEUE_LENGTH` (`queue-length`) | `psp::QueueLength` | none |
//! | `DM_PSP_SERVICE_TIME` (`service-time`) | `psp::ServiceTime` | none |
//!
//! For example `VMW_PSP_RR:iops=1`, `VMW_PSP_RR:type=latency`, `rr:useANO=1`,
//! `fixed:preferred=vmhba2:C0:T1:L0`.

use core::time::Duration;

use block::Instant;
use psa::{
    Activation, ActivationOutcome, ClaimRule, IoHint, Path, PathId, PathName, Psp, Satp,
    SatpAction, SatpCommand,
};
use psp::{Fixed, LatencyConfig, Mru, QueueLength, RoundRobin, RrConfig, ServiceTime};
use satp::{ActivePassive, ActivePassiveConfig, Alua, DefaultAa, TrespassStyle};
use scsi::{AccessState, CommandCompletion};

/// Paths a demo device has at most (the PSPs that keep per-path arrays are sized for it).
pub const PLUGIN_PATHS: usize = 4;

/// The INQUIRY vendor of the simulated array.
pub const VENDOR: &str = "ESXSIM";
/// The INQUIRY model of the simulated active/active array.
pub const MODEL_AA: &str = "DEMO AA";
/// The INQUIRY model of the simulated active/passive array that trespasses on START STOP UNIT.
pub const MODEL_AP: &str = "DEMO AP";
/// The INQUIRY model of the simulated active/passive array that trespasses on MODE SELECT
/// page 0x22 (CLARiiON-style).
pub const MODEL_CX: &str = "DEMO CX";
/// The INQUIRY model of the simulated ALUA array.
pub const MODEL_ALUA: &str = "DEMO ALUA";

/// `VMW_PSP_MRU`.
pub const VMW_PSP_MRU: &str = "VMW_PSP_MRU";
/// `VMW_PSP_FIXED`.
pub const VMW_PSP_FIXED: &str = "VMW_PSP_FIXED";
/// `VMW_PSP_RR`.
pub const VMW_PSP_RR: &str = "VMW_PSP_RR";
/// dm-multipath's queue-length selector.
pub const DM_PSP_QUEUE_LENGTH: &str = "DM_PSP_QUEUE_LENGTH";
/// dm-multipath's service-time selector.
pub const DM_PSP_SERVICE_TIME: &str = "DM_PSP_SERVICE_TIME";

/// The demo's claim rules, in the order `psa::claim` tries them (see the module
/// documentation for the table as esxcli would list it).
pub const CLAIM_RULES: [ClaimRule; 3] = [
    ClaimRule {
        vendor: Some(VENDOR),
        model: Some(MODEL_CX),
        alua: Some(false),
        satp: satp::VMW_SATP_CX,
        psp: VMW_PSP_MRU,
        psp_options: None,
    },
    ClaimRule {
        vendor: Some(VENDOR),
        model: Some(MODEL_AP),
        alua: Some(false),
        satp: satp::VMW_SATP_DEFAULT_AP,
        psp: VMW_PSP_MRU,
        psp_options: None,
    },
    ClaimRule {
        vendor: Some(VENDOR),
        model: Some(MODEL_ALUA),
        alua: Some(true),
        satp: satp::VMW_SATP_ALUA,
        psp: VMW_PSP_RR,
        psp_options: Some("iops=1"),
    },
];

/// What each rule of [`CLAIM_RULES`] is for (the `Description` column).
pub const CLAIM_RULE_DESCRIPTIONS: [&str; CLAIM_RULES.len()] = [
    "active/passive, trespass by MODE SELECT page 0x22 (CLARiiON-style)",
    "active/passive, trespass by START STOP UNIT",
    "ALUA, round robin switching paths every I/O (a vendor's recommended rule)",
];

/// The claim rule table as `esxcli storage nmp satp rule list` shows it, with the defaults
/// `psa::claim` falls back to.
pub fn render_rules() -> String {
    let mut out = format!(
        "{:<20} {:<7} {:<9} {:<14} {:<13} {:<12} {}\n",
        "Name", "Vendor", "Model", "Claim Options", "Default PSP", "PSP Options", "Description"
    );
    for (rule, description) in CLAIM_RULES.iter().zip(CLAIM_RULE_DESCRIPTIONS) {
        let options = match rule.alua {
            Some(true) => "tpgs_on",
            Some(false) => "tpgs_off",
            None => "",
        };
        out.push_str(&format!(
            "{:<20} {:<7} {:<9} {:<14} {:<13} {:<12} {}\n",
            rule.satp,
            rule.vendor.unwrap_or(""),
            rule.model.unwrap_or(""),
            options,
            rule.psp,
            rule.psp_options.unwrap_or(""),
            description
        ));
    }
    for ((satp, psp), options) in [
        (psa::discover::DEFAULT_ALUA_CLAIM, "tpgs_on"),
        (psa::discover::DEFAULT_CLAIM, "tpgs_off"),
    ] {
        out.push_str(&format!(
            "{:<20} {:<7} {:<9} {:<14} {:<13} {:<12} {}\n",
            satp, "", "", options, psp, "", "default: no rule matched"
        ));
    }
    out
}

/// An SATP the demo can claim a device with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SatpName {
    /// `VMW_SATP_DEFAULT_AA`: psa's `DefaultAa`.
    DefaultAa,
    /// `VMW_SATP_ALUA`: satp's `Alua` (explicit ALUA allowed, follow-over).
    Alua,
    /// `VMW_SATP_DEFAULT_AP`: satp's `ActivePassive` with the START STOP UNIT trespass.
    DefaultAp,
    /// `VMW_SATP_CX`: satp's `ActivePassive` with the long CLARiiON trespass (MODE SELECT (10)
    /// page 0x22).
    Cx,
}

impl SatpName {
    /// Every SATP, in the order help texts list them.
    pub const ALL: [SatpName; 4] = [
        SatpName::DefaultAa,
        SatpName::Alua,
        SatpName::DefaultAp,
        SatpName::Cx,
    ];

    /// The ESXi name.
    pub const fn name(self) -> &'static str {
        match self {
            SatpName::DefaultAa => satp::VMW_SATP_DEFAULT_AA,
            SatpName::Alua => satp::VMW_SATP_ALUA,
            SatpName::DefaultAp => satp::VMW_SATP_DEFAULT_AP,
            SatpName::Cx => satp::VMW_SATP_CX,
        }
    }

    /// The SATP named `name` (case-insensitive), or an error listing the known names.
    pub fn parse(name: &str) -> Result<Self, String> {
        let name = name.trim();
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!(
                    "unknown SATP {name:?}: known are {}",
                    Self::ALL.map(SatpName::name).join(", ")
                )
            })
    }
}

/// A PSP and its configuration, as `--psp` names it (see [`PspChoice::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PspChoice {
    /// `VMW_PSP_MRU`.
    Mru,
    /// `VMW_PSP_FIXED`, preferring the named path (`None`: the first path found).
    Fixed(Option<PathName>),
    /// `VMW_PSP_RR` with its tunables.
    RoundRobin(RrConfig),
    /// dm-multipath's queue-length.
    QueueLength,
    /// dm-multipath's service-time.
    ServiceTime,
}

impl PspChoice {
    /// The known names, as help texts list them.
    pub const NAMES: [&'static str; 5] = [
        VMW_PSP_MRU,
        VMW_PSP_FIXED,
        VMW_PSP_RR,
        DM_PSP_QUEUE_LENGTH,
        DM_PSP_SERVICE_TIME,
    ];

    /// Parses `NAME[:OPTION=VALUE[,OPTION=VALUE...]]` (the table in the module
    /// documentation). Unknown names and options, options of a PSP that takes none, zero or
    /// malformed numbers and contradictory options are refused with a message saying why.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let (name, options) = match spec.split_once(':') {
            Some((name, options)) => (name.trim(), Some(options)),
            None => (spec, None),
        };
        let is = |full: &str, short: &str| {
            name.eq_ignore_ascii_case(full) || name.eq_ignore_ascii_case(short)
        };
        let simple = if is(VMW_PSP_MRU, "mru") {
            PspChoice::Mru
        } else if is(VMW_PSP_FIXED, "fixed") {
            return parse_fixed_options(options.unwrap_or("")).map(PspChoice::Fixed);
        } else if is(DM_PSP_QUEUE_LENGTH, "queue-length") {
            PspChoice::QueueLength
        } else if is(DM_PSP_SERVICE_TIME, "service-time") {
            PspChoice::ServiceTime
        } else if is(VMW_PSP_RR, "rr") {
            return Ok(PspChoice::RoundRobin(parse_rr_options(
                options.unwrap_or(""),
            )?));
        } else {
            return Err(format!(
                "unknown PSP {name:?}: known are {} (and VMW_PSP_RR:OPTIONS, see `host demo --help`)",
                Self::NAMES.join(", ")
            ));
        };
        match options {
            Some(o) if !o.trim().is_empty() => Err(format!(
                "{} takes no options (got {o:?}); only VMW_PSP_RR and VMW_PSP_FIXED do",
                simple.name()
            )),
            _ => Ok(simple),
        }
    }

    /// The PSP's name, as `esxcli storage nmp device list` shows it.
    pub const fn name(&self) -> &'static str {
        match self {
            PspChoice::Mru => VMW_PSP_MRU,
            PspChoice::Fixed(_) => VMW_PSP_FIXED,
            PspChoice::RoundRobin(_) => VMW_PSP_RR,
            PspChoice::QueueLength => DM_PSP_QUEUE_LENGTH,
            PspChoice::ServiceTime => DM_PSP_SERVICE_TIME,
        }
    }

    /// The configuration part of `Path Selection Policy Device Config` (the round robin's
    /// tunables; empty for the other PSPs).
    pub fn config(&self) -> String {
        let PspChoice::RoundRobin(rr) = self else {
            return String::new();
        };
        let ano = u8::from(rr.use_ano);
        match rr.latency {
            Some(l) => format!(
                "policy=latency,samplingCycles={},latencyEvalTime={},useANO={ano}",
                l.sampling_cycles,
                l.eval_time.as_millis()
            ),
            None if rr.bytes == u64::MAX => format!("policy=iops,iops={},useANO={ano}", rr.iops),
            None if rr.iops == u32::MAX => format!("policy=bytes,bytes={},useANO={ano}", rr.bytes),
            None => format!("policy=rr,iops={},bytes={},useANO={ano}", rr.iops, rr.bytes),
        }
    }
}

/// The `type` of a round robin (`esxcli storage nmp psp roundrobin deviceconfig set --type`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RrType {
    Default,
    Iops,
    Bytes,
    Latency,
}

/// `preferred=vmhbaA:Cc:Tt:Ll`, or nothing.
fn parse_fixed_options(options: &str) -> Result<Option<PathName>, String> {
    let mut preferred = None;
    for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| format!("VMW_PSP_FIXED option {option:?} is not OPTION=VALUE"))?;
        if !key.trim().eq_ignore_ascii_case("preferred") {
            return Err(format!(
                "unknown VMW_PSP_FIXED option {:?}: the only one is preferred=vmhbaA:Cc:Tt:Ll",
                key.trim()
            ));
        }
        if preferred.is_some() {
            return Err("VMW_PSP_FIXED: preferred= given twice".to_string());
        }
        preferred = Some(parse_path_name(value.trim())?);
    }
    Ok(preferred)
}

/// `vmhbaA:Cc:Tt:Ll`, as esxcli prints runtime path names.
pub fn parse_path_name(text: &str) -> Result<PathName, String> {
    let bad = || format!("{text:?} is not a path name like vmhba1:C0:T0:L0");
    let mut parts = text.split(':');
    let mut field = |prefix: &str| -> Result<u64, String> {
        let part = parts.next().ok_or_else(bad)?;
        let digits = part
            .get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(prefix))
            .map(|_| &part[prefix.len()..])
            .ok_or_else(bad)?;
        digits.parse::<u64>().map_err(|_| bad())
    };
    let adapter = field("vmhba")?;
    let channel = field("C")?;
    let target = field("T")?;
    let lun = field("L")?;
    if parts.next().is_some() {
        return Err(bad());
    }
    let small = |n: u64| u16::try_from(n).map_err(|_| bad());
    Ok(PathName {
        adapter: small(adapter)?,
        channel: small(channel)?,
        target: small(target)?,
        lun,
    })
}

fn parse_rr_options(options: &str) -> Result<RrConfig, String> {
    let mut kind = None;
    let (mut iops, mut bytes, mut use_ano) = (None, None, false);
    let (mut cycles, mut eval_ms) = (None, None);
    for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (key, value) = option
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("VMW_PSP_RR option {option:?} is not KEY=VALUE"))?;
        let number = |what: &str| -> Result<u64, String> {
            match value.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "VMW_PSP_RR {what} must be a whole number of at least 1, not {value:?}"
                )),
            }
        };
        match key.to_ascii_lowercase().as_str() {
            "type" | "policy" => {
                kind = Some(match value.to_ascii_lowercase().as_str() {
                    "default" | "rr" => RrType::Default,
                    "iops" => RrType::Iops,
                    "bytes" => RrType::Bytes,
                    "latency" => RrType::Latency,
                    _ => {
                        return Err(format!(
                            "VMW_PSP_RR type {value:?} is unknown: default, iops, bytes or latency"
                        ));
                    }
                });
            }
            "iops" => {
                let n = number("iops")?;
                iops = Some(u32::try_from(n).map_err(|_| "VMW_PSP_RR iops is too large")?);
            }
            "bytes" => bytes = Some(number("bytes")?),
            "useano" => {
                use_ano = match value.to_ascii_lowercase().as_str() {
                    "1" | "true" | "on" => true,
                    "0" | "false" | "off" => false,
                    _ => return Err(format!("VMW_PSP_RR useANO must be 0 or 1, not {value:?}")),
                }
            }
            "samplingcycles" => {
                let n = number("samplingCycles")?;
                cycles =
                    Some(u32::try_from(n).map_err(|_| "VMW_PSP_RR samplingCycles is too large")?);
            }
            "latencyevaltime" => eval_ms = Some(number("latencyEvalTime")?),
            _ => {
                return Err(format!(
                    "unknown VMW_PSP_RR option {key:?}: type, iops, bytes, useANO, samplingCycles, latencyEvalTime"
                ));
            }
        }
    }
    let latency_keys = cycles.is_some() || eval_ms.is_some();
    let kind = kind.unwrap_or(match (iops, bytes) {
        _ if latency_keys => RrType::Latency,
        (Some(_), None) => RrType::Iops,
        (None, Some(_)) => RrType::Bytes,
        _ => RrType::Default,
    });
    let default = RrConfig::default();
    let refuse =
        |what: &str, kind: &str| Err(format!("VMW_PSP_RR {what} does not go with type={kind}"));
    if kind != RrType::Latency && latency_keys {
        return refuse("samplingCycles / latencyEvalTime", "iops, bytes or default");
    }
    let config = match kind {
        RrType::Default => RrConfig {
            iops: iops.unwrap_or(default.iops),
            bytes: bytes.unwrap_or(default.bytes),
            use_ano,
            latency: None,
        },
        RrType::Iops => {
            if bytes.is_some() {
                return refuse("bytes", "iops");
            }
            RrConfig {
                iops: iops.unwrap_or(default.iops),
                bytes: u64::MAX,
                use_ano,
                latency: None,
            }
        }
        RrType::Bytes => {
            if iops.is_some() {
                return refuse("iops", "bytes");
            }
            RrConfig {
                iops: u32::MAX,
                bytes: bytes.unwrap_or(default.bytes),
                use_ano,
                latency: None,
            }
        }
        RrType::Latency => {
            if iops.is_some() || bytes.is_some() {
                return refuse("iops / bytes", "latency");
            }
            let l = LatencyConfig::default();
            RrConfig {
                latency: Some(LatencyConfig {
                    sampling_cycles: cycles.unwrap_or(l.sampling_cycles),
                    eval_time: eval_ms.map_or(l.eval_time, Duration::from_millis),
                }),
                use_ano,
                ..default
            }
        }
    };
    Ok(config)
}

/// The SATP of a demo device: one of the `satp` crate's plugins, chosen at run time by the
/// claim. Every [`Satp`] method, the provided ones included, is handed to the plugin (a
/// clippy `missing_trait_methods` check on the impl makes a method added to the trait with a
/// default body fail the build until it is handed on here too).
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per device, built once at claim time; boxing would only add an indirection per call"
)]
pub enum DemoSatp {
    /// `VMW_SATP_DEFAULT_AA`.
    DefaultAa(DefaultAa),
    /// `VMW_SATP_ALUA`.
    Alua(Alua<4>),
    /// `VMW_SATP_DEFAULT_AP` or `VMW_SATP_CX` (by its trespass style).
    ActivePassive(ActivePassive),
}

impl DemoSatp {
    /// The plugin `name` stands for, with its default tunables.
    pub fn new(name: SatpName) -> Self {
        match name {
            SatpName::DefaultAa => DemoSatp::DefaultAa(DefaultAa::default()),
            SatpName::Alua => DemoSatp::Alua(Alua::default()),
            SatpName::DefaultAp => DemoSatp::ActivePassive(ActivePassive::default()),
            SatpName::Cx => DemoSatp::ActivePassive(ActivePassive::new(ActivePassiveConfig {
                style: TrespassStyle::ModeSelect10Page22,
                ..ActivePassiveConfig::default()
            })),
        }
    }

    /// `Storage Array Type Device Config`, as esxcli shows it: for ALUA the group states last
    /// read and the SATP's counters, for active/passive the trespass command and trespasses
    /// done.
    pub fn device_config(&self) -> String {
        match self {
            DemoSatp::DefaultAa(_) => String::from("{}"),
            DemoSatp::Alua(alua) => {
                let mut groups = String::new();
                for (id, state) in alua.groups() {
                    let state = match state {
                        AccessState::ActiveOptimized => "AO",
                        AccessState::ActiveNonOptimized => "ANO",
                        AccessState::Standby => "STBY",
                        AccessState::Unavailable => "UNAV",
                        AccessState::Offline => "OFFL",
                        AccessState::Transitioning => "TRANS",
                    };
                    groups.push_str(&format!("{{TPG_id={id},TPG_state={state}}}"));
                }
                format!(
                    "{{implicit_support=on;explicit_support=on;explicit_allow=on;alua_followover=on;rtpg_reads={};followed={};stpg_sent={};{groups}}}",
                    alua.reads(),
                    alua.followed(),
                    alua.activations()
                )
            }
            DemoSatp::ActivePassive(ap) => {
                let command = match ap.config().style {
                    TrespassStyle::StartStopUnit => "START STOP UNIT",
                    TrespassStyle::ModeSelect10Page22 => "MODE SELECT(10) page 0x22",
                    TrespassStyle::ModeSelectPage22 => "MODE SELECT(6) page 0x22",
                };
                format!("{{trespass={command};trespasses={}}}", ap.trespasses())
            }
        }
    }

    /// Trespasses the SATP completed (0 for SATPs that do not trespass).
    pub fn trespasses(&self) -> u32 {
        match self {
            DemoSatp::ActivePassive(ap) => ap.trespasses(),
            _ => 0,
        }
    }
}

macro_rules! satp_each {
    ($satp:expr, $plugin:ident => $call:expr) => {
        match $satp {
            DemoSatp::DefaultAa($plugin) => $call,
            DemoSatp::Alua($plugin) => $call,
            DemoSatp::ActivePassive($plugin) => $call,
        }
    };
}

#[deny(clippy::missing_trait_methods)]
impl Satp for DemoSatp {
    fn name(&self) -> &'static str {
        satp_each!(self, p => p.name())
    }

    fn evaluate(
        &mut self,
        now: Instant,
        path: PathId,
        paths: &mut [Path],
        completion: &CommandCompletion,
    ) -> SatpAction {
        satp_each!(self, p => p.evaluate(now, path, paths, completion))
    }

    fn path_ok(&mut self, now: Instant, path: PathId, paths: &mut [Path]) {
        satp_each!(self, p => p.path_ok(now, path, paths))
    }

    fn activation(&mut self, now: Instant, paths: &[Path]) -> Option<Activation> {
        satp_each!(self, p => p.activation(now, paths))
    }

    fn activation_done(
        &mut self,
        now: Instant,
        activation: &Activation,
        paths: &mut [Path],
        outcome: ActivationOutcome,
    ) {
        satp_each!(self, p => p.activation_done(now, activation, paths, outcome))
    }

    fn poll_command(&mut self, now: Instant, paths: &[Path]) -> Option<SatpCommand> {
        satp_each!(self, p => p.poll_command(now, paths))
    }

    fn command_done(
        &mut self,
        now: Instant,
        command: &SatpCommand,
        paths: &mut [Path],
        completion: &CommandCompletion,
        data_in: &[u8],
    ) {
        satp_each!(self, p => p.command_done(now, command, paths, completion, data_in))
    }

    fn next_event(&self) -> Option<Instant> {
        satp_each!(self, p => p.next_event())
    }
}

/// The PSP of a demo device: one of the `psp` crate's plugins, chosen at run time by the
/// claim or `--psp`. Every [`Psp`] method, the provided ones included, is handed to the
/// plugin (checked by clippy's `missing_trait_methods`, as for [`DemoSatp`]).
#[derive(Debug, Clone)]
pub enum DemoPsp {
    /// `VMW_PSP_MRU`.
    Mru(Mru),
    /// `VMW_PSP_FIXED`.
    Fixed(Fixed),
    /// `VMW_PSP_RR`.
    RoundRobin(RoundRobin<PLUGIN_PATHS>),
    /// `DM_PSP_QUEUE_LENGTH`.
    QueueLength(QueueLength),
    /// `DM_PSP_SERVICE_TIME`.
    ServiceTime(ServiceTime<PLUGIN_PATHS>),
}

impl DemoPsp {
    /// The plugin `choice` stands for, over a device with `paths` (in path-table order).
    ///
    /// # Errors
    /// A preferred path the device does not have.
    pub fn new(choice: &PspChoice, paths: &[Path]) -> Result<Self, String> {
        Ok(match choice {
            PspChoice::Mru => DemoPsp::Mru(Mru::new()),
            PspChoice::Fixed(None) => DemoPsp::Fixed(Fixed::new(None)),
            PspChoice::Fixed(Some(name)) => {
                let index = paths.iter().position(|p| p.name == *name).ok_or_else(|| {
                    let known: Vec<String> = paths.iter().map(|p| p.name.to_string()).collect();
                    format!(
                        "VMW_PSP_FIXED: the device has no path {name}; its paths are {}",
                        known.join(", ")
                    )
                })?;
                let id = u16::try_from(index).map_err(|_| "too many paths".to_string())?;
                DemoPsp::Fixed(Fixed::new(Some(PathId(id))))
            }
            PspChoice::RoundRobin(config) => DemoPsp::RoundRobin(RoundRobin::new(*config)),
            PspChoice::QueueLength => DemoPsp::QueueLength(QueueLength::new()),
            PspChoice::ServiceTime => DemoPsp::ServiceTime(ServiceTime::new()),
        })
    }

    /// The path the PSP sends I/O to, where it keeps one (MRU's current path, FIXED's
    /// preferred path).
    pub fn path_in_use(&self) -> Option<(&'static str, PathId)> {
        match self {
            DemoPsp::Mru(mru) => mru.current().map(|p| ("current", p)),
            DemoPsp::Fixed(fixed) => fixed.preferred().map(|p| ("preferred", p)),
            _ => None,
        }
    }
}

macro_rules! psp_each {
    ($psp:expr, $plugin:ident => $call:expr) => {
        match $psp {
            DemoPsp::Mru($plugin) => $call,
            DemoPsp::Fixed($plugin) => $call,
            DemoPsp::RoundRobin($plugin) => $call,
            DemoPsp::QueueLength($plugin) => $call,
            DemoPsp::ServiceTime($plugin) => $call,
        }
    };
}

#[deny(clippy::missing_trait_methods)]
impl Psp for DemoPsp {
    fn name(&self) -> &'static str {
        psp_each!(self, p => p.name())
    }

    #[inline]
    fn select(&mut self, now: Instant, paths: &[Path], io: &IoHint) -> Option<PathId> {
        psp_each!(self, p => p.select(now, paths, io))
    }

    fn completed(&mut self, now: Instant, path: PathId, latency: Duration, ok: bool) {
        psp_each!(self, p => p.completed(now, path, latency, ok))
    }

    fn paths_changed(&mut self, paths: &[Path]) {
        psp_each!(self, p => p.paths_changed(paths))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_takes_a_preferred_path_by_its_runtime_name() {
        let name = PathName {
            adapter: 2,
            channel: 0,
            target: 1,
            lun: 0,
        };
        assert_eq!(
            PspChoice::parse("VMW_PSP_FIXED:preferred=vmhba2:C0:T1:L0"),
            Ok(PspChoice::Fixed(Some(name)))
        );
        assert_eq!(
            PspChoice::parse("fixed: PREFERRED = VMHBA2:c0:t1:l0 "),
            Ok(PspChoice::Fixed(Some(name)))
        );
        for bad in [
            "fixed:preferred=",
            "fixed:preferred=vmhba2:C0:T1",
            "fixed:preferred=vmhba2:C0:T1:L0:X",
            "fixed:preferred=hba2:C0:T1:L0",
            "fixed:preferred=vmhba99999999:C0:T1:L0",
            "fixed:preferred=vmhba2:C0:T1:L-1",
            "fixed:path=vmhba2:C0:T1:L0",
            "fixed:preferred=vmhba2:C0:T1:L0,preferred=vmhba1:C0:T0:L0",
            "fixed:iops=1",
        ] {
            assert!(PspChoice::parse(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(
            parse_path_name("vmhba1:C0:T0:L0").unwrap().to_string(),
            "vmhba1:C0:T0:L0"
        );
    }

    #[test]
    fn psp_names_and_options_parse() {
        assert_eq!(PspChoice::parse("VMW_PSP_MRU"), Ok(PspChoice::Mru));
        assert_eq!(PspChoice::parse("fixed"), Ok(PspChoice::Fixed(None)));
        assert_eq!(
            PspChoice::parse("dm_psp_queue_length"),
            Ok(PspChoice::QueueLength)
        );
        assert_eq!(PspChoice::parse("service-time"), Ok(PspChoice::ServiceTime));
        assert_eq!(
            PspChoice::parse("VMW_PSP_RR"),
            Ok(PspChoice::RoundRobin(RrConfig::default()))
        );
        let rr = |spec| match PspChoice::parse(spec) {
            Ok(PspChoice::RoundRobin(c)) => c,
            other => panic!("{spec}: {other:?}"),
        };
        let iops = rr("VMW_PSP_RR:iops=1");
        assert_eq!((iops.iops, iops.bytes, iops.latency), (1, u64::MAX, None));
        assert_eq!(rr("rr:type=iops,iops=3").iops, 3);
        let bytes = rr("VMW_PSP_RR:type=bytes,bytes=65536");
        assert_eq!((bytes.iops, bytes.bytes), (u32::MAX, 65536));
        let latency = rr("VMW_PSP_RR:type=latency,samplingCycles=8,latencyEvalTime=500");
        assert_eq!(
            latency.latency,
            Some(LatencyConfig {
                sampling_cycles: 8,
                eval_time: Duration::from_millis(500)
            })
        );
        assert!(rr("VMW_PSP_RR:useANO=1").use_ano);
        assert!(rr("VMW_PSP_RR:policy=latency").latency.is_some());
        // The device config string names what was chosen.
        assert_eq!(
            PspChoice::parse("VMW_PSP_RR").map(|c| c.config()),
            Ok("policy=rr,iops=1000,bytes=10485760,useANO=0".into())
        );
        assert_eq!(
            PspChoice::parse("VMW_PSP_RR:iops=1,useANO=1").map(|c| c.config()),
            Ok("policy=iops,iops=1,useANO=1".into())
        );
        assert_eq!(
            PspChoice::parse("VMW_PSP_RR:type=latency").map(|c| c.config()),
            Ok("policy=latency,samplingCycles=16,latencyEvalTime=180000,useANO=0".into())
        );
    }

    #[test]
    fn bad_psp_specs_are_refused_with_a_reason() {
        for (spec, why) in [
            ("VMW_PSP_NONE", "unknown PSP"),
            ("", "unknown PSP"),
            ("VMW_PSP_MRU:iops=1", "takes no options"),
            ("VMW_PSP_RR:iops=0", "at least 1"),
            ("VMW_PSP_RR:iops=-1", "at least 1"),
            ("VMW_PSP_RR:iops=99999999999", "too large"),
            ("VMW_PSP_RR:iops", "KEY=VALUE"),
            ("VMW_PSP_RR:speed=9", "unknown VMW_PSP_RR option"),
            ("VMW_PSP_RR:type=fastest", "unknown"),
            ("VMW_PSP_RR:type=latency,iops=5", "does not go with"),
            ("VMW_PSP_RR:type=iops,bytes=5", "does not go with"),
            ("VMW_PSP_RR:type=bytes,iops=5", "does not go with"),
            ("VMW_PSP_RR:iops=5,samplingCycles=2", "does not go with"),
            ("VMW_PSP_RR:useANO=maybe", "0 or 1"),
        ] {
            let err = PspChoice::parse(spec).expect_err(spec);
            assert!(err.contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn the_rule_list_is_the_documented_one() {
        let documented: String = include_str!("plugins.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! Name "))
            .take_while(|l| *l != "//! ```")
            .map(|l| format!("{}\n", l.trim_start_matches("//! ")))
            .collect();
        assert_eq!(render_rules(), documented);
    }

    #[test]
    fn satp_names_parse() {
        for s in SatpName::ALL {
            assert_eq!(SatpName::parse(s.name()), Ok(s));
            assert_eq!(SatpName::parse(&s.name().to_lowercase()), Ok(s));
            assert_eq!(DemoSatp::new(s).name(), s.name());
        }
        assert!(SatpName::parse("VMW_SATP_SYMM").is_err());
    }

    #[test]
    fn plugins_carry_their_names() {
        for spec in PspChoice::NAMES {
            let choice = PspChoice::parse(spec).unwrap();
            assert_eq!(DemoPsp::new(&choice, &[]).unwrap().name(), spec);
            assert_eq!(choice.name(), spec);
        }
    }
}
