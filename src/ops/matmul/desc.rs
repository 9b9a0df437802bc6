//! The description of a matrix multiplication, and its validation: every size, stride and
//! extent computed from it is checked once, here, so that the plan and its launches only use
//! values that fit (issue 16: no wrap in release, no panic in debug).

#![warn(clippy::arithmetic_side_effects)]

use crate::error::{Error, Result};
use crate::ops::KernelOptions;
use crate::size;

use super::config::Tiling;

/// Memory order of a matrix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Rows are contiguous: element (i, j) at `i * ld + j`.
    #[default]
    RowMajor,
    /// Columns are contiguous: element (i, j) at `j * ld + i`.
    ColMajor,
}

/// The activation applied after bias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// None.
    #[default]
    None,
    /// max(x, 0).
    Relu,
    /// x·Φ(x) with the exact (erf) Φ, as PyTorch's `nn.GELU()`.
    Gelu,
}

/// The shape and options of a matrix multiplication. Leading dimensions and batch strides left
/// as `None` are those of densely packed matrices.
///
/// ```
/// use hikube_gpu::ops::matmul::{Activation, Layout, MatmulDesc};
/// let desc = MatmulDesc::new(512, 1024, 768)
///     .b_layout(Layout::ColMajor) // B given as N×K row-major, i.e. x·Wᵀ as in nn.Linear
///     .activation(Activation::Gelu);
/// assert_eq!(desc.k, 768);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MatmulDesc {
    /// Rows of A, C and D.
    pub m: usize,
    /// Columns of B, C and D.
    pub n: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// Layout of A.
    pub a_layout: Layout,
    /// Layout of B.
    pub b_layout: Layout,
    /// Leading dimension of A (elements between rows, or columns when column-major).
    pub lda: Option<usize>,
    /// Leading dimension of B.
    pub ldb: Option<usize>,
    /// Leading dimension of C (row-major).
    pub ldc: Option<usize>,
    /// Leading dimension of D (row-major).
    pub ldd: Option<usize>,
    /// Number of independent products.
    pub batch: usize,
    /// Elements between consecutive A matrices (0 broadcasts one A to every batch).
    pub stride_a: Option<usize>,
    /// Elements between consecutive B matrices (0 broadcasts).
    pub stride_b: Option<usize>,
    /// Elements between consecutive C matrices (0 broadcasts).
    pub stride_c: Option<usize>,
    /// Elements between consecutive D matrices.
    pub stride_d: Option<usize>,
    /// α.
    pub alpha: f32,
    /// β (0: C is not read).
    pub beta: f32,
    /// The activation after bias.
    pub activation: Activation,
    /// Kernel options (a forced PTX target selects the kernel path).
    pub options: KernelOptions,
    /// Force a tile configuration of the path instead of the heuristic's choice (for tuning);
    /// split-K is still chosen by the heuristic.
    pub tiling: Option<Tiling>,
    /// Force the fast kernel's split-K factor instead of the heuristic's (for tuning): K is cut
    /// into at most this many slices, each a multiple of 64 long.
    pub split_k: Option<usize>,
    /// Hopper path: blocks launched for the work units (output tiles × batches × split-K
    /// slices). `None`: the default, persistent blocks, one per SM (fewer when there are fewer
    /// units), each walking the units `grid_blocks` apart and loading the next one while it
    /// stores the last; `Some(n)`: n blocks (clamped to 1..=units); `Some(usize::MAX)`: a block
    /// for every unit. Other paths ignore it.
    pub grid_blocks: Option<usize>,
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $ty:ty => $field:ident $(= $wrap:ident)?;)*) => {
        $(
            #[$doc]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$field = setter!(@wrap value $($wrap)?);
                self
            }
        )*
    };
    (@wrap $v:ident Some) => { Some($v) };
    (@wrap $v:ident) => { $v };
}

