//! esxtop-style statistics, from simulated time.

/// Counters of one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PathStats {
    /// Commands completed on the path (CMDS), including failed ones.
    pub commands: u64,
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Commands that failed on the path, unit attentions apart.
    pub errors: u64,
    /// Commands that ended in CHECK CONDITION with UNIT ATTENTION (POWER ON OCCURRED on an
    /// I_T nexus's first command, ASYMMETRIC ACCESS STATE CHANGED, ...): a report of an event
    /// at the target, which the SATP normally retries, counted apart from `errors`.
    pub unit_attentions: u64,
    /// Commands outstanding on the path now (ACTV).
    pub active: u32,
    /// Sum of the device latencies of the commands, nanoseconds.
    pub device_ns: u64,
}

impl PathStats {
    /// DAVG: mean device latency per command, nanoseconds.
    pub fn davg_ns(&self) -> u64 {
        self.device_ns.checked_div(self.commands).unwrap_or(0)
    }

    /// MB read (MiB, as esxtop's MBREAD counts).
    pub fn mb_read(&self) -> u64 {
        self.bytes_read >> 20
    }

    /// MB written.
    pub fn mb_written(&self) -> u64 {
        self.bytes_written >> 20
    }
}

/// Counters and latencies of one device, as esxtop's disk device view shows them.
///
/// Latencies are per completed request, from simulated time: QAVG from acceptance to
/// dispatch by the scheduler; DAVG the time the request's commands spent at the device
/// (summed over retries); KAVG everything else the kernel added (queueing, retry delays, the
/// APD hold), so that GAVG = KAVG + DAVG is the latency the guest saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceStats {
    /// Requests completed (CMDS).
    pub commands: u64,
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
    /// Bytes read successfully.
    pub bytes_read: u64,
    /// Bytes written successfully.
    pub bytes_written: u64,
    /// Requests completed with an error.
    pub failed: u64,
    /// Commands retried (on the same or another path).
    pub retries: u64,
    /// QUEUE FULL / BUSY answers seen.
    pub queue_full: u64,
    /// Activation commands sent (trespass, SET TARGET PORT GROUPS: the SATP's
    /// [`crate::Satp::activation`]).
    pub activations: u64,
    /// Activations that failed (any answer but GOOD, or never sent).
    pub activation_failures: u64,
    /// Sum of queue latencies, nanoseconds.
    pub queue_ns: u64,
    /// Sum of device latencies, nanoseconds.
    pub device_ns: u64,
    /// Sum of guest latencies, nanoseconds.
    pub guest_ns: u64,
    /// The largest guest latency seen, nanoseconds.
    pub guest_ns_max: u64,
}

impl DeviceStats {
    /// QAVG, nanoseconds.
    pub fn qavg_ns(&self) -> u64 {
        self.queue_ns.checked_div(self.commands).unwrap_or(0)
    }

    /// DAVG, nanoseconds.
    pub fn davg_ns(&self) -> u64 {
        self.device_ns.checked_div(self.commands).unwrap_or(0)
    }

    /// GAVG, nanoseconds.
    pub fn gavg_ns(&self) -> u64 {
        self.guest_ns.checked_div(self.commands).unwrap_or(0)
    }

    /// KAVG = GAVG - DAVG, nanoseconds.
    pub fn kavg_ns(&self) -> u64 {
        self.gavg_ns().saturating_sub(self.davg_ns())
    }

    /// MB read.
    pub fn mb_read(&self) -> u64 {
        self.bytes_read >> 20
    }

    /// MB written.
    pub fn mb_written(&self) -> u64 {
        self.bytes_written >> 20
    }
}

/// A snapshot of a device's esxtop line: the counters plus the gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Esxtop {
    /// The counters.
    pub stats: DeviceStats,
    /// Commands at the device now (ACTV).
    pub active: u16,
    /// Requests in the scheduler queue now (QUED).
    pub queued: u16,
    /// The device queue depth now (DQLEN).
    pub queue_depth: u16,
}

impl core::fmt::Display for Esxtop {
    /// One line in the columns of esxtop's disk device view: DQLEN, ACTV, QUED, CMDS, READS,
    /// WRITES, MBREAD, MBWRTN, DAVG, KAVG, GAVG, QAVG (latencies in ms, as esxtop shows them).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ms = |ns: u64| (ns / 1_000_000, (ns % 1_000_000) / 10_000);
        let s = &self.stats;
        let (davg, davg_f) = ms(s.davg_ns());
        let (kavg, kavg_f) = ms(s.kavg_ns());
        let (gavg, gavg_f) = ms(s.gavg_ns());
        let (qavg, qavg_f) = ms(s.qavg_ns());
        write!(
            f,
            "DQLEN {} ACTV {} QUED {} CMDS {} READS {} WRITES {} MBREAD {} MBWRTN {} \
             DAVG {davg}.{davg_f:02} KAVG {kavg}.{kavg_f:02} GAVG {gavg}.{gavg_f:02} QAVG {qavg}.{qavg_f:02}",
            self.queue_depth,
            self.active,
            self.queued,
            s.commands,
            s.reads,
            s.writes,
            s.mb_read(),
            s.mb_written(),
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn esxtop_line_and_averages() {
        let top = Esxtop {
            stats: DeviceStats {
                commands: 4,
                reads: 3,
                writes: 1,
                bytes_read: 3 << 20,
                bytes_written: 1 << 20,
                queue_ns: 4_000_000,
                device_ns: 8_000_000,
                guest_ns: 14_000_000,
                ..DeviceStats::default()
            },
            active: 2,
            queued: 1,
            queue_depth: 32,
        };
        assert_eq!(top.stats.kavg_ns(), 1_500_000);
        assert_eq!(
            top.to_string(),
            "DQLEN 32 ACTV 2 QUED 1 CMDS 4 READS 3 WRITES 1 MBREAD 3 MBWRTN 1 \
             DAVG 2.00 KAVG 1.50 GAVG 3.50 QAVG 1.00"
        );
    }
}
