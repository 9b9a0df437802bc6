//! The description of a convolution, and its validation: the sizes computed from it are
//! checked here, once (issue 16), so that the plan only uses values that fit.

#![warn(clippy::arithmetic_side_effects)]

use crate::error::{Error, Result};
use crate::ops::conv2d::HopperOptions;
use crate::ops::matmul::Tiling;
use crate::ops::{Activation, KernelOptions};
use crate::size;

/// The shape and options of a 2-D convolution: input NHWC (N×H×W×C), filter KRSC
/// (K×R×S×(C/groups)), output NHWC (N×P×Q×K), cross-correlation as in PyTorch's `nn.Conv2d`.
/// Padding is symmetric (the same on both sides of each dimension).
///
/// ```
/// use hikube_gpu::ops::conv2d::Conv2dDesc;
/// // ResNet-50's first layer: 3 -> 64 channels, 7x7, stride 2, padding 3.
/// let desc = Conv2dDesc::input(8, 224, 224, 3).filters(64, 7, 7).stride(2, 2).padding(3, 3);
/// assert_eq!(desc.output_hw(), (112, 112));
/// assert_eq!(desc.gemm_mnk(), (8 * 112 * 112, 64, 7 * 7 * 3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dDesc {
    /// Batch.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub c: usize,
    /// Output channels (filters).
    pub k: usize,
    /// Filter height.
    pub r: usize,
    /// Filter width.
    pub s: usize,
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Zero padding on each side (height, width).
    pub padding: (usize, usize),
    /// Dilation (height, width).
    pub dilation: (usize, usize),
    /// 1 (dense) or C (depthwise; K a multiple of C).
    pub groups: usize,
    /// α: the convolution's scale.
    pub alpha: f32,
    /// β (0: C is not read): `y = act(α·conv(x, w) + β·C + bias)`, C given at launch in y's
    /// shape and type (or y itself).
    pub beta: f32,
    /// The activation after the bias.
    pub activation: Activation,
    /// Kernel options (a forced PTX target selects the kernel path).
    pub options: KernelOptions,
    /// Force a tile configuration of the implicit-GEMM path instead of the heuristic's choice
    /// (for tuning); ignored by the GEMM and direct paths.
    pub tiling: Option<Tiling>,
    /// Whether 1×1, stride-1, unpadded convolutions run as a GEMM through
    /// [`Matmul`](crate::ops::matmul::Matmul) (`Some(true)`) or through the implicit-GEMM
    /// kernels (`Some(false)`). `None` lets the plan choose: the implicit GEMM on compute 8.0
    /// and newer (twice the GEMM's speed on ResNet-50's 1×1 layers on the H100, whose
    /// reduction, C = 64, is too short for the GEMM's large tiles), the GEMM on 7.x.
    pub gemm_for_1x1: Option<bool>,
    /// Force the Hopper path (`compute_90a`, C a multiple of 8, output in the input type) with
    /// these of its choices forced; `None` lets the plan choose the path. For
    /// [`Conv2dGrad`](super::Conv2dGrad): asks for a strided convolution's data gradient as one
    /// Hopper convolution per phase of dx (opt-in for now; TMA im2col loads: another `a_load`
    /// leaves it on the implicit GEMM).
    pub hopper: Option<HopperOptions>,
}

impl Conv2dDesc {
    /// A convolution of an NHWC input of `n` images of `h × w` pixels and `c` channels, stride
    /// 1, no padding, dilation 1, dense; [`filters`](Self::filters) sets the filters (until
    /// then K = 0, which [`validate`](Self::validate) refuses).
    pub fn input(n: usize, h: usize, w: usize, c: usize) -> Self {
        Conv2dDesc {
            n,
            h,
            w,
            c,
            k: 0,
            r: 1,
            s: 1,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
            alpha: 1.0,
            beta: 0.0,
            activation: Activation::None,
            options: KernelOptions::default(),
            tiling: None,
            gemm_for_1x1: None,
            hopper: None,
        }
    }

    /// Sets the filters: `k` output channels, each `r × s` (height × width), KRSC.
    pub fn filters(mut self, k: usize, r: usize, s: usize) -> Self {
        (self.k, self.r, self.s) = (k, r, s);
        self
    }

    /// Sets the stride.
    pub fn stride(mut self, h: usize, w: usize) -> Self {
        self.stride = (h, w);
        self
    }

