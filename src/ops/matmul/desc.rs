//! The description of a matrix multiplication, and its validation: every size, stride and
//! extent computed from it is checked once, here, so that the plan and its launches only use
//! values that fit (issue 16: no wrap in release, no panic in debug).

#![warn(clippy::arithmetic_side_effects)]

use crate::error::{Error, Result};
use crate::launch::gemm::GemmShape;
use crate::ops::{Activation, KernelOptions};
use crate::size;

use crate::ops::gemm::{ComputeType, Tiling};

/// Memory order of a matrix.
///
/// ```
/// use hikube_gpu::ops::matmul::{Layout, MatmulDesc};
/// // y = x·wᵀ with w stored N × K (nn.Linear's weight): B = wᵀ is column-major K × N.
/// let desc = MatmulDesc::new(64, 256, 512).b_layout(Layout::ColMajor);
/// # let _ = desc;
/// assert_eq!(Layout::default(), Layout::RowMajor);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Rows are contiguous: element (i, j) at `i * ld + j`.
    #[default]
    RowMajor,
    /// Columns are contiguous: element (i, j) at `j * ld + i`.
    ColMajor,
}

impl Layout {
    /// The other layout: a matrix's transpose is stored in it, with the same leading dimension.
    pub(crate) fn flipped(self) -> Layout {
        match self {
            Layout::RowMajor => Layout::ColMajor,
            Layout::ColMajor => Layout::RowMajor,
        }
    }

    /// (rows, cols) as stored of a `rows` × `cols` matrix in this layout.
    pub(crate) fn stored(self, rows: usize, cols: usize) -> (usize, usize) {
        match self {
            Layout::RowMajor => (rows, cols),
            Layout::ColMajor => (cols, rows),
        }
    }
}

/// The shape and options of a matrix multiplication. Leading dimensions and batch strides left
/// as `None` are those of densely packed matrices. M, N, K or the batch count may be 0, as in
/// cuBLAS: with K = 0, `D = act(β·C + bias)`; with M, N or the batch count 0, a launch does
/// nothing.
///
/// ```
/// use hikube_gpu::ops::matmul::{Activation, Layout, MatmulDesc};
/// let desc = MatmulDesc::new(512, 1024, 768)
///     .b_layout(Layout::ColMajor) // B given as N×K row-major, i.e. x·Wᵀ as in nn.Linear
///     .activation(Activation::Gelu);
/// assert_eq!(desc.k, 768);
///
/// // cuBLAS's column-major world: every matrix column-major (D too).
/// let cublas = MatmulDesc::new(512, 1024, 768)
///     .a_layout(Layout::ColMajor)
///     .b_layout(Layout::ColMajor)
///     .d_layout(Layout::ColMajor);
/// assert!(cublas.validate().is_ok());
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
    /// Layout of C; `None`: D's. With β ≠ 0, C and D must share a layout.
    pub c_layout: Option<Layout>,
    /// Layout of D. A column-major D is computed as the row-major Dᵀ = op(B)ᵀ·op(A)ᵀ (the
    /// kernels store rows); the bias, added per column of D, then needs a kernel that adds it
    /// per row, which the crate does not have: a launch with a bias and a column-major D is
    /// [`Error::InvalidArgument`].
    pub d_layout: Layout,
    /// Leading dimension of A (elements between rows, or columns when column-major).
    pub lda: Option<usize>,
    /// Leading dimension of B.
    pub ldb: Option<usize>,
    /// Leading dimension of C (elements between rows, or columns when column-major).
    pub ldc: Option<usize>,
    /// Leading dimension of D (elements between rows, or columns when column-major).
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
    /// What the products accumulate in: f32 (the default) or, for f16 inputs, f16 where the
    /// path has it ([`ComputeType`]).
    pub compute: ComputeType,
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

