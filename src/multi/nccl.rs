//! [`Communicator`]: NCCL collectives over the GPUs of a [`DeviceSet`], driven from one thread
//! with grouped calls (`ncclGroupStart`/`ncclGroupEnd`), on `DeviceBuffer`s of f32, f16 and bf16.

use super::reduce::check_rank_buffers;
use super::DeviceSet;
use crate::error::{Error, Result};
use crate::memory::access::Access;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceSlice, DeviceSliceMut};
use crate::ops::{Dtype, Float};
use crate::stream::Stream;
use cudarc::nccl::{result, sys};
use std::sync::OnceLock;

/// The reduction of a collective.
///
/// Every rank's largest value (e.g. of its gradients' magnitudes), on every rank:
///
/// ```no_run
/// use hikube_gpu::multi::{Communicator, DeviceSet, ReduceOp};
/// use hikube_gpu::DeviceBuffer;
/// let set = DeviceSet::all()?;
/// let comm = Communicator::new(&set)?;
/// let local = (0..set.len())
///     .map(|r| DeviceBuffer::from_slice(comm.stream(r)?, &[r as f32 + 0.5]))
///     .collect::<Result<Vec<_>, _>>()?;
/// let mut global = (0..set.len())
///     .map(|r| DeviceBuffer::<f32>::zeroed(comm.stream(r)?, 1))
///     .collect::<Result<Vec<_>, _>>()?;
/// comm.all_reduce(&local, &mut global, ReduceOp::Max)?;
/// for (r, max) in global.iter().enumerate() {
///     assert_eq!(max.to_vec(comm.stream(r)?)?, [set.len() as f32 - 0.5]);
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum.
    #[default]
    Sum,
    /// Product.
    Prod,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Mean over the ranks.
    Avg,
}

impl ReduceOp {
    fn nccl(self) -> sys::ncclRedOp_t {
        match self {
            ReduceOp::Sum => sys::ncclRedOp_t::ncclSum,
            ReduceOp::Prod => sys::ncclRedOp_t::ncclProd,
            ReduceOp::Max => sys::ncclRedOp_t::ncclMax,
            ReduceOp::Min => sys::ncclRedOp_t::ncclMin,
            ReduceOp::Avg => sys::ncclRedOp_t::ncclAvg,
        }
    }
}

fn datatype<T: Float>() -> sys::ncclDataType_t {
    match T::DTYPE {
        Dtype::F32 => sys::ncclDataType_t::ncclFloat32,
        Dtype::F16 => sys::ncclDataType_t::ncclFloat16,
        Dtype::Bf16 => sys::ncclDataType_t::ncclBfloat16,
    }
}

/// Maps an NCCL failure of `call` into [`Error::Nccl`], with NCCL's text for the code.
pub(crate) fn nccl_error(call: &'static str) -> impl Fn(result::NcclError) -> Error {
    move |e| {
        // SAFETY: ncclGetErrorString returns a pointer to a static, NUL-terminated string for
        // any code.
        let reason = unsafe {
            let p = sys::ncclGetErrorString(e.0);
            if p.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Error::Nccl {
            call,
            code: e.0 as u32,
            reason,
        }
    }
}

/// [`Error::NoNccl`] unless `libnccl` can be loaded.
fn check_nccl() -> Result<()> {
    // SAFETY: only tries to open the library by its names.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::NoNccl {
            reason: "libnccl.so could not be loaded (install NCCL 2, e.g. the nvidia-nccl \
                     Python package, and put its lib/ on LD_LIBRARY_PATH)"
                .into(),
        })
    }
}

/// The NCCL version, e.g. 22703 for 2.27.3; [`Error::NoNccl`] without the library.
///
/// ```
/// use hikube_gpu::multi::nccl_version;
/// use hikube_gpu::Error;
/// match nccl_version() {
///     Ok(v) => println!("NCCL {}.{}.{}", v / 10000, v / 100 % 100, v % 100),
///     Err(Error::NoNccl { reason }) => println!("multi-GPU without NCCL: {reason}"),
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn nccl_version() -> Result<i32> {
    check_nccl()?;
    result::get_nccl_version().map_err(nccl_error("ncclGetVersion"))
}

