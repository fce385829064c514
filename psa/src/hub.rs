//! Sharing one transport (an HBA, the simulated array) among the NMP devices of its LUNs.
//!
//! Each device gets a [`HubPort`], itself a [`Transport`]. A port marks the tags of its
//! commands with its index (bits 48..56, which PSA's own tags leave clear), and when it polls
//! the shared transport it keeps the completions of other ports in their stash until they
//! poll. The hub is a `RefCell`, so the ports of one hub live on one thread; a re-entrant call
//! is refused as back-pressure rather than a panic.

use core::cell::RefCell;

use block::{Instant, Memory, Tag};
use scsi::{Command, CommandCompletion, Transport, TransportSubmitError, TransportSubmitErrorKind};

const SHIFT: u32 = 48;
const MASK: u64 = 0xFF << SHIFT;

struct Inner<T, const PORTS: usize, const Q: usize> {
    transport: T,
    stash: [heapless::Deque<CommandCompletion, Q>; PORTS],
    /// Commands of each port at the transport or in its stash: at most `Q`, so a stash never
    /// overflows.
    outstanding: [usize; PORTS],
}

/// A transport shared by up to `PORTS` devices, each with up to `Q` commands outstanding (a
/// port refuses more with `QueueFull`, so the stash of completions never overflows).
pub struct TransportHub<T, const PORTS: usize, const Q: usize> {
    inner: RefCell<Inner<T, PORTS, Q>>,
}

impl<T, const PORTS: usize, const Q: usize> TransportHub<T, PORTS, Q> {
    /// A hub over `transport`.
    pub fn new(transport: T) -> Self {
        Self {
            inner: RefCell::new(Inner {
                transport,
                stash: core::array::from_fn(|_| heapless::Deque::new()),
                outstanding: [0; PORTS],
            }),
        }
    }

    /// The port of device `index` (below `PORTS`, at most 255).
    pub fn port(&self, index: u8) -> Option<HubPort<'_, T, PORTS, Q>> {
        (usize::from(index) < PORTS).then_some(HubPort { hub: self, index })
    }

    /// Runs `f` on the shared transport (to inject faults, read statistics). Returns `None`
    /// if a port is using it right now.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut inner = self.inner.try_borrow_mut().ok()?;
        Some(f(&mut inner.transport))
    }

    /// The transport back.
    pub fn into_inner(self) -> T {
        self.inner.into_inner().transport
    }
}

/// One device's view of a [`TransportHub`].
pub struct HubPort<'h, T, const PORTS: usize, const Q: usize> {
    hub: &'h TransportHub<T, PORTS, Q>,
    index: u8,
}

impl<T, const PORTS: usize, const Q: usize, const SG: usize> Transport<SG>
    for HubPort<'_, T, PORTS, Q>
where
    T: Transport<SG>,
{
    fn submit(
        &mut self,
        now: Instant,
        mut command: Command<SG>,
    ) -> Result<(), TransportSubmitError<SG>> {
        let Ok(mut inner) = self.hub.inner.try_borrow_mut() else {
            return Err(TransportSubmitError {
                kind: TransportSubmitErrorKind::QueueFull,
                command,
            });
        };
        let own = usize::from(self.index);
        if inner.outstanding.get(own).is_none_or(|n| *n >= Q) {
            return Err(TransportSubmitError {
                kind: TransportSubmitErrorKind::QueueFull,
                command,
            });
        }
        let original = command.tag;
        command.tag = Tag((original.0 & !MASK) | (u64::from(self.index) << SHIFT));
        inner.transport.submit(now, command).map_err(|mut e| {
            e.command.tag = original;
            e
        })?;
        inner.outstanding[own] += 1;
        Ok(())
    }

    fn poll(
        &mut self,
        now: Instant,
        memory: &mut dyn Memory,
        done: &mut dyn FnMut(CommandCompletion),
    ) -> Option<Instant> {
        let Ok(mut inner) = self.hub.inner.try_borrow_mut() else {
            return Some(now);
        };
        let inner = &mut *inner;
        let own = usize::from(self.index);
        let stash = &mut inner.stash;
        let outstanding = &mut inner.outstanding;
        let next = inner.transport.poll(now, memory, &mut |mut c| {
            let port = ((c.tag.0 & MASK) >> SHIFT) as usize;
            c.tag = Tag(c.tag.0 & !MASK);
            if port == own {
                outstanding[own] = outstanding[own].saturating_sub(1);
                done(c);
            } else if let Some(queue) = stash.get_mut(port) {
                // A port has at most Q commands outstanding, so its stash has room.
                let _ = queue.push_back(c);
            }
        });
        if let Some(queue) = stash.get_mut(own) {
            let pending = queue.len();
            for _ in 0..pending {
                if let Some(c) = queue.pop_front() {
                    outstanding[own] = outstanding[own].saturating_sub(1);
                    done(c);
                }
            }
        }
        let others_waiting = stash.iter().any(|q| !q.is_empty());
        if others_waiting { Some(now) } else { next }
    }
}

impl<T, const PORTS: usize, const Q: usize> core::fmt::Debug for TransportHub<T, PORTS, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TransportHub")
            .field("ports", &PORTS)
            .finish()
    }
}