impl MatmulDesc {
    /// D (M×N) = A (M×K) · B (K×N), row-major, packed, α = 1, β = 0, one batch.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        MatmulDesc {
            m,
            n,
            k,
            a_layout: Layout::RowMajor,
            b_layout: Layout::RowMajor,
            lda: None,
            ldb: None,
            ldc: None,
            ldd: None,
            batch: 1,
            stride_a: None,
            stride_b: None,
            stride_c: None,
            stride_d: None,
            alpha: 1.0,
            beta: 0.0,
            activation: Activation::None,
            options: KernelOptions::default(),
            tiling: None,
            split_k: None,
            grid_blocks: None,
        }
    }

    setter! {
        /// Sets the layout of A.
        a_layout: Layout => a_layout;
        /// Sets the layout of B.
        b_layout: Layout => b_layout;
        /// Sets the leading dimension of A.
        lda: usize => lda = Some;
        /// Sets the leading dimension of B.
        ldb: usize => ldb = Some;
        /// Sets the leading dimension of C.
        ldc: usize => ldc = Some;
        /// Sets the leading dimension of D.
        ldd: usize => ldd = Some;
        /// Sets the number of batches.
        batch: usize => batch;
        /// Sets the batch stride of A.
        stride_a: usize => stride_a = Some;
        /// Sets the batch stride of B.
        stride_b: usize => stride_b = Some;
        /// Sets the batch stride of C.
        stride_c: usize => stride_c = Some;
        /// Sets the batch stride of D.
        stride_d: usize => stride_d = Some;
        /// Sets α.
        alpha: f32 => alpha;
        /// Sets β.
        beta: f32 => beta;
        /// Sets the activation.
        activation: Activation => activation;
        /// Sets the kernel options.
        options: KernelOptions => options;
        /// Forces a tile configuration.
        tiling: Tiling => tiling = Some;
        /// Forces the split-K factor.
        split_k: usize => split_k = Some;
        /// Sets the Hopper path's grid (`usize::MAX`: a block per work unit).
        grid_blocks: usize => grid_blocks = Some;
    }
}

/// Leading dimensions, batch strides and extents, resolved and validated: each fits the
/// kernels' 64-bit element offsets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strides {
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub ldd: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub stride_d: usize,
    /// Elements A, B, C and D reach (the buffer lengths a launch needs).
    pub extent_a: usize,
    pub extent_b: usize,
    pub extent_c: usize,
    pub extent_d: usize,
}

pub(crate) fn at_least(what: impl Fn() -> String, value: usize, min: usize) -> Result<()> {
    if value >= min {
        Ok(())
    } else {
        Err(Error::InvalidDimension {
            what: what(),
            value,
            min,
        })
    }
}

pub(crate) fn at_most(what: &str, value: usize, max: usize) -> Result<()> {
    if value <= max {
        Ok(())
    } else {
        Err(Error::TooLarge {
            what: what.to_string(),
            value,
            max,
        })
    }
}

/// The largest element offset the kernels take: they add offsets in 64-bit signed arithmetic,
/// so an extent and every stride stay below half of `i64::MAX`.
const MAX_OFFSET: usize = (i64::MAX / 2) as usize;

/// Elements a matrix of `rows` × `cols` (in storage order, each at least 1) with leading
/// dimension `ld`, repeated `batch` (at least 1) times `stride` apart, reaches:
/// `(batch - 1)·stride + (rows - 1)·ld + cols`. `name` is the operand (`A`, ...), and `ld`
/// and `stride` name its fields in the error.
fn extent(
    name: &str,
    (rows, cols): (usize, usize),
    (ld_name, ld): (&str, usize),
    batch: usize,
    (stride_name, stride): (&str, usize),
) -> Result<usize> {
    let batches = size::mul(
        &format!("{name}'s extent: (batch - 1) x {stride_name}"),
        batch.saturating_sub(1),
        stride,
    )?;
    let rows = size::mul(
        &format!("{name}'s extent: (rows - 1) x {ld_name}"),
        rows.saturating_sub(1),
        ld,
    )?;
    let field = format!("{name}'s extent");
    size::add(&field, size::add(&field, batches, rows)?, cols)
}

impl MatmulDesc {
    /// (rows, cols) of A and B as stored.
    pub(crate) fn stored_a(&self) -> (usize, usize) {
        match self.a_layout {
            Layout::RowMajor => (self.m, self.k),
            Layout::ColMajor => (self.k, self.m),
        }
    }
    pub(crate) fn stored_b(&self) -> (usize, usize) {
        match self.b_layout {
            Layout::RowMajor => (self.k, self.n),
            Layout::ColMajor => (self.n, self.k),
        }
    }

