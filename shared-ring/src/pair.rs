//! The two rings of one adapter: requests from the driver to the device, completions back.

use core::mem::{MaybeUninit, align_of, offset_of, size_of};

use crate::consumer::Consumer;
use crate::error::{AlreadyClaimed, LayoutError};
use crate::producer::Producer;
use crate::ring::Ring;

/// The request ring and the completion ring of one adapter, as PVSCSI has: the driver (guest)
/// produces requests of type `Req` and consumes completions of type `Cmp`; the device (host)
/// does the opposite. `#[repr(C)]`: the request ring at offset 0, the completion ring at
/// [`RingPair::COMPLETIONS_OFFSET`], each with its own header (see [`crate::layout`]).
///
/// The number of requests the driver keeps outstanding must not exceed `CN`, so that the
/// device can always post their completions; [`RingPair::MAX_OUTSTANDING`] is `min(RN, CN)`.
///
/// ```
/// use shared_ring::RingPair;
///
/// #[derive(Debug, Clone, Copy)]
/// struct Request { tag: u32, lba: u64 }
/// #[derive(Debug, Clone, Copy)]
/// struct Completion { tag: u32, status: u8 }
///
/// static ADAPTER: RingPair<Request, Completion, 32, 32> = RingPair::new();
/// let (mut driver, mut device) = ADAPTER.split().unwrap();
///
/// let _ = driver.requests.push(Request { tag: 1, lba: 8 }).unwrap();
/// let request = device.requests.pop().unwrap();
/// let _ = device.completions.push(Completion { tag: request.tag, status: 0 }).unwrap();
/// assert_eq!(driver.completions.pop().unwrap().tag, 1);
/// ```
#[repr(C)]
pub struct RingPair<Req: Copy, Cmp: Copy, const RN: usize, const CN: usize> {
    /// Driver to device.
    pub requests: Ring<Req, RN>,
    /// Device to driver.
    pub completions: Ring<Cmp, CN>,
}

/// The driver's ends: it submits requests and reaps completions.
#[derive(Debug)]
pub struct DriverEnd<'a, Req: Copy, Cmp: Copy, const RN: usize, const CN: usize> {
    /// Submits requests.
    pub requests: Producer<'a, Req, RN>,
    /// Reaps completions.
    pub completions: Consumer<'a, Cmp, CN>,
}

/// The device's ends: it takes requests and posts completions.
#[derive(Debug)]
pub struct DeviceEnd<'a, Req: Copy, Cmp: Copy, const RN: usize, const CN: usize> {
    /// Takes requests.
    pub requests: Consumer<'a, Req, RN>,
    /// Posts completions.
    pub completions: Producer<'a, Cmp, CN>,
}

impl<Req: Copy, Cmp: Copy, const RN: usize, const CN: usize> RingPair<Req, Cmp, RN, CN> {
    /// The size in bytes of the pair.
    pub const SIZE: usize = size_of::<Self>();
    /// The byte offset of the completion ring.
    pub const COMPLETIONS_OFFSET: usize = offset_of!(Self, completions);
    /// How many requests may be outstanding so that every completion fits: `min(RN, CN)`.
    pub const MAX_OUTSTANDING: usize = if RN < CN { RN } else { CN };

    /// A new pair of empty rings, usable as the initialiser of a `static`.
    #[cfg(not(loom))]
    #[must_use]
    pub const fn new() -> Self {
        Self {
            requests: Ring::new(),
            completions: Ring::new(),
        }
    }

    /// Initialises an empty pair in storage the caller owns and returns it.
    pub fn init_in(storage: &mut MaybeUninit<Self>) -> &mut Self {
        let ptr = storage.as_mut_ptr();
        // SAFETY: the field pointers are derived from a valid, exclusive `&mut MaybeUninit<Self>`
        // and `repr(C)` places each ring, aligned, at its field offset.
        unsafe {
            Ring::init_in(&mut *(&raw mut (*ptr).requests).cast::<MaybeUninit<Ring<Req, RN>>>());
            Ring::init_in(&mut *(&raw mut (*ptr).completions).cast::<MaybeUninit<Ring<Cmp, CN>>>());
        }
        // SAFETY: both rings are initialised, so the pair is.
        unsafe { &mut *ptr }
    }