    /// Sets the zero padding on each side.
    pub fn padding(mut self, h: usize, w: usize) -> Self {
        self.padding = (h, w);
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, h: usize, w: usize) -> Self {
        self.dilation = (h, w);
        self
    }

    setter! {
        /// Sets the number of groups: 1, or C for a depthwise convolution.
        groups: usize => groups;
        /// Sets α.
        alpha: f32 => alpha;
        /// Sets β: C (given at launch, or y itself) is added, scaled by β.
        beta: f32 => beta;
        /// Sets the activation after the bias.
        activation: Activation => activation;
        /// Sets the kernel options.
        options: KernelOptions => options;
        /// Forces a tile configuration of the implicit-GEMM path.
        tiling: Tiling => tiling = Some;
        /// Forces the Hopper path, with the choices given set (`HopperOptions::default()`:
        /// the path alone). [`Conv2d::new`](super::Conv2d::new) says why where it cannot run.
        hopper: HopperOptions => hopper = Some;
        /// Forces 1×1 convolutions through the GEMM (`true`) or the implicit-GEMM kernels.
        gemm_for_1x1: bool => gemm_for_1x1 = Some;
    }

    /// The output height and width (P, Q); 0 where the filter does not fit the padded input
    /// (or a stride is 0). Like the other sizes below, saturates for descriptions that
    /// [`validate`](Self::validate) refuses as too large.
    pub fn output_hw(&self) -> (usize, usize) {
        let out = |size: usize, pad: usize, f: usize, dil: usize, stride: usize| {
            let extent = dil.saturating_mul(f.saturating_sub(1)).saturating_add(1);
            let padded = size.saturating_add(pad.saturating_mul(2));
            padded
                .checked_sub(extent)
                .and_then(|room| room.checked_div(stride))
                .map_or(0, |steps| steps.saturating_add(1))
        };
        (
            out(
                self.h,
                self.padding.0,
                self.r,
                self.dilation.0,
                self.stride.0,
            ),
            out(
                self.w,
                self.padding.1,
                self.s,
                self.dilation.1,
                self.stride.1,
            ),
        )
    }

    /// The implicit GEMM's (M, N, K): output pixels N·P·Q, output channels K, and the reduction
    /// R·S·C/groups.
    pub fn gemm_mnk(&self) -> (usize, usize, usize) {
        let (p, q) = self.output_hw();
        (
            saturating_product(&[self.n, p, q]),
            self.k,
            saturating_product(&[self.r, self.s, self.channels_per_group()]),
        )
    }

    /// Input channels each filter sees: C / groups (C for groups = 0, which validation
    /// refuses).
    fn channels_per_group(&self) -> usize {
        self.c.checked_div(self.groups).unwrap_or(self.c)
    }

    /// Floating-point operations of one forward pass (2 per multiply-add).
    pub fn flops(&self) -> f64 {
        let (m, n, k) = self.gemm_mnk();
        2.0 * m as f64 * n as f64 * k as f64
    }

