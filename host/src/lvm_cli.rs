//! `host lvm info`: the LVM devices and volumes in disk images, as
//! `esxcli storage vmfs extent list` and `vmkfstools -P` would show them.

use block::{MemAddr, MemoryRegions};
use clap::{Args, Subcommand};
use lvm::DeviceStatus;
use serde_json::{Value, json};

use crate::vmfs_cli::DeviceArgs;
use crate::volumes::{open_devices, scan_devices, status_text};

const META_ADDR: MemAddr = MemAddr(0x1_0000_0000);
const META_LEN: u32 = 64 * 1024;

/// `host lvm`.
#[derive(Args)]
pub struct LvmArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LvmCommand,
}

/// The `host lvm` subcommands.
#[derive(Subcommand)]
pub enum LvmCommand {
    /// Every device's LVM header and every volume the devices make up, with its extents.
    Info(DeviceArgs),
}

/// Runs `host lvm`.
pub fn run(args: LvmArgs) -> Result<(), String> {
    match args.command {
        LvmCommand::Info(args) => info(&args),
    }
}

fn info(args: &DeviceArgs) -> Result<(), String> {
    let mut devices = open_devices(&args.devices)?;
    let mut meta = vec![0u8; META_LEN as usize];
    let mut memory = MemoryRegions::<1>::new();
    memory
        .add(META_ADDR, &mut meta)
        .map_err(|e| e.to_string())?;
    let scan = scan_devices(&mut devices, &mut memory, META_ADDR, META_LEN)?;

    let device_json: Vec<Value> = args
        .devices
        .iter()
        .zip(&scan.devices)
        .map(|(path, status)| {
            let status = match status {
                DeviceStatus::NoHeader => json!({"lvm": false}),
                DeviceStatus::Lvm {
                    volumes,
                    identity_matches,
                } => {
                    json!({"lvm": true, "volumes": volumes, "identity_matches": identity_matches})
                }
                DeviceStatus::Invalid(e) => json!({"lvm": true, "error": e.to_string()}),
            };
            json!({"path": path.display().to_string(), "status": status})
        })
        .collect();
    let volume_json: Vec<Value> = scan
        .volumes
        .iter()
        .map(|v| {
            json!({
                "name": v.name.as_str(),
                "uuid": v.uuid.to_string(),
                "version": v.version,
                "size_bytes": v.logical_size,
                "generation": v.generation,
                "status": status_text(v),
                "complete": v.is_complete(),
                "snapshot": v.snapshot,
                "expected_members": v.expected_members,
                "members": v.members.iter().map(|m| json!({
                    "path": args.devices[m.device].display().to_string(),
                    "device_uuid": m.header.device_uuid.to_string(),
                    "capacity_bytes": m.capacity_bytes,
                    "data_offset": m.header.data_offset,
                    "block_size": m.block_size,
                })).collect::<Vec<_>>(),
                "device_names": v.device_names.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
                "extents": v.extents.iter().map(|e| json!({
                    "volume_offset": e.logical_offset,
                    "member": e.member,
                    "device_offset": e.physical_offset,
                    "length": e.length,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    if args.json {
        let text =
            serde_json::to_string_pretty(&json!({"devices": device_json, "volumes": volume_json}))
                .map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    for (path, status) in args.devices.iter().zip(&scan.devices) {
        let text = match status {
            DeviceStatus::NoHeader => "no LVM header".to_string(),
            DeviceStatus::Lvm { volumes, .. } => format!("LVM device, {volumes} volume(s)"),
            DeviceStatus::Invalid(e) => format!("unusable LVM header: {e}"),
        };
        println!("device {}: {text}", path.display());
    }
    for v in scan.volumes.iter() {
        println!();
        println!(
            "volume   {}",
            v.name.as_str().unwrap_or("(unreadable name)")
        );
        println!("uuid     {}", v.uuid);
        println!("version  LVM {}", v.version);
        println!(
            "size     {} bytes ({} MiB)",
            v.logical_size,
            v.logical_size >> 20
        );
        println!("status   {}", status_text(v));
        println!("devices  {} of {}", v.members.len(), v.expected_members);
        for (i, m) in v.members.iter().enumerate() {
            let recorded = v
                .device_names
                .get(i)
                .and_then(|n| n.as_str())
                .unwrap_or("-");
            println!(
                "  [{i}] {}  uuid {}  {} bytes, data at {:#x}  (recorded name {recorded})",
                args.devices[m.device].display(),
                m.header.device_uuid,
                m.capacity_bytes,
                m.header.data_offset
            );
        }
        println!("extents  (volume offset -> member, device offset, length)");
        for e in v.extents.iter() {
            println!(
                "  {:#014x} -> [{}] {:#014x}  {} MiB",
                e.logical_offset,
                e.member,
                e.physical_offset,
                e.length >> 20
            );
        }
    }
    Ok(())
}
