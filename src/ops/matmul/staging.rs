//! The FP8 GEMM's operands in the layouts its kernels cannot read: the FP8 tensor cores read A
//! and B K-major only, so a column-major A or a row-major B (as the kernel computes the
//! product, after a column-major D's swap) is transposed into a K-major copy that the plan owns,
//! on the launch's stream, before the GEMM. The operand must be dense (its natural leading
//! dimension and batch stride): the copy is one batched transpose of `batch × K × M` (A) or
//! `batch × K × N` (B).

use super::desc::{at_most, Layout, MatmulDesc, Strides};
use crate::error::{Error, Result};
use crate::launch::args::{Transpose, TRANSPOSE_MAX_ROWS};
use crate::launch::KernelArgs;
use crate::memory::{AsDeviceSlice, DeviceBuffer, DeviceSlice};
use crate::ops::conv2d::layout;
use crate::size;
use crate::stream::Stream;
use bytemuck::Pod;
use std::sync::{Mutex, PoisonError};

/// Which operands a plan stages, and their copies (locked while a launch is queued; the stream
/// ordering of the copies orders each launch after every earlier one, on whatever stream).
pub(crate) struct Staging<T: Pod> {
    a: bool,
    b: bool,
    copies: Mutex<Copies<T>>,
}

/// A's and B's K-major copies, where staged.
struct Copies<T: Pod> {
    a: Option<DeviceBuffer<T>>,
    b: Option<DeviceBuffer<T>>,
}

impl<T: Pod> Staging<T> {
    /// Which of the kernel view's (`v`, `s`) operands need a K-major copy: none, either or
    /// both (`swapped`: the view's A is the caller's B, a column-major D's transpose). An
    /// operand to stage that is not dense, or a K beyond the transpose's rows, is
    /// [`Error::InvalidArgument`] or [`Error::TooLarge`].
    pub(crate) fn plan(v: &MatmulDesc, s: &Strides, swapped: bool) -> Result<Self> {
        let a = v.a_layout == Layout::ColMajor;
        let b = v.b_layout == Layout::RowMajor;
        let dense = |ld: usize, rows: usize, stride: usize| {
            ld == rows && (v.batch <= 1 || Some(stride) == rows.checked_mul(v.k))
        };
        let (name_a, name_b) = if swapped { ("B", "A") } else { ("A", "B") };
        for (name, staged, ld, rows, stride) in [
            (name_a, a, s.lda, v.m, s.stride_a),
            (name_b, b, s.ldb, v.n, s.stride_b),
        ] {
            if staged && !dense(ld, rows, stride) {
                return Err(Error::InvalidArgument {
                    what: format!(
                        "the FP8 GEMM transposes a {name} that is not K-major into a K-major \
                         copy, so it must be dense (leading dimension {rows} and batch stride \
                         {rows} x K), not ld {ld} and stride {stride}"
                    ),
                });
            }
        }
        if a || b {
            at_most(
                "K of an operand transposed to K-major",
                v.k,
                TRANSPOSE_MAX_ROWS,
            )?;
        }
        Ok(Staging {
            a,
            b,
            copies: Mutex::new(Copies { a: None, b: None }),
        })
    }

    /// Whether the kernel's A and B are staged.
    #[cfg(test)]
    pub(crate) fn staged(&self) -> (bool, bool) {
        (self.a, self.b)
    }

    /// The description and strides the kernel runs on: the staged operands K-major and dense.
    pub(crate) fn kernel_view(&self, v: &MatmulDesc, s: &Strides) -> Result<(MatmulDesc, Strides)> {
        let (mut kv, mut ks) = (v.clone(), *s);
        if self.a {
            kv.a_layout = Layout::RowMajor;
            (ks.lda, ks.stride_a) = (v.k, size::product("M x K", &[v.m, v.k])?);
            ks.extent_a = size::product("A's K-major copy", &[v.batch, v.m, v.k])?;
        }
        if self.b {
            kv.b_layout = Layout::ColMajor;
            (ks.ldb, ks.stride_b) = (v.k, size::product("N x K", &[v.n, v.k])?);
            ks.extent_b = size::product("B's K-major copy", &[v.batch, v.n, v.k])?;
        }
        Ok((kv, ks))
    }

    /// Loads the transpose kernel (so that a launch, or a graph capture, does not) and
    /// allocates the copies (`kernel` = the strides of [`kernel_view`](Self::kernel_view)), on
    /// `stream`.
    pub(crate) fn allocate(&self, stream: &Stream, kernel: &Strides) -> Result<()> {
        if self.a || self.b {
            Transpose::<T>::kernel(stream.device(), (), None)?;
        }
        let alloc = |staged: bool, len: usize| {
            staged
                .then(|| DeviceBuffer::<T>::alloc(stream, len))
                .transpose()
        };
        let copies = Copies {
            a: alloc(self.a, kernel.extent_a)?,
            b: alloc(self.b, kernel.extent_b)?,
        };
        *self.copies.lock().unwrap_or_else(PoisonError::into_inner) = copies;
        Ok(())
    }

    /// Transposes the staged operands of (`a`, `b`) into their copies on `stream` (`v` the
    /// kernel view, whose K, M, N and batch they have) and calls `gemm` with the operands the
    /// kernel reads, the copies held locked until it returns.
    pub(crate) fn run<R>(
        &self,
        stream: &Stream,
        v: &MatmulDesc,
        (a, b): (DeviceSlice<'_, T>, DeviceSlice<'_, T>),
        gemm: impl FnOnce(DeviceSlice<'_, T>, DeviceSlice<'_, T>) -> Result<R>,
    ) -> Result<R> {
        if !self.a && !self.b {
            // Nothing staged: no lock, so that plain plans launch from many threads at once.
            return gemm(a, b);
        }
        let mut copies = self.copies.lock().unwrap_or_else(PoisonError::into_inner);
        let Copies {
            a: copy_a,
            b: copy_b,
        } = &mut *copies;
        for (copy, src, cols) in [(copy_a.as_mut(), &a, v.m), (copy_b.as_mut(), &b, v.n)] {
            if let Some(copy) = copy {
                layout::transpose(stream, src, copy, v.batch, v.k, cols)?;
            }
        }
        let a = copy_a.as_ref().map_or(a, AsDeviceSlice::as_device_slice);
        let b = copy_b.as_ref().map_or(b, AsDeviceSlice::as_device_slice);
        gemm(a, b)
    }
}