/// One NCCL communicator per rank of a [`DeviceSet`] (`ncclCommInitAll`), each with its own
/// stream. Collectives take one buffer per rank and are issued for all ranks at once, grouped,
/// on the communicator's streams: each rank's operation starts after the work queued so far on
/// that stream (order other streams with [`Stream::wait`]) and after the last write to its
/// buffers (the buffers' own events), and later work on that stream sees the result.
///
/// Element types are checked by the compiler (every rank takes the same `T`); lengths, devices
/// and the number of buffers are checked at run time ([`Error::RankLengthMismatch`],
/// [`Error::WrongDevice`], [`Error::RankCount`]), before anything is queued.
///
/// If NCCL fails while a collective is being issued (inside the group, after some ranks'
/// operations are queued), the ranks already queued would wait forever for the others: the
/// communicator then aborts its NCCL communicators (`ncclCommAbort`), returns the NCCL error,
/// and every later collective returns [`Error::CommunicatorAborted`]. Create a new one.
///
/// ```no_run
/// use hikube_gpu::multi::{Communicator, DeviceSet, ReduceOp};
/// use hikube_gpu::DeviceBuffer;
/// let set = DeviceSet::all()?;
/// let comm = Communicator::new(&set)?;
/// let mut grads = (0..set.len())
///     .map(|r| DeviceBuffer::from_slice(comm.stream(r)?, &vec![r as f32; 1 << 20]))
///     .collect::<Result<Vec<_>, _>>()?;
/// comm.all_reduce_in_place(&mut grads, ReduceOp::Avg)?;
/// comm.synchronize()?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Communicator {
    set: DeviceSet,
    comms: Vec<sys::ncclComm_t>,
    streams: Vec<Stream>,
    /// Set, to the NCCL call that failed, once the communicators were aborted: the handles are
    /// gone, no call may use them again.
    aborted: OnceLock<&'static str>,
}

impl std::fmt::Debug for Communicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Communicator")
            .field("ranks", &self.comms.len())
            .field("aborted", &self.aborted.get())
            .finish()
    }
}

impl Drop for Communicator {
    fn drop(&mut self) {
        if self.aborted.get().is_some() {
            // ncclCommAbort already freed the communicators.
            return;
        }
        // Destroying waits for the communicator's outstanding work.
        for &comm in &self.comms {
            // SAFETY: `comm` came from ncclCommInitAll and is destroyed once, here.
            if let Err(e) = unsafe { result::comm_destroy(comm) } {
                // Drop cannot return it; say it rather than lose it.
                eprintln!("hikube-gpu: {}", nccl_error("ncclCommDestroy")(e));
            }
        }
    }
}

/// Each rank's (send, receive) device pointers, and the accesses to finish after the group.
type SendRecv<'a> = (Vec<(u64, u64)>, Vec<Access<'a>>);

/// Device pointers of a send and a receive buffer per rank, taken on each rank's stream (which
/// waits for the buffers' earlier uses), with the accesses to finish after the group.
fn pointers<'a, T: bytemuck::Pod>(
    streams: &'a [Stream],
    send: &[DeviceSlice<'_, T>],
    recv: &mut [DeviceSliceMut<'_, T>],
) -> Result<SendRecv<'a>> {
    let mut ptrs = Vec::with_capacity(send.len());
    let mut accesses = Vec::with_capacity(send.len());
    for ((stream, s), d) in streams.iter().zip(send).zip(recv.iter_mut()) {
        let mut acc = Access::eager(stream, "an NCCL collective")?;
        ptrs.push((acc.read(s)?.addr(), acc.write(d)?.addr()));
        accesses.push(acc);
    }
    Ok((ptrs, accesses))
}

/// [`pointers`] for in-place operations: one buffer per rank.
fn pointers_in_place<'a, T: bytemuck::Pod>(
    streams: &'a [Stream],
    bufs: &mut [DeviceSliceMut<'_, T>],
) -> Result<(Vec<u64>, Vec<Access<'a>>)> {
    let mut ptrs = Vec::with_capacity(bufs.len());
    let mut accesses = Vec::with_capacity(bufs.len());
    for (stream, b) in streams.iter().zip(bufs.iter_mut()) {
        let mut acc = Access::eager(stream, "an NCCL collective")?;
        ptrs.push(acc.write(b)?.addr());
        accesses.push(acc);
    }
    Ok((ptrs, accesses))
}

/// Finishes the accesses of a group (each notes its rank's stream).
fn finish_all(accesses: Vec<Access<'_>>) -> Result<()> {
    accesses.into_iter().try_for_each(Access::finish)
}