impl MatmulDesc {
    /// D (M×N) = A (M×K) · B (K×N), row-major, packed, α = 1, β = 0, one batch.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        MatmulDesc {
            m,
            n,
            k,
            a_layout: Layout::RowMajor,
            b_layout: Layout::RowMajor,
            c_layout: None,
            d_layout: Layout::RowMajor,
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
            compute: ComputeType::F32,
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
        /// Sets the layout of C (by default D's).
        c_layout: Layout => c_layout = Some;
        /// Sets the layout of D.
        d_layout: Layout => d_layout;
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
        /// Sets the accumulation type.
        compute: ComputeType => compute;
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Strides {
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub ldd: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub stride_d: usize,
    /// Elements A, B, C and D reach (the buffer lengths a launch needs): 0 for an operand a
    /// launch does not touch (A and B when K = 0; every operand when M, N or the batch count
    /// is 0).
    pub extent_a: usize,
    pub extent_b: usize,
    pub extent_c: usize,
    pub extent_d: usize,
}

impl Strides {
    /// The strides of [`MatmulDesc::row_major_view`]'s transposed product: A and B swap.
    pub(crate) fn transposed(self) -> Strides {
        Strides {
            lda: self.ldb,
            ldb: self.lda,
            stride_a: self.stride_b,
            stride_b: self.stride_a,
            extent_a: self.extent_b,
            extent_b: self.extent_a,
            ..self
        }
    }
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

/// Elements a matrix of `rows` × `cols` (in storage order) with leading dimension `ld`,
/// repeated `batch` times `stride` apart, reaches: `(batch - 1)·stride + (rows - 1)·ld + cols`,
/// or 0 when it is empty (a dimension or `batch` is 0). `name` is the operand (`A`, ...), and
/// `ld` and `stride` name its fields in the error.
pub(crate) fn extent(
    name: &str,
    (rows, cols): (usize, usize),
    (ld_name, ld): (&str, usize),
    batch: usize,
    (stride_name, stride): (&str, usize),
) -> Result<usize> {
    if rows == 0 || cols == 0 || batch == 0 {
        return Ok(0);
    }
    // Checked without formatting the names unless it fails: launches call this too.
    let (b1, r1) = (batch.saturating_sub(1), rows.saturating_sub(1));
    let batches = b1.checked_mul(stride).ok_or_else(|| {
        size::invalid(
            &format!("{name}'s extent: (batch - 1) x {stride_name}"),
            format_args!("{b1} x {stride}"),
        )
    })?;
    let rows_reach = r1.checked_mul(ld).ok_or_else(|| {
        size::invalid(
            &format!("{name}'s extent: (rows - 1) x {ld_name}"),
            format_args!("{r1} x {ld}"),
        )
    })?;
    let field = || format!("{name}'s extent");
    let sum = batches
        .checked_add(rows_reach)
        .ok_or_else(|| size::invalid(&field(), format_args!("{batches} + {rows_reach}")))?;
    sum.checked_add(cols)
        .ok_or_else(|| size::invalid(&field(), format_args!("{sum} + {cols}")))
}

impl MatmulDesc {
    /// (rows, cols) of A, B, C and D as stored.
    pub(crate) fn stored_a(&self) -> (usize, usize) {
        self.a_layout.stored(self.m, self.k)
    }
    pub(crate) fn stored_b(&self) -> (usize, usize) {
        self.b_layout.stored(self.k, self.n)
    }
    fn stored_c(&self) -> (usize, usize) {
        self.c_layout_or_d().stored(self.m, self.n)
    }
    fn stored_d(&self) -> (usize, usize) {
        self.d_layout.stored(self.m, self.n)
    }

    /// C's layout: its own, or D's.
    pub(crate) fn c_layout_or_d(&self) -> Layout {
        self.c_layout.unwrap_or(self.d_layout)
    }

    /// Whether a launch has nothing to compute: M, N or the batch count is 0.
    pub(crate) fn is_empty(&self) -> bool {
        self.m == 0 || self.n == 0 || self.batch == 0
    }

    /// The product as the kernels see it, with strides `s`; C's leading dimension and stride
    /// are D's when C is read in place (β ≠ 0 without C: `own_c` false).
    pub(crate) fn gemm_shape(&self, s: &Strides, own_c: bool) -> GemmShape {
        let (ldc, stride_c) = if own_c {
            (s.ldc, s.stride_c)
        } else {
            (s.ldd, s.stride_d)
        };
        GemmShape {
            m: self.m,
            n: self.n,
            k: self.k,
            batch: self.batch,
            a_layout: self.a_layout,
            b_layout: self.b_layout,
            lda: s.lda,
            ldb: s.ldb,
            ldc,
            ldd: s.ldd,
            stride_a: s.stride_a,
            stride_b: s.stride_b,
            stride_c,
            stride_d: s.stride_d,
            alpha: self.alpha,
            beta: self.beta,
        }
    }