    /// Whether every filter sees one input channel (groups = C > 1).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.c
    }

    /// Whether the convolution is a plain GEMM: 1×1, stride 1, no padding, dilation 1, dense.
    pub fn is_pointwise(&self) -> bool {
        self.r == 1
            && self.s == 1
            && self.stride == (1, 1)
            && self.padding == (0, 0)
            && self.dilation == (1, 1)
            && self.groups == 1
    }

    /// Elements of the NHWC input.
    pub fn input_len(&self) -> usize {
        saturating_product(&[self.n, self.h, self.w, self.c])
    }

    /// Elements of the KRSC filter.
    pub fn filter_len(&self) -> usize {
        saturating_product(&[self.k, self.r, self.s, self.channels_per_group()])
    }

    /// Elements of the NHWC output.
    pub fn output_len(&self) -> usize {
        let (p, q) = self.output_hw();
        saturating_product(&[self.n, p, q, self.k])
    }

    /// Checks the description without a device — what [`Conv2d::new`](super::Conv2d::new)
    /// checks first: every dimension at least 1, groups 1 or C, a filter that fits the padded
    /// input, and sizes the kernels' 32-bit offsets reach. A size that overflows is
    /// [`Error::InvalidArgument`] naming it and its value; one past the kernels' range is
    /// [`Error::TooLarge`].
    ///
    /// ```
    /// use hikube_gpu::ops::conv2d::Conv2dDesc;
    /// assert!(Conv2dDesc::input(8, 56, 56, 64).filters(64, 3, 3).padding(1, 1).validate().is_ok());
    /// assert!(Conv2dDesc::input(usize::MAX, 56, 56, 64).filters(64, 3, 3).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let dims = [
            ("N", self.n),
            ("H", self.h),
            ("W", self.w),
            ("C", self.c),
            ("K", self.k),
            ("R", self.r),
            ("S", self.s),
            ("stride (height)", self.stride.0),
            ("stride (width)", self.stride.1),
            ("dilation (height)", self.dilation.0),
            ("dilation (width)", self.dilation.1),
            ("groups", self.groups),
        ];
        for (what, v) in dims {
            if v < 1 {
                return Err(Error::InvalidDimension {
                    what: what.to_string(),
                    value: v,
                    min: 1,
                });
            }
        }
        let i32max = i32::MAX as usize;
        let dim_max = i32max / 4;
        for (what, v) in dims.iter().copied().chain([
            ("padding (height)", self.padding.0),
            ("padding (width)", self.padding.1),
        ]) {
            if v > dim_max {
                return Err(Error::TooLarge {
                    what: what.to_string(),
                    value: v,
                    max: dim_max,
                });
            }
        }
        if self.groups != 1 && self.groups != self.c {
            return Err(Error::InvalidArgument {
                what: format!(
                    "groups is {}: only 1 (dense) and C = {} (depthwise) are supported",
                    self.groups, self.c
                ),
            });
        }
        if self.groups > 1 && self.k.checked_rem(self.groups) != Some(0) {
            return Err(Error::InvalidArgument {
                what: format!(
                    "a depthwise convolution needs K ({}) a multiple of C ({})",
                    self.k, self.c
                ),
            });
        }
        for (what, size, pad, f, dil) in [
            (
                "input height plus padding (H + 2*pad)",
                self.h,
                self.padding.0,
                self.r,
                self.dilation.0,
            ),
            (
                "input width plus padding (W + 2*pad)",
                self.w,
                self.padding.1,
                self.s,
                self.dilation.1,
            ),
        ] {
            // Each term is at most 2^29 (checked above): these cannot overflow, but stay checked
            // so that the fact does not rest on the order of the checks.
            let extent = size::add(what, size::mul(what, dil, f.saturating_sub(1))?, 1)?;
            let padded = size::add(what, size, size::mul(what, pad, 2)?)?;
            if padded < extent {
                return Err(Error::InvalidDimension {
                    what: what.to_string(),
                    value: padded,
                    min: extent,
                });
            }
        }
        // The implicit-GEMM kernels index the (channel-padded) input and filter with 32 bits.
        let c8 = size::round_up("C rounded up to 8", self.c, 8)?;
        let checked = |what: &str, factors: &[usize], max: usize| -> Result<()> {
            let total = size::product(what, factors)?;
            if total > max {
                return Err(Error::TooLarge {
                    what: what.to_string(),
                    value: total,
                    max,
                });
            }
            Ok(())
        };
        let (p, q) = self.output_hw();
        checked(
            "input elements (channels rounded up to 8)",
            &[self.n, self.h, self.w, c8],
            i32max,
        )?;
        checked(
            "filter elements (channels rounded up to 8)",
            &[self.k, self.r, self.s, c8],
            i32max,
        )?;
        checked("output pixels N*P*Q", &[self.n, p, q], i32max)?;
        checked(
            "output elements",
            &[self.n, p, q, self.k],
            i64::MAX as usize / 2,
        )?;
        Ok(())
    }
}

/// The product of `factors`, or `usize::MAX` when it overflows.
fn saturating_product(factors: &[usize]) -> usize {
    factors.iter().fold(1usize, |acc, &f| acc.saturating_mul(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parts() {
        let d = Conv2dDesc::input(8, 56, 48, 64).filters(128, 3, 5);
        assert_eq!((d.n, d.h, d.w, d.c), (8, 56, 48, 64));
        assert_eq!((d.k, d.r, d.s), (128, 3, 5));
        assert!(d.padding(1, 2).validate().is_ok());
        // Without filters, K = 0: a typed error naming K.
        let no_filters = Conv2dDesc::input(8, 56, 56, 64).validate();
        assert!(
            matches!(&no_filters, Err(Error::InvalidDimension { what, .. }) if what == "K"),
            "{no_filters:?}"
        );
    }
}
