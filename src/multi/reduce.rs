//! [`CopyAllReduce`]: an all-reduce (sum) built from peer copies and `axpy`, for sets where NCCL
//! is absent or two ranks share a GPU (NCCL refuses that). Reduce to rank 0, then copy back:
//! simple and correct, not bandwidth-optimal (NCCL's ring or tree is).

use super::{CopyPath, DeviceSet, PeerCopy};
use crate::error::{Error, Result};
use crate::memory::{AsDeviceSliceMut, DeviceBuffer, DeviceSliceMut};
use crate::ops::{axpy, Float};
use crate::stream::Stream;

/// Checks one stream and one buffer per rank, each buffer on its rank's device, all of the
/// same length; returns that length.
pub(crate) fn check_rank_buffers<T: bytemuck::Pod>(
    set: &DeviceSet,
    streams: &[Stream],
    bufs: &[DeviceSliceMut<'_, T>],
) -> Result<usize> {
    set.check_ranks(streams.len())?;
    set.check_ranks(bufs.len())?;
    let len = bufs.first().map_or(0, |b| b.len());
    for (rank, ((device, stream), buf)) in set.devices().iter().zip(streams).zip(bufs).enumerate() {
        device.check_same(stream.device())?;
        device.check_same(buf.device())?;
        if buf.len() != len {
            return Err(Error::RankLengthMismatch {
                rank,
                expected: len,
                actual: buf.len(),
            });
        }
    }
    Ok(len)
}

/// All-reduce (sum) over the ranks of a [`DeviceSet`] without NCCL: every rank's buffer is
/// copied to rank 0 (peer or staged, as [`PeerCopy`] chooses), added there, and the sum copied
/// back. Runs on the given streams (one per rank), ordered after their work so far; their later
/// work sees the sum.
///
/// ```no_run
/// use hikube_gpu::multi::{CopyAllReduce, DeviceSet};
/// use hikube_gpu::DeviceBuffer;
/// let set = DeviceSet::all()?;
/// let streams = set.new_streams()?;
/// let mut bufs = streams
///     .iter()
///     .map(|s| DeviceBuffer::from_slice(s, &[1.0f32; 1000]))
///     .collect::<Result<Vec<_>, _>>()?;
/// CopyAllReduce::new(&set, 8 << 20)?.all_reduce_sum(&streams, &mut bufs)?;
/// assert_eq!(bufs[0].to_vec(&streams[0])?[0], set.len() as f32);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct CopyAllReduce<T: Float> {
    copier: PeerCopy,
    path: CopyPath,
    /// Rank 0's landing buffer for the other ranks' data.
    tmp: Option<DeviceBuffer<T>>,
}

impl<T: Float> std::fmt::Debug for CopyAllReduce<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyAllReduce")
            .field("copier", &self.copier)
            .field("path", &self.path)
            .finish()
    }
}

impl<T: Float> CopyAllReduce<T> {
    /// A reducer for `set`; staged copies move `chunk_bytes` at a time.
    pub fn new(set: &DeviceSet, chunk_bytes: usize) -> Result<Self> {
        Ok(CopyAllReduce {
            copier: PeerCopy::new(set, chunk_bytes)?,
            path: CopyPath::Auto,
            tmp: None,
        })
    }

    /// Forces the copy path (tests use [`CopyPath::Staged`] and [`CopyPath::Peer`] on one GPU).
    pub fn with_path(mut self, path: CopyPath) -> Self {
        self.path = path;
        self
    }

    /// Sums `bufs` (one per rank, equal lengths) element-wise, in f32, into every one of them.
    #[allow(clippy::indexing_slicing)] // reason: `streams` and `views` hold one entry per rank (checked by check_rank_buffers), and a set has at least one rank
    pub fn all_reduce_sum(
        &mut self,
        streams: &[Stream],
        bufs: &mut [impl AsDeviceSliceMut<T>],
    ) -> Result<()> {
        let mut views: Vec<DeviceSliceMut<'_, T>> =
            bufs.iter_mut().map(|b| b.as_device_slice_mut()).collect();
        let len = check_rank_buffers(self.copier.set(), streams, &views)?;
        if views.len() == 1 || len == 0 {
            return Ok(());
        }
        let tmp = match self.tmp.take() {
            Some(t) if t.len() >= len => t,
            _ => DeviceBuffer::alloc(&streams[0], len)?,
        };
        let tmp = self.tmp.insert(tmp);
        let mut tmp = tmp.slice_mut(..len)?;
        let path = self.path;
        let (root, others) = views.split_at_mut(1);
        let root = &mut root[0];
        for (i, other) in others.iter().enumerate() {
            let rank = i + 1;
            self.copier
                .copy(path, &streams[rank], other, &streams[0], &mut tmp)?;
            axpy(&streams[0], 1.0, &tmp, root)?;
        }
        for (i, other) in others.iter_mut().enumerate() {
            let rank = i + 1;
            self.copier
                .copy(path, &streams[0], root, &streams[rank], other)?;
        }
        Ok(())
    }
}
