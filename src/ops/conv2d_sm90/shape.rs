//! The shape of a Hopper convolution, and its validation without a device: the sizes computed
//! from it are checked here, once (issue 16).

#![warn(clippy::arithmetic_side_effects)]

use crate::error::{Error, Result};
use crate::size;

use super::unsupported;

/// The shape of a 2-D convolution: input `n × h × w × c` (NHWC), filter `k × r × s × c` (KRSC),
/// stride, zero padding and dilation as (height, width).
///
/// ```
/// use hikube_gpu::ops::conv2d_sm90::Conv2dShape;
/// let stem = Conv2dShape::new(1, 224, 224, 8, 64, 7, 7).stride(2, 2).pad(3, 3);
/// assert_eq!(stem.output_size(), Some((112, 112)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    /// Batch.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub k: usize,
    /// Filter height.
    pub r: usize,
    /// Filter width.
    pub s: usize,
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Zero padding on each side (height, width).
    pub pad: (usize, usize),
    /// Dilation (height, width).
    pub dilation: (usize, usize),
}

impl Conv2dShape {
    /// Stride 1, no padding, no dilation.
    pub fn new(n: usize, h: usize, w: usize, c: usize, k: usize, r: usize, s: usize) -> Self {
        Conv2dShape {
            n,
            h,
            w,
            c,
            k,
            r,
            s,
            stride: (1, 1),
            pad: (0, 0),
            dilation: (1, 1),
        }
    }

    /// Sets the stride (height, width).
    pub fn stride(mut self, h: usize, w: usize) -> Self {
        self.stride = (h, w);
        self
    }

    /// Sets the zero padding (height, width).
    pub fn pad(mut self, h: usize, w: usize) -> Self {
        self.pad = (h, w);
        self
    }

    /// Sets the dilation (height, width).
    pub fn dilation(mut self, h: usize, w: usize) -> Self {
        self.dilation = (h, w);
        self
    }

    /// Output (height, width), or `None` when the dilated filter is larger than the padded
    /// input (or a stride is 0).
    pub fn output_size(&self) -> Option<(usize, usize)> {
        let out = |x: usize, taps: usize, pad: usize, stride: usize, dil: usize| {
            let span = taps.checked_sub(1)?.checked_mul(dil)?.checked_add(1)?;
            let padded = x.checked_add(pad.checked_mul(2)?)?;
            padded
                .checked_sub(span)?
                .checked_div(stride)?
                .checked_add(1)
        };
        Some((
            out(self.h, self.r, self.pad.0, self.stride.0, self.dilation.0)?,
            out(self.w, self.s, self.pad.1, self.stride.1, self.dilation.1)?,
        ))
    }

    /// Elements of the input, `n·h·w·c`. Like the other lengths, saturates at `usize::MAX`
    /// for shapes [`validate`](Self::validate) refuses.
    pub fn x_len(&self) -> usize {
        saturating_product(&[self.n, self.h, self.w, self.c])
    }

    /// Elements of the filter, `k·r·s·c`.
    pub fn w_len(&self) -> usize {
        saturating_product(&[self.k, self.r, self.s, self.c])
    }

    /// Elements of the output, `n·p·q·k` (0 when there is no output).
    pub fn y_len(&self) -> usize {
        self.output_size()
            .map_or(0, |(p, q)| saturating_product(&[self.n, p, q, self.k]))
    }

    /// Floating-point operations of one convolution, `2·n·p·q·k·r·s·c`.
    pub fn flops(&self) -> f64 {
        2.0 * self.y_len() as f64 * saturating_product(&[self.r, self.s, self.c]) as f64
    }

    /// The output size, or the error that says why there is none.
    pub(crate) fn checked_output_size(&self) -> Result<(usize, usize)> {
        self.output_size().ok_or_else(|| {
            unsupported(format!(
                "the dilated {}x{} filter (dilation {:?}) does not fit the {}x{} input padded by \
                 {:?} (or a size overflows)",
                self.r, self.s, self.dilation, self.h, self.w, self.pad
            ))
        })
    }

    /// Checks the shape without a device — what [`Conv2dSm90::check`](super::Conv2dSm90::check)
    /// checks besides the device and element type: every size at least 1, C a multiple of 8, a
    /// filter that fits the padded input, and sizes within the kernel's 32-bit indexing
    /// ([`Error::TooLarge`] past it).
    ///
    /// ```
    /// use hikube_gpu::ops::conv2d_sm90::Conv2dShape;
    /// assert!(Conv2dShape::new(8, 28, 28, 128, 128, 3, 3).pad(1, 1).validate().is_ok());
    /// assert!(Conv2dShape::new(8, 28, 28, 128, 128, 3, 3).pad(usize::MAX, 1).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let s = self;
        for (what, value) in [
            ("batch", s.n),
            ("input height", s.h),
            ("input width", s.w),
            ("input channels", s.c),
            ("output channels", s.k),
            ("filter height", s.r),
            ("filter width", s.s),
            ("stride height", s.stride.0),
            ("stride width", s.stride.1),
            ("dilation height", s.dilation.0),
            ("dilation width", s.dilation.1),
        ] {
            if value == 0 {
                return Err(Error::InvalidDimension {
                    what: format!("conv2d {what}"),
                    value,
                    min: 1,
                });
            }
        }
        if s.c.checked_rem(8) != Some(0) {
            return Err(unsupported(format!(
                "C = {} is not a multiple of 8 (pixel rows must be 16-byte multiples)",
                s.c
            )));
        }
        let (p, q) = s.checked_output_size()?;
        let max = i32::MAX as usize;
        let too_large = |what: &str, value: usize| -> Result<()> {
            if value <= max {
                Ok(())
            } else {
                Err(Error::TooLarge {
                    what: format!("conv2d_sm90 {what}"),
                    value,
                    max,
                })
            }
        };
        for (what, factors) in [
            ("output pixels N·P·Q", &[s.n, p, q][..]),
            ("output elements N·P·Q·K", &[s.n, p, q, s.k]),
            ("input pixels per image H·W", &[s.h, s.w]),
            ("filter row R·S·C", &[s.r, s.s, s.c]),
        ] {
            too_large(
                what,
                size::product(&format!("conv2d_sm90 {what}"), factors)?,
            )?;
        }
        for (what, v) in [
            ("K", s.k),
            ("padding", s.pad.0.max(s.pad.1)),
            (
                "dilated filter",
                (s.r.max(s.s)).saturating_mul(s.dilation.0.max(s.dilation.1)),
            ),
            ("stride", s.stride.0.max(s.stride.1)),
        ] {
            too_large(what, v.saturating_mul(4))?;
        }
        Ok(())
    }
}

/// The product of `factors`, or `usize::MAX` when it overflows.
fn saturating_product(factors: &[usize]) -> usize {
    factors.iter().fold(1usize, |acc, &f| acc.saturating_mul(f))
}
