//! ndarray interop: arrays in and out of device memory, in standard (row-major) layout.

use crate::error::{Error, Result};
use crate::memory::DeviceBuffer;
use crate::stream::Stream;
use bytemuck::Pod;
use ndarray::{Array, Array2, Array4, ArrayBase, Data, Dimension, IntoDimension};

impl<T: Pod> DeviceBuffer<T> {
    /// Copies an array of any shape and layout to the device, in row-major (C) order.
    ///
    /// ```no_run
    /// use hikube_gpu::{Device, DeviceBuffer};
    /// use ndarray::array;
    /// let device = Device::open(0)?;
    /// let stream = device.default_stream();
    /// let a = array![[1.0f32, 2.0], [3.0, 4.0]];
    /// let gpu = DeviceBuffer::from_array(&stream, &a.t())?; // transposed view, copied row-major
    /// assert_eq!(gpu.to_array2(&stream, (2, 2))?, a.t());
    /// # Ok::<(), hikube_gpu::Error>(())
    /// ```
    pub fn from_array<S, D>(stream: &Stream, array: &ArrayBase<S, D>) -> Result<Self>
    where
        S: Data<Elem = T>,
        D: Dimension,
    {
        match array.as_slice() {
            Some(contiguous) => Self::from_slice(stream, contiguous),
            None => Self::from_slice(stream, &array.iter().copied().collect::<Vec<T>>()),
        }
    }

    /// Copies the buffer into a new array of `shape` (row-major); [`Error::ShapeMismatch`] unless
    /// the shape holds exactly `len()` elements.
    pub fn to_array<Sh, D>(&self, stream: &Stream, shape: Sh) -> Result<Array<T, D>>
    where
        Sh: IntoDimension<Dim = D>,
        D: Dimension,
    {
        let dim = shape.into_dimension();
        let expected = dim.size();
        if expected != self.len() {
            return Err(Error::ShapeMismatch {
                shape: dim.slice().to_vec(),
                expected,
                actual: self.len(),
            });
        }
        let data = self.to_vec(stream)?;
        Array::from_shape_vec(dim.clone(), data).map_err(|_| Error::ShapeMismatch {
            shape: dim.slice().to_vec(),
            expected,
            actual: self.len(),
        })
    }

    /// [`to_array`](Self::to_array) for a matrix.
    pub fn to_array2(&self, stream: &Stream, shape: (usize, usize)) -> Result<Array2<T>> {
        self.to_array(stream, shape)
    }

    /// [`to_array`](Self::to_array) for a 4-D tensor (e.g. NHWC images).
    pub fn to_array4(
        &self,
        stream: &Stream,
        shape: (usize, usize, usize, usize),
    ) -> Result<Array4<T>> {
        self.to_array(stream, shape)
    }
}