// Every `r` indexed below is a rank, below the world size: `comms`, `streams` and the pointers
// hold one entry per rank (`check_ranks`, `check_rank_buffers`).
#[allow(clippy::indexing_slicing)] // reason: ranks index per-rank vectors of world-size length
impl Communicator {
    /// Creates the communicators (one per rank, `ncclCommInitAll`) and a stream per rank.
    /// Every rank must own its GPU ([`Error::DuplicateDevice`]); [`Error::NoNccl`] without the
    /// library.
    pub fn new(set: &DeviceSet) -> Result<Communicator> {
        check_nccl()?;
        set.check_distinct()?;
        let n = set.len();
        let ordinals: Vec<i32> = set.devices().iter().map(|d| d.ordinal() as i32).collect();
        let mut comms = vec![std::ptr::null_mut(); n];
        // SAFETY: `comms` has room for `n` handles and `ordinals` holds `n` valid, distinct
        // device ordinals (checked above).
        unsafe { result::comm_init_all(comms.as_mut_ptr(), n as i32, ordinals.as_ptr()) }
            .map_err(nccl_error("ncclCommInitAll"))?;
        let streams = match set.new_streams() {
            Ok(s) => s,
            Err(e) => {
                for &comm in &comms {
                    // SAFETY: just created, destroyed once.
                    let _ = unsafe { result::comm_destroy(comm) };
                }
                return Err(e);
            }
        };
        Ok(Communicator {
            set: set.clone(),
            comms,
            streams,
            aborted: OnceLock::new(),
        })
    }

    /// [`Error::CommunicatorAborted`] once an earlier collective failed part-way.
    fn check_usable(&self) -> Result<()> {
        match self.aborted.get() {
            Some(&call) => Err(Error::CommunicatorAborted { call }),
            None => Ok(()),
        }
    }

    /// Whether an earlier collective failed part-way and the NCCL communicators were aborted
    /// (every collective now returns [`Error::CommunicatorAborted`]).
    pub fn is_aborted(&self) -> bool {
        self.aborted.get().is_some()
    }

    /// Runs `issue` for every rank between ncclGroupStart and ncclGroupEnd. Everything that
    /// can be checked is checked by the callers before this; if NCCL still fails inside the
    /// group (issuing rank `k`, or ending the group), the operations queued for the other ranks
    /// would wait forever for their peers, so the communicators are aborted. The callers drop
    /// the buffers' `SyncOnDrop` records only after this returns, so that the buffers' events
    /// are recorded after the operations are really queued.
    fn grouped(&self, issue: impl FnMut(usize) -> Result<()>) -> Result<()> {
        self.check_usable()?;
        result::group_start().map_err(nccl_error("ncclGroupStart"))?;
        let issued = (0..self.comms.len()).try_for_each(issue);
        let ended = result::group_end().map_err(nccl_error("ncclGroupEnd"));
        let done = issued.and(ended.map(|_| ()));
        if let Err(e) = &done {
            self.abort(match e {
                Error::Nccl { call, .. } => call,
                _ => "ncclGroupEnd",
            });
        }
        done
    }

    /// Aborts every rank's communicator (once), after a failure inside a group.
    fn abort(&self, call: &'static str) {
        if self.aborted.set(call).is_err() {
            return;
        }
        for &comm in &self.comms {
            // SAFETY: `comm` came from ncclCommInitAll and was neither destroyed nor aborted
            // (`aborted` was unset); setting `aborted` first makes this the last use of it:
            // Drop and every collective check the flag.
            if let Err(e) = unsafe { result::comm_abort(comm) } {
                // The caller returns the first failure; say this one rather than lose it.
                eprintln!("hikube-gpu: {}", nccl_error("ncclCommAbort")(e));
            }
        }
    }

    /// The set the communicator spans.
    pub fn set(&self) -> &DeviceSet {
        &self.set
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.comms.len()
    }

    /// The stream the collectives of `rank` run on.
    pub fn stream(&self, rank: usize) -> Result<&Stream> {
        self.streams.get(rank).ok_or(Error::DeviceIndexOutOfRange {
            index: rank,
            count: self.streams.len(),
        })
    }

    /// The streams, by rank.
    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    /// Waits until every rank's collectives so far have finished.
    pub fn synchronize(&self) -> Result<()> {
        self.streams.iter().try_for_each(Stream::synchronize)
    }