    /// Checks the description without a device — what [`Matmul::new`](super::Matmul::new)
    /// checks first: M, N, K and batch in 1..2^31, leading dimensions at least the stored row
    /// length, batches of D that do not overlap, and every stride and extent within the kernels'
    /// 64-bit offsets. A size that overflows is [`Error::InvalidArgument`] naming the field and
    /// its value; one past a kernel's range is [`Error::TooLarge`]; one too small is
    /// [`Error::InvalidDimension`].
    ///
    /// ```
    /// use hikube_gpu::ops::matmul::MatmulDesc;
    /// assert!(MatmulDesc::new(64, 64, 64).validate().is_ok());
    /// assert!(MatmulDesc::new(64, 64, 64).lda(usize::MAX / 2).batch(3).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.strides().map(|_| ())
    }

    /// [`validate`](Self::validate), returning the resolved strides and extents.
    pub(crate) fn strides(&self) -> Result<Strides> {
        let dims = [
            ("M", self.m),
            ("N", self.n),
            ("K", self.k),
            ("batch", self.batch),
        ];
        for (what, v) in dims {
            at_least(|| what.to_string(), v, 1)?;
        }
        for (what, v) in dims {
            at_most(what, v, i32::MAX as usize)?;
        }
        if let Some(0) = self.split_k {
            return Err(Error::InvalidArgument {
                what: "split_k must be at least 1".into(),
            });
        }
        let (ar, ac) = self.stored_a();
        let (br, bc) = self.stored_b();
        let lda = self.lda.unwrap_or(ac);
        let ldb = self.ldb.unwrap_or(bc);
        let ldc = self.ldc.unwrap_or(self.n);
        let ldd = self.ldd.unwrap_or(self.n);
        at_least(
            || format!("lda (A {:?}, {ar} x {ac} as stored)", self.a_layout),
            lda,
            ac,
        )?;
        at_least(
            || format!("ldb (B {:?}, {br} x {bc} as stored)", self.b_layout),
            ldb,
            bc,
        )?;
        at_least(|| "ldc".to_string(), ldc, self.n)?;
        at_least(|| "ldd".to_string(), ldd, self.n)?;
        let matrix_d = extent("D", (self.m, self.n), ("ldd", ldd), 1, ("stride_d", 0))?;
        let stride_d = match self.stride_d {
            Some(s) => s,
            None => size::mul("stride_d (M x ldd)", self.m, ldd)?,
        };
        if self.batch > 1 {
            // Overlapping outputs would race.
            at_least(
                || "stride_d (batches of D must not overlap)".to_string(),
                stride_d,
                matrix_d,
            )?;
        }
        let stride_a = match self.stride_a {
            Some(s) => s,
            None => size::mul("stride_a (rows of A x lda)", ar, lda)?,
        };
        let stride_b = match self.stride_b {
            Some(s) => s,
            None => size::mul("stride_b (rows of B x ldb)", br, ldb)?,
        };
        let stride_c = match self.stride_c {
            Some(s) => s,
            None => size::mul("stride_c (M x ldc)", self.m, ldc)?,
        };
        let batch = self.batch;
        let s = Strides {
            lda,
            ldb,
            ldc,
            ldd,
            stride_a,
            stride_b,
            stride_c,
            stride_d,
            extent_a: extent("A", (ar, ac), ("lda", lda), batch, ("stride_a", stride_a))?,
            extent_b: extent("B", (br, bc), ("ldb", ldb), batch, ("stride_b", stride_b))?,
            extent_c: extent(
                "C",
                (self.m, self.n),
                ("ldc", ldc),
                batch,
                ("stride_c", stride_c),
            )?,
            extent_d: extent(
                "D",
                (self.m, self.n),
                ("ldd", ldd),
                batch,
                ("stride_d", stride_d),
            )?,
        };
        for (what, v) in [
            ("lda", s.lda),
            ("ldb", s.ldb),
            ("ldc", s.ldc),
            ("ldd", s.ldd),
            ("stride_a", s.stride_a),
            ("stride_b", s.stride_b),
            ("stride_c", s.stride_c),
            ("stride_d", s.stride_d),
            ("A's extent", s.extent_a),
            ("B's extent", s.extent_b),
            ("C's extent", s.extent_c),
            ("D's extent", s.extent_d),
        ] {
            at_most(what, v, MAX_OFFSET)?;
        }
        Ok(s)
    }
}