    /// Creates an empty pair in a raw region; the peer attaches with [`RingPair::attach_raw`].
    ///
    /// # Errors
    /// [`LayoutError::TooSmall`] or [`LayoutError::Misaligned`].
    ///
    /// # Safety
    /// The contract of [`Ring::init_raw`], for [`RingPair::SIZE`] bytes.
    pub unsafe fn init_raw<'a>(region: *mut u8, len: usize) -> Result<&'a Self, LayoutError> {
        Self::check_region(region, len)?;
        // SAFETY: the region holds the pair (checked), so it holds each ring at its offset; the
        // rest is the caller's contract.
        unsafe {
            Ring::<Req, RN>::init_raw(region, Self::COMPLETIONS_OFFSET)?;
            Ring::<Cmp, CN>::init_raw(
                region.add(Self::COMPLETIONS_OFFSET),
                len - Self::COMPLETIONS_OFFSET,
            )?;
            Ok(&*region.cast::<Self>())
        }
    }

    /// Attaches to a pair that [`RingPair::init_raw`] created, checking both headers.
    ///
    /// # Errors
    /// The first [`LayoutError`] of either ring.
    ///
    /// # Safety
    /// The contract of [`Ring::attach_raw`], for [`RingPair::SIZE`] bytes.
    pub unsafe fn attach_raw<'a>(region: *const u8, len: usize) -> Result<&'a Self, LayoutError> {
        Self::check_region(region, len)?;
        // SAFETY: as in `init_raw`; `attach_raw` validates each header.
        unsafe {
            Ring::<Req, RN>::attach_raw(region, Self::COMPLETIONS_OFFSET)?;
            Ring::<Cmp, CN>::attach_raw(
                region.add(Self::COMPLETIONS_OFFSET),
                len - Self::COMPLETIONS_OFFSET,
            )?;
            Ok(&*region.cast::<Self>())
        }
    }

    fn check_region(region: *const u8, len: usize) -> Result<(), LayoutError> {
        if len < Self::SIZE {
            return Err(LayoutError::TooSmall {
                needed: Self::SIZE,
                len,
            });
        }
        if region.is_null() || !(region as usize).is_multiple_of(align_of::<Self>()) {
            return Err(LayoutError::Misaligned);
        }
        Ok(())
    }

    /// Hands out the driver's and the device's ends.
    ///
    /// # Errors
    /// [`AlreadyClaimed`] if any end is out; then none is handed out.
    #[allow(clippy::type_complexity, reason = "two plain end types")]
    pub fn split(
        &self,
    ) -> Result<
        (
            DriverEnd<'_, Req, Cmp, RN, CN>,
            DeviceEnd<'_, Req, Cmp, RN, CN>,
        ),
        AlreadyClaimed,
    > {
        let (req_tx, req_rx) = self.requests.split()?;
        let (cmp_tx, cmp_rx) = self.completions.split()?;
        Ok((
            DriverEnd {
                requests: req_tx,
                completions: cmp_rx,
            },
            DeviceEnd {
                requests: req_rx,
                completions: cmp_tx,
            },
        ))
    }

    /// Hands out the driver's ends alone (in the guest's address space).
    ///
    /// # Errors
    /// [`AlreadyClaimed`] if either is out; then none is handed out.
    pub fn driver_end(&self) -> Result<DriverEnd<'_, Req, Cmp, RN, CN>, AlreadyClaimed> {
        let requests = self.requests.producer()?;
        let completions = self.completions.consumer()?;
        Ok(DriverEnd {
            requests,
            completions,
        })
    }

    /// Hands out the device's ends alone (in the host's address space).
    ///
    /// # Errors
    /// [`AlreadyClaimed`] if either is out; then none is handed out.
    pub fn device_end(&self) -> Result<DeviceEnd<'_, Req, Cmp, RN, CN>, AlreadyClaimed> {
        let requests = self.requests.consumer()?;
        let completions = self.completions.producer()?;
        Ok(DeviceEnd {
            requests,
            completions,
        })
    }
}

#[cfg(not(loom))]
impl<Req: Copy, Cmp: Copy, const RN: usize, const CN: usize> Default
    for RingPair<Req, Cmp, RN, CN>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<Req: Copy, Cmp: Copy, const RN: usize, const CN: usize> core::fmt::Debug
    for RingPair<Req, Cmp, RN, CN>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RingPair")
            .field("requests", &self.requests)
            .field("completions", &self.completions)
            .finish()
    }
}