    /// The product the kernels compute, whose C and D are row-major, and whether it is the
    /// transpose of this one. A column-major D (M×N) is the row-major Dᵀ (N×M) =
    /// op(B)ᵀ·op(A)ᵀ: M and N swap, and so do A and B, each with its layout flipped (the
    /// transpose of a matrix is stored as the matrix in the other layout, with the same leading
    /// dimension); C and D keep their leading dimensions and strides. (A per-column bias of D
    /// is per row of Dᵀ, which the kernels cannot add: the plan refuses it.)
    pub(crate) fn row_major_view(&self) -> (MatmulDesc, bool) {
        match self.d_layout {
            Layout::RowMajor => (self.clone(), false),
            Layout::ColMajor => (
                MatmulDesc {
                    m: self.n,
                    n: self.m,
                    a_layout: self.b_layout.flipped(),
                    b_layout: self.a_layout.flipped(),
                    c_layout: None,
                    d_layout: Layout::RowMajor,
                    lda: self.ldb,
                    ldb: self.lda,
                    stride_a: self.stride_b,
                    stride_b: self.stride_a,
                    ..self.clone()
                },
                true,
            ),
        }
    }

    /// Checks the description without a device — what [`Matmul::new`](super::Matmul::new)
    /// checks first: M, N, K and batch below 2^31 (0 allowed), leading dimensions at least the
    /// stored row length, batches of D that do not overlap, C in D's layout when it is read
    /// (β ≠ 0), and every stride and extent within the kernels' 64-bit offsets. A size that
    /// overflows is [`Error::InvalidArgument`] naming the field and its value; one past a
    /// kernel's range is [`Error::TooLarge`]; one too small is [`Error::InvalidDimension`];
    /// mixed C and D layouts are [`Error::InvalidArgument`].
    ///
    /// ```
    /// use hikube_gpu::ops::matmul::MatmulDesc;
    /// assert!(MatmulDesc::new(64, 64, 64).validate().is_ok());
    /// assert!(MatmulDesc::new(64, 64, 64).lda(usize::MAX / 2).batch(3).validate().is_err());
    /// assert!(MatmulDesc::new(64, 64, 0).validate().is_ok()); // K = 0: D = β·C
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
            at_most(what, v, i32::MAX as usize)?;
        }
        if let Some(0) = self.split_k {
            return Err(Error::InvalidArgument {
                what: "split_k must be at least 1".into(),
            });
        }
        if self.beta != 0.0 && self.c_layout_or_d() != self.d_layout {
            return Err(Error::InvalidArgument {
                what: format!(
                    "C is {:?} and D {:?}: with beta != 0 they must share a layout",
                    self.c_layout_or_d(),
                    self.d_layout
                ),
            });
        }
        let (ar, ac) = self.stored_a();
        let (br, bc) = self.stored_b();
        let (cr, cc) = self.stored_c();
        let (dr, dc) = self.stored_d();
        let lda = self.lda.unwrap_or(ac);
        let ldb = self.ldb.unwrap_or(bc);
        let ldc = self.ldc.unwrap_or(cc);
        let ldd = self.ldd.unwrap_or(dc);
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
        at_least(
            || format!("ldc (C {:?}, {cr} x {cc} as stored)", self.c_layout_or_d()),
            ldc,
            cc,
        )?;
        at_least(
            || format!("ldd (D {:?}, {dr} x {dc} as stored)", self.d_layout),
            ldd,
            dc,
        )?;
        let matrix_d = extent("D", (dr, dc), ("ldd", ldd), 1, ("stride_d", 0))?;
        let stride_d = match self.stride_d {
            Some(s) => s,
            None => size::mul("stride_d (rows of D x ldd)", dr, ldd)?,
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
            None => size::mul("stride_c (rows of C x ldc)", cr, ldc)?,
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
            extent_c: extent("C", (cr, cc), ("ldc", ldc), batch, ("stride_c", stride_c))?,
            extent_d: extent("D", (dr, dc), ("ldd", ldd), batch, ("stride_d", stride_d))?,
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
        // An empty product touches no operand (A and B already reach nothing when K = 0).
        if self.is_empty() {
            return Ok(Strides {
                extent_a: 0,
                extent_b: 0,
                extent_c: 0,
                extent_d: 0,
                ..s
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Layout = Layout::RowMajor;
    const C: Layout = Layout::ColMajor;

    #[test]
    fn empty_products_reach_nothing() {
        for (m, n, k, batch) in [(0, 5, 7, 1), (3, 0, 7, 2), (3, 5, 7, 0), (0, 0, 0, 0)] {
            let s = MatmulDesc::new(m, n, k).batch(batch).strides().unwrap();
            assert_eq!(
                (s.extent_a, s.extent_b, s.extent_c, s.extent_d),
                (0, 0, 0, 0),
                "{m}x{n}x{k} batch {batch}"
            );
            assert!(MatmulDesc::new(m, n, k).batch(batch).is_empty());
        }
    }

    #[test]
    fn k_zero_reads_neither_a_nor_b() {
        for (a, b) in [(R, R), (R, C), (C, R), (C, C)] {
            let desc = MatmulDesc::new(3, 5, 0)
                .a_layout(a)
                .b_layout(b)
                .batch(2)
                .beta(0.5);
            let s = desc.strides().unwrap();
            assert_eq!((s.extent_a, s.extent_b), (0, 0), "{a:?} {b:?}");
            assert_eq!((s.extent_c, s.extent_d), (30, 30));
            assert!(!desc.is_empty());
        }
    }

    #[test]
    fn column_major_d_is_the_transposed_row_major_product() {
        let descs = [
            MatmulDesc::new(7, 5, 3).d_layout(C),
            MatmulDesc::new(7, 5, 3)
                .a_layout(C)
                .b_layout(C)
                .d_layout(C)
                .beta(1.0),
            MatmulDesc::new(64, 33, 100)
                .a_layout(C)
                .d_layout(C)
                .lda(70)
                .ldb(40)
                .ldc(66)
                .ldd(72)
                .batch(3)
                .beta(0.5)
                .stride_b(0),
            MatmulDesc::new(9, 11, 0).d_layout(C).batch(2),
        ];
        for desc in descs {
            let s = desc.strides().unwrap();
            let (view, transposed) = desc.row_major_view();
            assert!(transposed);
            assert_eq!((view.m, view.n, view.k), (desc.n, desc.m, desc.k));
            assert_eq!(view.a_layout, desc.b_layout.flipped());
            assert_eq!(view.b_layout, desc.a_layout.flipped());
            assert_eq!((view.c_layout_or_d(), view.d_layout), (R, R));
            // The view validates to the same strides with A and B swapped.
            assert_eq!(view.strides().unwrap(), s.transposed(), "{desc:?}");
        }
        let row = MatmulDesc::new(7, 5, 3);
        assert_eq!(row.row_major_view(), (row.clone(), false));
    }

    #[test]
    fn column_major_d_has_m_long_columns() {
        let s = MatmulDesc::new(7, 5, 3).d_layout(C).strides().unwrap();
        assert_eq!((s.ldd, s.ldc, s.extent_d), (7, 7, 35));
        let short = MatmulDesc::new(7, 5, 3).d_layout(C).ldd(5);
        assert!(matches!(
            short.strides(),
            Err(Error::InvalidDimension {
                value: 5,
                min: 7,
                ..
            })
        ));
        // Batches: N stored columns of ldd elements apart.
        let s = MatmulDesc::new(7, 5, 3)
            .d_layout(C)
            .ldd(8)
            .batch(2)
            .strides()
            .unwrap();
        assert_eq!(s.stride_d, 40);
        assert_eq!(s.extent_d, 40 + 4 * 8 + 7);
    }

    #[test]
    fn mixed_c_and_d_layouts_only_when_c_is_read() {
        let mixed = MatmulDesc::new(4, 4, 4).d_layout(C).c_layout(R);
        assert!(mixed.validate().is_ok(), "beta = 0 never reads C");
        assert!(matches!(
            mixed.beta(1.0).validate(),
            Err(Error::InvalidArgument { .. })
        ));
        let same = MatmulDesc::new(4, 4, 4).d_layout(C).c_layout(C).beta(1.0);
        assert!(same.validate().is_ok());
    }

    #[test]
    fn dimensions_stay_below_2_31() {
        for desc in [
            MatmulDesc::new(1 << 31, 1, 1),
            MatmulDesc::new(1, 1 << 31, 1),
            MatmulDesc::new(1, 1, 1 << 31),
            MatmulDesc::new(1, 1, 1).batch(1 << 31),
        ] {
            assert!(matches!(desc.validate(), Err(Error::TooLarge { .. })));
        }
    }
}
