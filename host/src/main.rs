//! `host`: the project's command-line tool.
//!
//! Without arguments it runs `host demo` on its embedded defaults.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use host::demo::{self, DemoConfig};
use host::plugins::{PspChoice, SatpName};

#[derive(Parser)]
#[command(
    name = "host",
    version,
    about = "An ESXi-like host built from the storage-path crates"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate VMs doing verified I/O through the stack (the device claimed by claim rules or
    /// --satp / --psp) and print the claim and esxtop-style statistics.
    Demo(DemoArgs),
    /// Inspect a VMFS volume in disk images: info, ls, stat, cat, map, fsck.
    Vmfs(host::vmfs_cli::VmfsArgs),
    /// Inspect the ESXi LVM devices and volumes in disk images.
    Lvm(host::lvm_cli::LvmArgs),
    /// Inspect a VMDK virtual disk and its snapshot chain: info, cat, map, check.
    Vmdk(host::vmdk_cli::VmdkArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Number of virtual machines.
    #[arg(long, default_value_t = DemoConfig::default().vms)]
    vms: usize,
    /// Outstanding requests per VM.
    #[arg(long, default_value_t = DemoConfig::default().depth)]
    depth: usize,
    /// Simulated seconds to run.
    #[arg(long, default_value_t = DemoConfig::default().duration.as_secs_f64())]
    seconds: f64,
    /// Seed of the workload and the faults; the same seed replays the same run.
    #[arg(long, default_value_t = DemoConfig::default().seed)]
    seed: u64,
    /// LUN size in MiB.
    #[arg(long, default_value_t = DemoConfig::default().lun_mib)]
    lun_mib: u64,
    /// Device service time in microseconds.
    #[arg(long, default_value_t = DemoConfig::default().latency.as_micros() as u64)]
    latency_us: u64,
    /// Percentage of reads.
    #[arg(long, default_value_t = DemoConfig::default().read_percent)]
    read_percent: u8,
    /// How the simulated array presents its LUN.
    #[arg(long, value_enum, default_value_t = ArrayArg::Aa)]
    array: ArrayArg,
    /// Schedule array faults: a flapping link, congestion (BUSY), a controller failure and
    /// restore, then both links of the owning controller down (one silently dropping
    /// commands) and back, which an active/passive SATP survives by trespassing.
    #[arg(long)]
    faults: bool,
    /// The path selection policy, instead of the claim rule's: VMW_PSP_MRU, VMW_PSP_FIXED,
    /// VMW_PSP_RR, DM_PSP_QUEUE_LENGTH, DM_PSP_SERVICE_TIME (or mru, fixed, rr, queue-length,
    /// service-time). VMW_PSP_RR takes options after a colon, comma-separated:
    /// type=default|iops|bytes|latency, iops=N, bytes=N, useANO=0|1, samplingCycles=N,
    /// latencyEvalTime=MS; e.g. VMW_PSP_RR:iops=1, VMW_PSP_RR:type=latency. VMW_PSP_FIXED
    /// takes preferred=PATH, e.g. VMW_PSP_FIXED:preferred=vmhba2:C0:T1:L0 (default: the first
    /// path found).
    #[arg(long, value_name = "NAME[:OPTIONS]")]
    psp: Option<String>,
    /// The storage array type plugin, instead of the claim rule's: VMW_SATP_DEFAULT_AA,
    /// VMW_SATP_ALUA, VMW_SATP_DEFAULT_AP, VMW_SATP_CX; it must fit the array.
    #[arg(long, value_name = "NAME")]
    satp: Option<String>,
    /// Print the report as JSON (with the claim) instead of text.
    #[arg(long)]
    json: bool,
    /// Print the claim rules (as `esxcli storage nmp satp rule list`) and exit.
    #[arg(long)]
    list_rules: bool,
}

/// `--array`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ArrayArg {
    /// Active/active.
    Aa,
    /// Active/passive, trespass by START STOP UNIT (claimed by VMW_SATP_DEFAULT_AP).
    Ap,
    /// Active/passive, CLARiiON-style trespass by MODE SELECT page 0x22 (claimed by
    /// VMW_SATP_CX).
    ApCx,
    /// ALUA (active/optimized and active/non-optimized port groups).
    Alua,
}

impl Default for DemoArgs {
    fn default() -> Self {
        let d = DemoConfig::default();
        Self {
            vms: d.vms,
            depth: d.depth,
            seconds: d.duration.as_secs_f64(),
            seed: d.seed,
            lun_mib: d.lun_mib,
            latency_us: d.latency.as_micros() as u64,
            read_percent: d.read_percent,
            array: ArrayArg::Aa,
            faults: d.faults,
            psp: None,
            satp: None,
            json: false,
            list_rules: false,
        }
    }
}

fn run_demo(args: DemoArgs) -> Result<bool, String> {
    if args.list_rules {
        print!("{}", host::plugins::render_rules());
        return Ok(true);
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0) {
        return Err("--seconds must be between 0 and 3600".into());
    }
    if args.read_percent > 100 {
        return Err("--read-percent must be at most 100".into());
    }
    let config = DemoConfig {
        vms: args.vms,
        depth: args.depth,
        duration: Duration::from_secs_f64(args.seconds),
        seed: args.seed,
        lun_mib: args.lun_mib,
        latency: Duration::from_micros(args.latency_us),
        read_percent: args.read_percent,
        array: match args.array {
            ArrayArg::Aa => demo::ArrayKind::ActiveActive,
            ArrayArg::Ap => demo::ArrayKind::ActivePassive,
            ArrayArg::ApCx => demo::ArrayKind::ActivePassiveCx,
            ArrayArg::Alua => demo::ArrayKind::Alua,
        },
        faults: args.faults,
        satp: args.satp.as_deref().map(SatpName::parse).transpose()?,
        psp: args.psp.as_deref().map(PspChoice::parse).transpose()?,
    };
    let started = std::time::Instant::now();
    let report = demo::run(&config)?;
    let wall = started.elapsed();
    let ios: u64 = report.vms.iter().map(|v| v.reads + v.writes).sum();
    let per_second = ios as f64 / wall.as_secs_f64().max(f64::MIN_POSITIVE);
    if args.json {
        let mut value = demo::to_json(&config, &report);
        value["wall_seconds"] = serde_json::json!(wall.as_secs_f64());
        let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", demo::render(&config, &report));
        println!(
            "wall time {:.3} s ({per_second:.0} simulated I/Os per wall second)",
            wall.as_secs_f64(),
        );
    }
    Ok(report.is_clean())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Demo(DemoArgs::default())) {
        Command::Demo(args) => run_demo(args),
        Command::Vmfs(args) => host::vmfs_cli::run(args).map(|()| true),
        Command::Lvm(args) => host::lvm_cli::run(args).map(|()| true),
        // `check` reports what it found itself; exit 1 without the demo's message.
        Command::Vmdk(args) => match host::vmdk_cli::run(args) {
            Ok(false) => return ExitCode::FAILURE,
            other => other,
        },
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("host: the run found data mismatches or exactly-once violations");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("host: error: {message}");
            ExitCode::from(2)
        }
    }
}