    fn check_sends<T: Float>(&self, send: &[DeviceSlice<'_, T>]) -> Result<usize> {
        self.set.check_ranks(send.len())?;
        let len = send.first().map_or(0, |s| s.len());
        for (rank, (device, s)) in self.set.devices().iter().zip(send).enumerate() {
            device.check_same(s.device())?;
            if s.len() != len {
                return Err(Error::RankLengthMismatch {
                    rank,
                    expected: len,
                    actual: s.len(),
                });
            }
        }
        Ok(len)
    }

    fn check_recvs<T: Float>(&self, recv: &[DeviceSliceMut<'_, T>]) -> Result<usize> {
        let len = check_rank_buffers(&self.set, &self.streams, recv)?;
        Ok(len)
    }

    /// What the collectives from `send` into `recv` share: the views; the usability, rank, device
    /// and length checks, where `count` turns the send and receive lengths into the element
    /// count NCCL takes (or the error for lengths the collective cannot take); nothing to do for
    /// a count of 0; the device pointers, recorded on each rank's stream; and `issue(rank, src,
    /// dst, count)` on every rank in one NCCL group.
    fn send_recv<T: Float>(
        &self,
        send: &[impl AsDeviceSlice<T>],
        recv: &mut [impl AsDeviceSliceMut<T>],
        count: impl FnOnce(usize, usize) -> Result<usize>,
        issue: impl Fn(usize, u64, u64, usize) -> Result<()>,
    ) -> Result<()> {
        let send: Vec<DeviceSlice<'_, T>> = send.iter().map(|s| s.as_device_slice()).collect();
        let mut recv: Vec<DeviceSliceMut<'_, T>> =
            recv.iter_mut().map(|r| r.as_device_slice_mut()).collect();
        self.check_usable()?;
        let sent = self.check_sends(&send)?;
        let received = self.check_recvs(&recv)?;
        let n = count(sent, received)?;
        if n == 0 {
            return Ok(());
        }
        let (ptrs, records) = pointers(&self.streams, &send, &mut recv)?;
        let done = self.grouped(|r| issue(r, ptrs[r].0, ptrs[r].1, n));
        let noted = finish_all(records);
        done.and(noted)
    }

    /// Reduces `send` (one buffer per rank, equal lengths) with `op` into every rank's `recv`
    /// (same length).
    pub fn all_reduce<T: Float>(
        &self,
        send: &[impl AsDeviceSlice<T>],
        recv: &mut [impl AsDeviceSliceMut<T>],
        op: ReduceOp,
    ) -> Result<()> {
        let count = |n: usize, m: usize| {
            if n != m {
                return Err(Error::LengthMismatch {
                    expected: m,
                    actual: n,
                });
            }
            Ok(n)
        };
        self.send_recv(send, recv, count, |r, src, dst, n| {
            // SAFETY: `src` and `dst` address `n` elements of `T` on rank `r`'s device (lengths
            // and devices checked), borrowed until `send_recv` returns, after the group has
            // queued the operation on the rank's stream, which orders later frees after it.
            unsafe {
                result::all_reduce(
                    src as _,
                    dst as _,
                    n,
                    datatype::<T>(),
                    op.nccl(),
                    self.comms[r],
                    self.streams[r].raw.cu_stream() as _,
                )
            }
            .map(|_| ())
            .map_err(nccl_error("ncclAllReduce"))
        })
    }

    /// [`all_reduce`](Self::all_reduce) in place: every rank's `bufs` ends up holding the
    /// reduction.
    pub fn all_reduce_in_place<T: Float>(
        &self,
        bufs: &mut [impl AsDeviceSliceMut<T>],
        op: ReduceOp,
    ) -> Result<()> {
        let mut bufs: Vec<DeviceSliceMut<'_, T>> =
            bufs.iter_mut().map(|r| r.as_device_slice_mut()).collect();
        self.check_usable()?;
        let n = self.check_recvs(&bufs)?;
        if n == 0 {
            return Ok(());
        }
        let (ptrs, records) = pointers_in_place(&self.streams, &mut bufs)?;
        let done = self.grouped(|r| {
            let stream = &self.streams[r].raw;
            let ptr = ptrs[r];
            // SAFETY: `ptr` addresses `n` elements of `T` on rank `r`'s device (checked),
            // borrowed until after the group has queued the operation on `stream`.
            unsafe {
                result::all_reduce(
                    ptr as _,
                    ptr as _,
                    n,
                    datatype::<T>(),
                    op.nccl(),
                    self.comms[r],
                    stream.cu_stream() as _,
                )
            }
            .map(|_| ())
            .map_err(nccl_error("ncclAllReduce"))
        });
        let noted = finish_all(records);
        done.and(noted)
    }

    /// Concatenates every rank's `send` (equal lengths `n`), in rank order, into every rank's
    /// `recv` (`world_size * n` elements).
    pub fn all_gather<T: Float>(
        &self,
        send: &[impl AsDeviceSlice<T>],
        recv: &mut [impl AsDeviceSliceMut<T>],
    ) -> Result<()> {
        let count = |n: usize, m: usize| {
            let want = n.checked_mul(self.world_size()).ok_or(Error::TooLarge {
                what: "all_gather's result (send length × ranks)".into(),
                value: n,
                max: usize::MAX / self.world_size(),
            })?;
            if m != want {
                return Err(Error::LengthMismatch {
                    expected: want,
                    actual: m,
                });
            }
            Ok(n)
        };
        self.send_recv(send, recv, count, |r, src, dst, n| {
            // SAFETY: `src` holds `n` and `dst` `world_size * n` elements of `T` on rank `r`'s
            // device (checked), borrowed until after the group has queued the operation.
            unsafe {
                result::all_gather(
                    src as _,
                    dst as _,
                    n,
                    datatype::<T>(),
                    self.comms[r],
                    self.streams[r].raw.cu_stream() as _,
                )
            }
            .map(|_| ())
            .map_err(nccl_error("ncclAllGather"))
        })
    }

    /// Reduces every rank's `send` (`world_size * n` elements, equal lengths) with `op`, and
    /// leaves block `r` (elements `r*n..(r+1)*n`) of the result in rank `r`'s `recv`
    /// (`n` elements).
    pub fn reduce_scatter<T: Float>(
        &self,
        send: &[impl AsDeviceSlice<T>],
        recv: &mut [impl AsDeviceSliceMut<T>],
        op: ReduceOp,
    ) -> Result<()> {
        let count = |s: usize, n: usize| {
            let want = n.checked_mul(self.world_size()).ok_or(Error::TooLarge {
                what: "reduce_scatter's input (recv length × ranks)".into(),
                value: n,
                max: usize::MAX / self.world_size(),
            })?;
            if s != want {
                return Err(Error::LengthMismatch {
                    expected: want,
                    actual: s,
                });
            }
            Ok(n)
        };
        self.send_recv(send, recv, count, |r, src, dst, n| {
            // SAFETY: `src` holds `world_size * n` and `dst` `n` elements of `T` on rank `r`'s
            // device (checked), borrowed until after the group has queued the operation.
            unsafe {
                result::reduce_scatter(
                    src as _,
                    dst as _,
                    n,
                    datatype::<T>(),
                    op.nccl(),
                    self.comms[r],
                    self.streams[r].raw.cu_stream() as _,
                )
            }
            .map(|_| ())
            .map_err(nccl_error("ncclReduceScatter"))
        })
    }

    /// Copies rank `root`'s buffer into every other rank's (in place, equal lengths).
    pub fn broadcast<T: Float>(
        &self,
        bufs: &mut [impl AsDeviceSliceMut<T>],
        root: usize,
    ) -> Result<()> {
        let mut bufs: Vec<DeviceSliceMut<'_, T>> =
            bufs.iter_mut().map(|r| r.as_device_slice_mut()).collect();
        self.check_usable()?;
        let n = self.check_recvs(&bufs)?;
        if root >= self.world_size() {
            return Err(Error::DeviceIndexOutOfRange {
                index: root,
                count: self.world_size(),
            });
        }
        if n == 0 {
            return Ok(());
        }
        let (ptrs, records) = pointers_in_place(&self.streams, &mut bufs)?;
        let done = self.grouped(|r| {
            let stream = &self.streams[r].raw;
            let ptr = ptrs[r];
            // SAFETY: `ptr` addresses `n` elements of `T` on rank `r`'s device (checked),
            // borrowed until after the group has queued the operation on `stream`.
            unsafe {
                result::broadcast(
                    ptr as _,
                    ptr as _,
                    n,
                    datatype::<T>(),
                    root as i32,
                    self.comms[r],
                    stream.cu_stream() as _,
                )
            }
            .map(|_| ())
            .map_err(nccl_error("ncclBroadcast"))
        });
        let noted = finish_all(records);
        done.and(noted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nccl_failures_are_typed_errors() {
        match check_nccl() {
            // CI and this crate's build machines have no NCCL.
            Err(e) => assert!(matches!(e, Error::NoNccl { .. }), "{e:?}"),
            Ok(()) => {
                let e = nccl_error("ncclAllReduce")(result::NcclError(
                    sys::ncclResult_t::ncclInvalidArgument,
                ));
                assert!(
                    matches!(
                        e,
                        Error::Nccl {
                            call: "ncclAllReduce",
                            code: 4,
                            ..
                        }
                    ),
                    "{e:?}"
                );
                assert!(e
                    .to_string()
                    .starts_with("NCCL ncclAllReduce failed with code 4: "));
            }
        }
    }
}
